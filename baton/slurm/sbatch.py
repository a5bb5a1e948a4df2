"""The real Slurm backend: sbatch, sacct (squeue + scontrol where accounting is off),
scancel. Every command takes its turn in the installation's call budget and is counted
(baton/slurm/budget.py); transient controller errors are retried with exponential
backoff; submissions go through a machine-wide rate limit; an ambiguous sbatch failure is
checked against the queue before it is retried, so a job is never submitted twice."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from baton.errors import SlurmError, TransientSlurmError
from baton.retry import retry
from baton.slurm.backend import Submitted, task_ids
from baton.slurm.budget import BudgetSpent, CallBudget
from baton.slurm.limits import (
    DEFAULT_MAX_ARRAY_SIZE,
    PartitionLimits,
    parse_max_array_size,
    parse_partitions,
)
from baton.slurm.parse import (
    JOB_STATE_FORMAT,
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    parse_job_states,
    parse_sacct,
    parse_sacct_comments,
    parse_sbatch_parsable,
    parse_scancel,
    parse_scontrol,
    parse_squeue,
)
from baton.slurm.ratelimit import RateLimiter
from baton.slurm.spec import JobSpec
from baton.slurm.states import NO_ACCOUNTING, JobStatus, is_terminal
from baton.slurm.version import has_only_job_state

log = logging.getLogger(__name__)

TRANSIENT_MARKERS = (
    "socket timed out", "unable to contact slurm controller", "temporarily unable",
    "resource temporarily unavailable", "zero bytes were transmitted", "connection refused",
    "communication connection failure", "transport endpoint", "slurm_persist_conn_open",
    "connection reset", "try again",
)
# the request may have reached the controller before the error: look before retrying
AMBIGUOUS_MARKERS = ("socket timed out", "zero bytes were transmitted", "connection reset")
ACCOUNTING_OFF = "accounting storage is disabled"

PARTITIONS_TTL = 600.0
_partitions: tuple[float, dict[str, PartitionLimits]] | None = None  # (read at, limits)
_max_array_size: int | None = None

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TZ": "UTC", "SLURM_TIME_FORMAT": "standard"}
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=120,
                              check=False)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not on PATH: is Slurm installed here? "
                         "(deploy/slurm/single-node.sh up starts a single-node cluster)") from None
    except subprocess.TimeoutExpired:
        raise TransientSlurmError(f"{argv[0]} did not answer within 120 s") from None


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientSlurmError)


def _classify(argv: Sequence[str], proc: subprocess.CompletedProcess[str]) -> SlurmError:
    lines = (proc.stderr or proc.stdout).strip().splitlines()  # one line, whatever it said
    msg = "; ".join(x.strip() for x in lines if x.strip()) or f"exit code {proc.returncode}"
    text = f"{argv[0]} failed: {msg}"
    if any(m in msg.lower() for m in TRANSIENT_MARKERS):
        return TransientSlurmError(text)
    return SlurmError(text)


class SbatchBackend:
    name = "sbatch"

    def __init__(self, *, rate_limiter: RateLimiter | None = None, attempts: int = 5,
                 base_delay: float = 1.0, cap_delay: float = 30.0,
                 runner: Runner = run_command, budget: CallBudget | None = None,
                 poll_wait: float | None = None, ids_per_call: int = 500,
                 version: tuple[int, int, int] | None = None) -> None:
        self.rate_limiter = rate_limiter
        self.budget = budget
        self.poll_wait = poll_wait  # seconds a status query may wait for the budget
        self.ids_per_call = ids_per_call
        self.version = version  # Slurm's (baton.slurm.version): the queries it offers
        self.deferred = False  # the last status() stopped at the budget
        self.attempts = attempts
        self.base_delay = base_delay
        self.cap_delay = cap_delay
        self.runner = runner
        self.accounting = True  # until sacct says otherwise

    def run(self, argv: Sequence[str], poll: bool = False
            ) -> subprocess.CompletedProcess[str]:
        """Run one Slurm command: each one (a retry too) is counted and paced. A ``poll``
        (a status query, asked again later anyway) waits at most ``poll_wait`` for its
        turn, else raises BudgetSpent."""
        if self.budget is not None:
            self.budget.acquire(Path(argv[0]).name, self.poll_wait if poll else None)
        return self.runner(argv)

    def _call(self, argv: Sequence[str], what: str, check: bool = True, poll: bool = False
              ) -> subprocess.CompletedProcess[str]:
        def once() -> subprocess.CompletedProcess[str]:
            proc = self.run(argv, poll)
            if check and proc.returncode != 0:
                raise _classify(argv, proc)
            return proc

        return retry(once, should_retry=is_transient, attempts=self.attempts,
                     base=self.base_delay, cap=self.cap_delay, what=what)

    # --- submit ------------------------------------------------------------------------
    def submit(self, spec: JobSpec, script_path: Path) -> Submitted:
        argv = ["sbatch", "--parsable", *spec.sbatch_options(), str(script_path)]
        if self.rate_limiter is not None:
            asked = time.time()
            waited = self.rate_limiter.acquire() - asked
            if waited > 0.5:
                log.info("submission rate limit: waited %.1fs before sbatch", waited)

        def once() -> str:
            proc = self.run(argv)
            if proc.returncode == 0:
                return parse_sbatch_parsable(proc.stdout)[0]
            err = _classify(argv, proc)
            ambiguous = any(m in str(err).lower() for m in AMBIGUOUS_MARKERS)
            if ambiguous and spec.comment:
                found = self.find_by_comment(spec.comment)
                if found:
                    log.warning("sbatch reported %r but job %s with comment %s is queued: "
                                "not submitting again", str(err), found, spec.comment)
                    return found
            raise err

        job_id = retry(once, should_retry=is_transient, attempts=self.attempts,
                       base=self.base_delay, cap=self.cap_delay, what=f"sbatch {spec.name}")
        return Submitted(job_id=job_id, script_path=script_path, task_ids=task_ids(job_id, spec))

    def find_by_comment(self, comment: str) -> str | None:
        """The id of a queued job carrying ``comment`` (our submission token), if any."""
        try:
            proc = self.run(["squeue", "--noheader", "--me", "--array", "--format=%A|%k"])
        except SlurmError:
            return None
        for line in proc.stdout.splitlines():
            job_id, _, job_comment = line.partition("|")
            if job_comment.strip() == comment:
                return job_id.strip()
        return None

    def jobs_by_comment(self, since: datetime) -> dict[str, dict[str, JobStatus]]:
        """Every job of this user that accounting knows since ``since``, by its comment
        (baton's submission token): what ``baton db rebuild`` matches the drive's scripts
        with. Needs ``AccountingStoreFlags=job_comment`` in slurm.conf; raises SlurmError
        when accounting cannot answer (and notes a cluster that keeps none: ``accounting``
        turns False)."""
        argv = ["sacct", "--parsable2", "--noheader", "--duplicates",
                f"--format={','.join((*SACCT_FIELDS, 'Comment'))}",
                f"--starttime={since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')}",
                "--endtime=now"]
        try:
            return parse_sacct_comments(self._call(argv, "sacct").stdout)
        except SlurmError as exc:
            if ACCOUNTING_OFF in str(exc).lower():
                self.accounting = False
            raise

    def queue_states(self) -> Counter[str]:
        """This user's jobs in the queue by state: one squeue, no retry (a caller that
        polls, the exporter, asks again later)."""
        argv = ["squeue", "--noheader", "--me", "--array", "--format=%T"]
        proc = self.run(argv)
        if proc.returncode != 0:
            raise _classify(argv, proc)
        return Counter(line.strip() for line in proc.stdout.splitlines() if line.strip())

    # --- status ------------------------------------------------------------------------
    def status(self, job_ids: Iterable[str], known: Mapping[str, str] | None = None
               ) -> dict[str, JobStatus]:
        """What Slurm says of ``job_ids``, asking each source only about what it knows:
        the queue (squeue) for the jobs still in it (``known`` maps an id to the state
        last recorded: a finished one is not looked for there; without it, every id is),
        accounting (sacct) for the jobs that left it, ``ids_per_call`` ids per call; the
        controller (squeue + scontrol) where accounting is off or down, and for jobs
        slurmdbd does not know yet. A job no source knows is left out, never failed.

        A poll over the call budget (``poll_wait``) stops where it is: what was answered
        is returned, the rest waits for the next poll (``deferred`` says so)."""
        ids = list(dict.fromkeys(job_ids))
        self.deferred = False
        out: dict[str, JobStatus] = {}
        if not ids:
            return out
        queued = [j for j in ids if known is None or not is_terminal(known.get(j, ""))]
        try:
            if queued:
                out.update(self._in_queue(queued, known or {}))
            left = [j for j in ids if j not in out and not _array_known(j, out)]
            self._left_queue(left, out)
        except BudgetSpent as exc:
            self.deferred = True
            log.info("%s: %d of %d job(s) answered, the others next poll", exc, len(out),
                     len(ids))
        return out

    def _in_queue(self, ids: list[str], known: Mapping[str, str]) -> dict[str, JobStatus]:
        """The jobs of ``ids`` the queue still holds. From Slurm 23.11, ``squeue
        --only-job-state`` (the lightest request: ids and states), batched, then the full
        record of those whose state changed since ``known``; before it, one ``squeue
        --me`` (the controller filters by user: one request, however many jobs)."""
        wanted = set(ids)
        if not has_only_job_state(self.version):
            proc = self._call(["squeue", "--noheader", "--me", "--array",
                               f"--format={SQUEUE_FORMAT}"], "squeue", poll=True)
            return {k: v for k, v in _select(parse_squeue(proc.stdout), wanted).items()
                    if not v.terminal}
        states: dict[str, JobStatus] = {}
        for chunk in _chunks(ids, self.ids_per_call):
            proc = self._call(["squeue", "--noheader", "--only-job-state",
                               f"--format={JOB_STATE_FORMAT}", f"--jobs={','.join(chunk)}"],
                              "squeue", poll=True)
            states.update(_select(parse_job_states(proc.stdout), wanted))
        states = {k: v for k, v in states.items() if not v.terminal}
        changed = [k for k, v in states.items() if known.get(k) != v.state]
        for chunk in _chunks(changed, self.ids_per_call):
            proc = self._call(["squeue", "--noheader", "--array", f"--format={SQUEUE_FORMAT}",
                               f"--jobs={','.join(chunk)}"], "squeue", poll=True)
            states.update(_select(parse_squeue(proc.stdout), set(chunk)))
        return states

    def _left_queue(self, ids: list[str], out: dict[str, JobStatus]) -> None:
        """Accounting's word on the jobs that left the queue (``ids_per_call`` per sacct),
        the controller's for those it cannot tell; written into ``out`` as they come."""
        missing: list[str] = []
        for chunk in _chunks(ids, self.ids_per_call):
            answer = self._sacct(chunk) if self.accounting else None
            if answer is None:
                missing += chunk
                continue
            out.update({k: v for k, v in answer.items() if not _incomplete(v)})
            missing += [j for j in chunk if j not in out and not _array_known(j, out)]
        if missing:
            out.update({k: v for k, v in self._squeue_scontrol(missing).items()
                        if k not in out})

    def _sacct(self, ids: list[str]) -> dict[str, JobStatus] | None:
        """sacct's answer, or None when it cannot answer (then the controller is asked)."""
        argv = ["sacct", "--parsable2", "--noheader", "--duplicates",
                f"--format={','.join(SACCT_FIELDS)}", f"--jobs={','.join(ids)}"]
        proc = self.run(argv, poll=True)
        if proc.returncode == 0:
            return parse_sacct(proc.stdout)
        err = (proc.stderr or proc.stdout).strip()
        if ACCOUNTING_OFF in err.lower():
            log.warning("Slurm accounting is off (%s): using squeue + scontrol from now on",
                        err)
            self.accounting = False
        else:
            log.warning("sacct failed (%s): asking the controller instead", err)
        return None

    def _squeue_scontrol(self, ids: list[str]) -> dict[str, JobStatus]:
        wanted = set(ids)
        proc = self._call(["squeue", "--noheader", "--array", "--states=all",
                           f"--format={SQUEUE_FORMAT}"], "squeue", poll=True)
        queued = _select(parse_squeue(proc.stdout), wanted)
        # exit codes, end times and restarts: only scontrol knows them without accounting
        proc = self._call(["scontrol", "--oneliner", "show", "job"], "scontrol", check=False,
                          poll=True)
        detailed = _select(parse_scontrol(proc.stdout), wanted) if proc.returncode == 0 else {}
        found = {**queued, **detailed}
        if not self.accounting:  # no accounting on this cluster: no figures will ever come
            found = {k: replace(v, source=NO_ACCOUNTING) for k, v in found.items()}
        return found

    # --- the cluster's limits -----------------------------------------------------------
    def max_array_size(self) -> int:
        """MaxArraySize, asked once per process (it changes with a restart of slurmctld,
        not between two submissions), through the call budget like every Slurm call;
        Slurm's default when scontrol cannot answer (sbatch then says what it refused)."""
        global _max_array_size
        if _max_array_size is None:
            try:
                proc = self._call(["scontrol", "show", "config"], "scontrol")
                _max_array_size = parse_max_array_size(proc.stdout) or DEFAULT_MAX_ARRAY_SIZE
            except (SlurmError, OSError) as exc:
                log.warning("scontrol show config: %s; arrays split at Slurm's default "
                            "MaxArraySize %d", exc, DEFAULT_MAX_ARRAY_SIZE)
                return DEFAULT_MAX_ARRAY_SIZE
        return _max_array_size

    def partitions(self) -> dict[str, PartitionLimits]:
        """What each partition allows one job (a retry's ceiling): one ``scontrol show
        partition`` per PARTITIONS_TTL seconds in a process (they change rarely)."""
        global _partitions
        if _partitions is None or time.monotonic() - _partitions[0] > PARTITIONS_TTL:
            proc = self._call(["scontrol", "--oneliner", "show", "partition"], "scontrol",
                              poll=True)  # a sensor's question: never a long wait
            _partitions = (time.monotonic(), parse_partitions(proc.stdout))
        return _partitions[1]

    # --- cancel ------------------------------------------------------------------------
    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Cancel jobs in one scancel; returns what Slurm said of each id it did not cancel
        (unknown to it, or already finished): scancel exits 0 for those, and only ``-v``
        makes it name them."""
        ids = list(job_ids)
        if not ids:
            return {}
        proc = self._call(["scancel", "--verbose", *ids], "scancel")
        return parse_scancel(f"{proc.stderr}\n{proc.stdout}")


def _chunks(ids: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _incomplete(status: JobStatus) -> bool:
    """slurmdbd briefly holds a record with the placeholder name "allocation" and no
    ReqMem when a short job's start and end reach it before its submission (seen on the
    real cluster): ask the controller about such a job instead."""
    return status.name == "allocation" and status.req_mem_mb is None


def _array_known(job_id: str, out: dict[str, JobStatus]) -> bool:
    """An array job id asked for as a whole is known when any of its tasks is."""
    return "_" not in job_id and any(s.array_job_id == job_id for s in out.values())


def _select(statuses: dict[str, JobStatus], wanted: set[str]) -> dict[str, JobStatus]:
    return {k: v for k, v in statuses.items()
            if k in wanted or v.array_job_id in wanted or v.raw_job_id in wanted}
