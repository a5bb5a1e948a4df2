"""What the pipeline does at each step, for the Dagster layer to call: submit the
evaluations of trained experiments, the analyses of evaluated ones. Idempotent: the keys
derive from the signal that asked for the work, so asking twice submits once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from baton.config import Config
from baton.errors import BatonError
from baton.ledger import Ledger
from baton.pipeline.keys import analysis_key, evaluation_items
from baton.pipeline.plan import PlannedSubmission, PlannedTask, plan_stage
from baton.pipeline.submission import TaskOutcome, submit_jobs, validate_request
from baton.slurm.backend import SlurmBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """An experiment's tasks as submitted; in a dry run (``sensors.dry_run``) no task, and
    ``dry_run`` what would have been submitted."""

    experiment: str
    tasks: list[TaskOutcome]
    dry_run: PlannedSubmission | None = None

    @property
    def job_ids(self) -> list[str]:
        return [t.job_id for t in self.tasks if t.job_id]

    @property
    def submitted_now(self) -> bool:
        return any(t.submitted_now for t in self.tasks)


@dataclass
class _Request:
    """A stage's tasks for some experiments, before anything is checked or claimed."""

    triggers: dict[str, str]
    generations: dict[str, int]
    campaigns: dict[str, str | None]
    items: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


def _group(experiments: list[str], outcomes: list[TaskOutcome]) -> dict[str, Submission]:
    return {e: Submission(e, [o for o in outcomes if o.experiment == e]) for e in experiments}


def _evaluation_request(ledger: Ledger, experiments: list[str]) -> _Request:
    """One task per checkpoint of each experiment's latest training signal."""
    runs = {e: ledger.training_run(e) for e in experiments}
    missing = [e for e, r in runs.items() if r is None or not r.signal_key]
    if missing:
        raise BatonError(f"no accepted training signal for {', '.join(missing)}: nothing to "
                         "evaluate (the training sensor registers an experiment when its "
                         ".training_complete lands)")
    req = _Request(triggers={}, generations={}, campaigns={})
    for exp, run in runs.items():
        req.triggers[exp], req.generations[exp] = run.signal_key, run.generation or 1
        req.campaigns[exp] = run.campaign
        ckpts = [run.checkpoint_path, *((run.metadata or {}).get("checkpoints") or [])]
        for item, key in evaluation_items(exp, run.signal_key, ckpts):
            req.items.append(item)
            req.keys.append(key)
    return req


def _analysis_request(ledger: Ledger, experiments: list[str]) -> _Request:
    """One analysis per experiment, answering its current evaluation."""
    req = _Request(triggers={}, generations={}, campaigns={})
    for exp in experiments:
        tasks = ledger.evaluation_tasks(exp)
        if not tasks or not any(t.status == "completed" for t in tasks):
            raise BatonError(f"{exp} has no completed evaluation to analyse")
        req.triggers[exp], req.generations[exp] = tasks[0].trigger_key, tasks[0].generation or 1
        req.campaigns[exp] = _campaign(ledger, exp)
        req.items.append((exp, ""))
        req.keys.append(analysis_key(exp, req.triggers[exp]))
    return req


REQUESTS = {"evaluation": _evaluation_request, "analysis": _analysis_request}


def refusals(config: Config, ledger: Ledger, stage: str,
             experiments: list[str]) -> dict[str, str]:
    """Each experiment's submission checked alone, as :func:`submit_jobs` checks it
    (nothing written): why each refused one is. A batch submits the others, so one bad
    request (a checkpoint gone from the drive) does not hold back a whole sweep."""
    out = {}
    for exp in experiments:
        try:
            req = REQUESTS[stage](ledger, [exp])
            validate_request(config, stage, req.items, req.keys, attempt=1, mem=None,
                             time=None, campaigns=req.campaigns)
        except BatonError as exc:
            out[exp] = f"{stage} of {exp} refused: {exc}"
    return out


def submit_evaluations(config: Config, ledger: Ledger, backend: SlurmBackend,
                       experiments: list[str]) -> dict[str, Submission]:
    """Every experiment's evaluation tasks in one submission (one job array when there
    are several tasks). Each task's row is written with its claim, before sbatch: a job's
    signal finds it even if this process dies before Slurm's answer is recorded."""
    req = _evaluation_request(ledger, experiments)
    if config.sensors.dry_run:
        return _dry_run(config, ledger, "evaluation", experiments, req)

    def task(row_id: int, experiment: str, checkpoint: str, job_id: str | None = None) -> None:
        ledger.record_evaluation_task(experiment=experiment,
                                      trigger_key=req.triggers[experiment],
                                      checkpoint=checkpoint, slurm_row=row_id, job_id=job_id)

    outcomes = submit_jobs(config, ledger, backend, "evaluation", req.items, keys=req.keys,
                           campaign=req.campaigns, generations=req.generations,
                           on_claim=task)
    for o in outcomes:  # the job ids (and the tasks of a claim made before this change)
        task(o.row_id, o.experiment, o.checkpoint, o.job_id)
    return _group(experiments, outcomes)


def submit_analyses(config: Config, ledger: Ledger, backend: SlurmBackend,
                    experiments: list[str]) -> dict[str, Submission]:
    """One analysis per experiment, answering its current evaluation."""
    req = _analysis_request(ledger, experiments)
    if config.sensors.dry_run:
        return _dry_run(config, ledger, "analysis", experiments, req)

    def analysis(row_id: int, experiment: str, _: str = "", job_id: str | None = None) -> None:
        ledger.record_analysis(experiment=experiment, trigger_key=req.triggers[experiment],
                               slurm_row=row_id, job_id=job_id)

    outcomes = submit_jobs(config, ledger, backend, "analysis", req.items, keys=req.keys,
                           campaign=req.campaigns, generations=req.generations,
                           on_claim=analysis)
    for o in outcomes:
        analysis(o.row_id, o.experiment, job_id=o.job_id)
    return _group(experiments, outcomes)


def _campaign(ledger: Ledger, experiment: str) -> str | None:
    """The campaign the experiment's training signal named."""
    run = ledger.training_run(experiment)
    return run.campaign if run is not None else None


def _dry_run(config: Config, ledger: Ledger, stage: str, experiments: list[str],
             req: _Request) -> dict[str, Submission]:
    """``sensors.dry_run``: check and render the submission as :func:`submit_jobs` would,
    and say what would be submitted; nothing is claimed, recorded or submitted. A
    submission the checks refuse fails as it would for real."""
    planned = plan_stage(config, stage, [PlannedTask(e, c, k) for (e, c), k
                                         in zip(req.items, req.keys, strict=True)], ledger,
                         req.generations)
    if planned.problem:
        raise BatonError(f"dry run: submitting {stage} would fail: {planned.problem}")
    for t in planned.tasks:
        log.info("dry run: %s of %s%s %s", stage, t.experiment,
                 f" {t.checkpoint}" if t.checkpoint else "",
                 f"already submitted as job {t.job_id}" if t.job_id else "would submit")
    return {e: Submission(e, [], PlannedSubmission(
        stage, [t for t in planned.tasks if t.experiment == e], planned.rendered,
        planned.resources)) for e in experiments}
