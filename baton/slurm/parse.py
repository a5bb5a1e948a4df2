"""Pure parsers for what Slurm prints. Tested on output captured from a real cluster
(``tests/data/slurm``). Slurm commands are run with ``TZ=UTC`` so times are UTC."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime

from baton.slurm.states import CONTROLLER, JobStatus, is_terminal, normalize_state
from baton.units import parse_cpu_seconds, parse_memory_mb, parse_time_seconds

SACCT_FIELDS = (
    "JobID", "JobIDRaw", "JobName", "State", "ExitCode", "Submit", "Start", "End",
    "ElapsedRaw", "ReqMem", "ReqCPUS", "TimelimitRaw", "MaxRSS", "TotalCPU", "CPUTimeRAW",
    "NodeList", "Partition", "DerivedExitCode",
)
SQUEUE_FORMAT = "%i|%F|%K|%T|%j|%V|%S|%l|%M|%N|%r|%m|%C"
_NONE = {"", "Unknown", "None", "N/A", "(null)", "NONE"}
_ARRAY_PENDING = re.compile(r"^(\d+)_\[(.+?)(%\d+)?\]$")


def parse_sbatch_parsable(output: str) -> tuple[str, str | None]:
    """``123`` or ``123;cluster`` -> (job id, cluster)."""
    line = output.strip().splitlines()[-1].strip() if output.strip() else ""
    job_id, _, cluster = line.partition(";")
    if not job_id.isdigit():
        raise ValueError(f"sbatch --parsable printed {output.strip()!r}, not a job id")
    return job_id, cluster or None


def parse_timestamp(text: str) -> datetime | None:
    t = text.strip()
    if t in _NONE:
        return None
    return datetime.fromisoformat(t).replace(tzinfo=UTC)


def parse_exit(text: str) -> tuple[int | None, int | None]:
    """``2:0`` -> (2, 0); ``0:9`` -> (0, 9): exit code and the signal that ended it."""
    t = text.strip()
    if not t or ":" not in t:
        return None, None
    code, _, sig = t.partition(":")
    return int(code), int(sig)


def _int(text: str) -> int | None:
    t = text.strip()
    return int(t) if t.isdigit() else None


def _mem(text: str) -> float | None:
    """Memory in MB; None when unset or unreadable (one odd field must not sink a poll)."""
    t = text.strip()
    if t in _NONE or t == "0":
        return None
    try:
        return parse_memory_mb(t)
    except ValueError:
        return None


def expand_array_spec(spec: str) -> list[int]:
    """``0-3,7,10-14:2`` (without a ``%K``) -> [0, 1, 2, 3, 7, 10, 12, 14]."""
    out: list[int] = []
    for part in spec.split("%")[0].split(","):
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return out


def parse_sacct(output: str, fields: tuple[str, ...] = SACCT_FIELDS) -> dict[str, JobStatus]:
    """``sacct --parsable2 --noheader --duplicates --format=<fields>`` -> status per job.

    Steps (``123.batch``) give MaxRSS; the allocation line gives the rest. With
    ``--duplicates`` a requeued job appears once per run: the last one is current and
    the others count as restarts. Pending array ranges (``5_[2-3%2]``) are expanded.
    """
    records: dict[str, list[dict[str, str]]] = defaultdict(list)
    steps: dict[str, list[dict[str, str]]] = defaultdict(list)
    for line in output.splitlines():
        if not line.strip():
            continue
        values = line.split("|")
        if len(values) < len(fields):
            raise ValueError(f"sacct line has {len(values)} fields, expected "
                             f"{len(fields)}: {line!r}")
        rec = dict(zip(fields, values, strict=False))
        job_id = rec["JobID"]
        base, dot, _step = job_id.partition(".")
        if dot:
            steps[base].append(rec)
            continue
        m = _ARRAY_PENDING.match(job_id)
        if m:
            for task in expand_array_spec(m.group(2)):
                records[f"{m.group(1)}_{task}"].append({**rec, "JobID": f"{m.group(1)}_{task}"})
        else:
            records[job_id].append(rec)
    out: dict[str, JobStatus] = {}
    for job_id, runs in records.items():
        rec = runs[-1]
        raw = rec["JobIDRaw"]
        # only the steps of the current run count (a requeued job lists earlier runs' too)
        rss = [_mem(s.get("MaxRSS", "")) for s in steps.get(job_id, []) + steps.get(raw, [])
               if s.get("Start", "") >= rec["Submit"] or len(runs) == 1]
        rss_known = [r for r in rss if r is not None]
        code, sig = parse_exit(rec["ExitCode"])
        array_job, _, task = job_id.partition("_")
        timelimit = _int(rec.get("TimelimitRaw", ""))
        out[job_id] = JobStatus(
            job_id=job_id,
            raw_job_id=raw if raw.isdigit() else None,
            array_job_id=array_job if task else None,
            array_task_id=int(task) if task.isdigit() else None,
            name=rec.get("JobName") or None,
            state=normalize_state(rec["State"]),
            reason=_none(rec.get("Reason", "")),
            exit_code=code,
            exit_signal=sig,
            submitted_at=parse_timestamp(rec["Submit"]),
            started_at=parse_timestamp(rec["Start"]),
            ended_at=parse_timestamp(rec["End"]),
            req_cpus=_int(rec.get("ReqCPUS", "")),
            req_mem_mb=_mem(rec.get("ReqMem", "")),
            req_time_s=timelimit * 60 if timelimit is not None else None,
            max_rss_mb=max(rss_known) if rss_known else None,
            cpu_seconds=parse_cpu_seconds(rec.get("TotalCPU", "")),
            restarts=len(runs) - 1,
            node=_none(rec.get("NodeList", "")),
        )
    return out


def parse_sacct_comments(output: str, fields: tuple[str, ...] = (*SACCT_FIELDS, "Comment")
                         ) -> dict[str, dict[str, JobStatus]]:
    """``sacct ... --format=<fields>`` with ``Comment`` last -> the jobs of each comment:
    comment -> {job id (an array's tasks each): status}. Steps carry no comment; a job
    without one is left out. The comment is the rest of the line (it may hold ``|``)."""
    if fields[-1] != "Comment":
        raise ValueError("Comment must be the last field")
    statuses = parse_sacct(output, fields)
    comments: dict[str, str] = {}
    for line in output.splitlines():
        values = line.split("|", len(fields) - 1)
        if len(values) < len(fields) or "." in values[0]:
            continue
        job_id, comment = values[0], values[-1].strip()
        m = _ARRAY_PENDING.match(job_id)
        ids = [f"{m.group(1)}_{t}" for t in expand_array_spec(m.group(2))] if m else [job_id]
        for jid in ids:
            if comment:
                comments[jid] = comment
    out: dict[str, dict[str, JobStatus]] = defaultdict(dict)
    for job_id, comment in comments.items():
        if job_id in statuses:
            out[comment][job_id] = statuses[job_id]
    return dict(out)


def _none(text: str) -> str | None:
    t = text.strip()
    return None if t in _NONE or t == "None assigned" else t


def parse_squeue(output: str) -> dict[str, JobStatus]:
    """``squeue --noheader --array --format=SQUEUE_FORMAT`` -> status per job (the
    controller's word: no CPU time or MaxRSS)."""
    out: dict[str, JobStatus] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        (job_id, array_job, array_task, state, name, submit, start, limit, _used, node,
         reason, mem, cpus) = line.split("|")[:13]
        is_task = array_task.strip() not in _NONE
        ids = [job_id]
        m = _ARRAY_PENDING.match(job_id)
        if m:
            ids = [f"{m.group(1)}_{t}" for t in expand_array_spec(m.group(2))]
        norm = normalize_state(state)
        for jid in ids:
            task = jid.partition("_")[2]
            out[jid] = JobStatus(
                job_id=jid,
                array_job_id=array_job if is_task else None,
                array_task_id=int(task) if task.isdigit() else None,
                name=name or None,
                state=norm,
                reason=_none(reason),
                submitted_at=parse_timestamp(submit),
                started_at=parse_timestamp(start) if norm != "PENDING" else None,
                req_time_s=None if limit in ("UNLIMITED", "INVALID") or limit in _NONE
                else parse_time_seconds(limit),
                req_mem_mb=_mem(mem),
                req_cpus=_int(cpus),
                node=_none(node),
                source=CONTROLLER,
            )
    return out


_SCANCEL_ERROR = re.compile(r"Kill job error on job id (\S+): (.+)$")


def parse_scancel(output: str) -> dict[str, str]:
    """``scancel -v <ids> 2>&1`` -> what Slurm said about each id it did not signal
    (``Invalid job id specified``, ``Job/step already completing or completed``): scancel
    exits 0 for those, and says nothing about them without ``-v``."""
    out: dict[str, str] = {}
    for line in output.splitlines():
        m = _SCANCEL_ERROR.search(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


_KV = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


def parse_scontrol_record(line: str) -> dict[str, str]:
    """One ``scontrol show job -o`` line -> its key=value pairs (values may hold spaces)."""
    matches = list(_KV.finditer(line))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


def parse_scontrol(output: str) -> dict[str, JobStatus]:
    """``scontrol show job -o <ids>`` -> status per job (what squeue cannot tell: exit code,
    end time, restarts; like squeue, no CPU time or MaxRSS: those come from accounting)."""
    out: dict[str, JobStatus] = {}
    for line in output.splitlines():
        if "JobId=" not in line:
            continue
        kv = parse_scontrol_record(line)
        array_job, task = kv.get("ArrayJobId"), kv.get("ArrayTaskId")
        is_task = array_job is not None and task is not None and task.isdigit()
        job_id = f"{array_job}_{task}" if is_task else kv["JobId"]
        code, sig = parse_exit(kv.get("ExitCode", ""))
        limit = kv.get("TimeLimit", "")
        state = normalize_state(kv.get("JobState", ""))
        # for jobs not yet started / not yet ended these are estimates: leave them out
        started = parse_timestamp(kv.get("StartTime", "")) if state != "PENDING" else None
        ended = parse_timestamp(kv.get("EndTime", "")) if is_terminal(state) else None
        out[job_id] = JobStatus(
            job_id=job_id,
            raw_job_id=kv["JobId"],
            array_job_id=array_job if is_task else None,
            array_task_id=int(task) if is_task and task else None,
            name=kv.get("JobName"),
            state=state,
            reason=_none(kv.get("Reason", "")),
            exit_code=code,
            exit_signal=sig,
            submitted_at=parse_timestamp(kv.get("SubmitTime", "")),
            started_at=started,
            ended_at=ended,
            req_cpus=_int(kv.get("NumCPUs", "")),
            req_mem_mb=_mem(kv.get("MinMemoryNode", "") or kv.get("MinMemoryCPU", "")),
            req_time_s=None if limit in ("UNLIMITED", "", "INVALID")
            else parse_time_seconds(limit),
            restarts=_int(kv.get("Restarts", "")) or 0,
            node=_none(kv.get("NodeList", "")),
            stdout_path=kv.get("StdOut"),
            stderr_path=kv.get("StdErr"),
            source=CONTROLLER,
        )
    return out


JOB_STATE_FORMAT = "%i|%T"


def parse_job_states(output: str) -> dict[str, JobStatus]:
    """``squeue --noheader --only-job-state --format=%i|%T`` (Slurm 23.11+) -> the state
    of each job, and nothing else: pending array tasks come folded (``5_[1-4,6]``) and are
    expanded."""
    out: dict[str, JobStatus] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        job_id, _, state = line.strip().partition("|")
        m = _ARRAY_PENDING.match(job_id)
        ids = [f"{m.group(1)}_{t}" for t in expand_array_spec(m.group(2))] if m else [job_id]
        for jid in ids:
            array_job, _, task = jid.partition("_")
            out[jid] = JobStatus(job_id=jid, state=normalize_state(state),
                                 array_job_id=array_job if task else None,
                                 array_task_id=int(task) if task.isdigit() else None,
                                 source=CONTROLLER)
    return out
