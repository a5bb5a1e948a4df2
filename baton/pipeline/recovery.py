"""``baton db rebuild``: a lost ledger's history, from the drive and Slurm's accounting.

The drive keeps every signal and the audit copy of every script submitted (with the
token the job carried as its comment); accounting keeps each job by that comment. The two
are matched, each job gets back the submission key the pipeline gave it (so the daemon
sees it as submitted and submits nothing again), and everything is replayed in time order
through the appliers the sensors use. Nothing is submitted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from baton.config import Config
from baton.errors import BatonError, SlurmError
from baton.ledger import Ledger
from baton.ledger.rebuild import KeptJob, Rebuilt
from baton.pipeline.history import KeptScript, drive_signals, kept_scripts
from baton.pipeline.keys import analysis_key, evaluation_key
from baton.pipeline.submission import comment_token
from baton.signals import SignalFile, acceptance_problem
from baton.slurm.backend import SlurmBackend
from baton.slurm.states import JobStatus
from baton.units import parse_memory_request_mb, parse_time_limit_seconds

# accounting is asked from this long before the oldest script kept (clocks, queue waits)
MARGIN = timedelta(days=1)
# a signal before a job before its signal, when their times are equal
_ORDER = {"training_complete": 0, "job": 1, "eval_complete": 2, "eval_failed": 2,
          "analysis_complete": 3}


@dataclass
class RebuildReport:
    """What was rebuilt; ``skipped``: what could not be (one line each, what and why);
    ``left``: signals that do not validate, left for the sensors to quarantine as they
    did the first time."""

    rebuilt: Rebuilt
    skipped: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        r = self.rebuilt
        repairs = f" ({r.repairs} of them repairs, with their supervision)" if r.repairs else ""
        out = [f"replayed {r.signals} signal(s); rebuilt {r.jobs} job(s){repairs}: "
               f"{r.evaluations} evaluation task(s), {r.analyses} analysis(es); "
               "submitted nothing"]
        out += [f"left for the sensors to quarantine: {s}" for s in self.left]
        return out + [f"not rebuilt: {s}" for s in self.skipped]


def rebuild_ledger(config: Config, ledger: Ledger, backend: SlurmBackend) -> RebuildReport:
    """Rebuild ``ledger`` (which must hold no job) from the drive and ``backend``'s
    accounting; raises BatonError when accounting cannot be read."""
    drive = config.drive
    if not drive.root.is_dir():
        raise BatonError(f"the shared drive {drive.root} does not exist (not mounted?): "
                         "nothing to rebuild from")
    scripts, skipped = kept_scripts(drive)
    found, left = drive_signals(drive)
    sigs: list[SignalFile] = []
    for sf in found:
        if problem := acceptance_problem(sf.signal):
            left.append(f"{sf.path}: {problem}")
        else:
            sigs.append(sf)
    jobs = _jobs(scripts, backend, skipped) if scripts else []
    events: list[SignalFile | KeptJob] = [*sigs, *jobs]
    events.sort(key=_order(jobs))
    # refuses a ledger that holds jobs; a job counts when its tasks' keys give its token
    rebuilt = ledger.rebuild(events, _key_of, comment_token, backend.name)
    for sf in sigs:  # as the sensors register them (idempotent), once the rebuild is in
        ledger.note_campaign(sf.signal.campaign, sf.signal.campaign_type, f"signal {sf.path}",
                             config.campaigns)
    return RebuildReport(rebuilt, skipped + rebuilt.orphans, left)


def _order(jobs: list[KeptJob]
           ) -> Callable[[SignalFile | KeptJob], tuple[datetime, int, int]]:
    """The replay's order: by time, where Slurm's times are whole seconds and a signal's
    are not. A job counts at the end of its submission's second (after the signal that
    asked for it, however soon it was submitted), and a signal from a job never before
    that job (however fast it ran). Jobs of one second go in the order Slurm numbered
    them (an earlier generation's analysis before a retrain's evaluation)."""
    at: dict[int, datetime] = {}
    of_job: dict[str, datetime] = {}
    for job in jobs:
        when = job.submitted_at
        at[id(job)] = when + timedelta(microseconds=999_999) if when else \
            datetime.max.replace(tzinfo=UTC)
        for s in job.statuses:  # an array task's signal names its own (raw) job id
            for jid in (s.job_id, s.array_job_id, s.raw_job_id):
                if jid:
                    of_job[jid] = at[id(job)]

    def key(event: SignalFile | KeptJob) -> tuple[datetime, int, int]:
        if isinstance(event, KeptJob):
            first = event.statuses[0].array_job_id or event.statuses[0].job_id
            return at[id(event)], _ORDER["job"], int(first) if first.isdigit() else 0
        when = event.signal.timestamp
        job_id = getattr(event.signal, "job_id", None)
        if job_id in of_job:
            when = max(when, of_job[job_id])
        return when, _ORDER[event.kind], 0

    return key


def _key_of(stage: str, experiment: str, checkpoint: str, trigger: str) -> str:
    if stage == "evaluation":
        return evaluation_key(experiment, trigger, checkpoint)
    return analysis_key(experiment, trigger)


def _jobs(scripts: list[KeptScript], backend: SlurmBackend, skipped: list[str]
          ) -> list[KeptJob]:
    read = getattr(backend, "jobs_by_comment", None)
    if read is None:
        raise BatonError(f"the {backend.name} backend cannot list jobs by their comment: "
                         "nothing to match the drive's scripts with")
    since = datetime.fromtimestamp(min(s.path.stat().st_mtime for s in scripts), UTC) - MARGIN
    try:
        by_token: dict[str, dict[str, JobStatus]] = read(since)
    except SlurmError as exc:
        raise BatonError(f"cannot read Slurm's accounting: {exc}") from None
    jobs = []
    for script in scripts:
        if script.attempt > 1 and script.repair is None:
            skipped.append(f"{script.path}: a repair (attempt {script.attempt}) whose script "
                           "does not name its supervision (written before scripts did)")
            continue
        statuses = _task_statuses(script, by_token.get(script.token or "", {}))
        if statuses is None:
            skipped.append(f"{script.path}: no job with comment {script.token} in Slurm's "
                           "accounting (is AccountingStoreFlags=job_comment set in "
                           "slurm.conf? was it never submitted?)")
            continue
        jobs.append(_kept_job(script, statuses))
    return jobs


def _task_statuses(script: KeptScript, found: dict[str, JobStatus]
                   ) -> tuple[JobStatus, ...] | None:
    """Accounting's status of each task of the script, in order; None when any is missing."""
    if not found:
        return None
    if len(script.tasks) == 1:
        singles = [s for s in found.values() if s.array_task_id is None]
        return (singles[-1],) if singles else None
    by_task = {s.array_task_id: s for s in found.values() if s.array_task_id is not None}
    if any(i not in by_task for i in range(len(script.tasks))):
        return None
    return tuple(by_task[i] for i in range(len(script.tasks)))


def _kept_job(script: KeptScript, statuses: tuple[JobStatus, ...]) -> KeptJob:
    spec = script.spec
    is_array = len(script.tasks) > 1
    base = (statuses[0].array_job_id or statuses[0].job_id) if is_array else statuses[0].job_id
    return KeptJob(
        stage=script.stage, tasks=script.tasks, statuses=statuses, token=script.token or "",
        attempt=script.attempt, script_path=str(script.path),
        stdout_paths=tuple(_expand(spec.output, base, i, is_array)
                           for i in range(len(statuses))),
        stderr_paths=tuple(_expand(spec.error, base, i, is_array)
                           for i in range(len(statuses))),
        requested=dict(req_cpus=spec.cpus,
                       req_mem_mb=parse_memory_request_mb(spec.mem) if spec.mem else None,
                       req_time_s=parse_time_limit_seconds(spec.time) if spec.time else None),
        answered=script.answered, repair=script.repair)


def _expand(pattern: str | None, job_id: str, task: int, is_array: bool) -> str | None:
    """A log path as the submission resolved it (``%A``, ``%a``, ``%j``)."""
    if pattern is None:
        return None
    out = pattern.replace("%A", job_id).replace("%a", str(task))
    return out if is_array else out.replace("%j", job_id)
