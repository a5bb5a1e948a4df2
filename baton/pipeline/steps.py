"""What the pipeline does at each step, for the Dagster layer to call: submit the
evaluations of trained experiments, the analyses of evaluated ones. Idempotent: the keys
derive from the signal that asked for the work, so asking twice submits once."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from baton.config import Config
from baton.errors import BatonError
from baton.ledger import Ledger
from baton.pipeline.submission import TaskOutcome, submit_jobs
from baton.slurm.backend import SlurmBackend

log = logging.getLogger(__name__)


def short(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def evaluation_key(experiment: str, signal_key: str, checkpoint: str) -> str:
    """The submission key of one evaluation task: the training signal and checkpoint it
    answers (``baton plan`` derives the same keys to say what is already submitted)."""
    return f"evaluation:{experiment}:{short(signal_key)}:{short(checkpoint)}"


def analysis_key(experiment: str, trigger_key: str) -> str:
    """The submission key of an analysis: the evaluation (its training signal) it answers."""
    return f"analysis:{experiment}:{short(trigger_key)}"


def evaluation_items(experiment: str, signal_key: str, checkpoints: list[str]
                     ) -> list[tuple[tuple[str, str], str]]:
    """Each checkpoint of a training signal once, in order, with its task's key."""
    return [((experiment, c), evaluation_key(experiment, signal_key, c))
            for c in dict.fromkeys(checkpoints)]


@dataclass(frozen=True)
class Submission:
    experiment: str
    tasks: list[TaskOutcome]

    @property
    def job_ids(self) -> list[str]:
        return [t.job_id for t in self.tasks if t.job_id]

    @property
    def submitted_now(self) -> bool:
        return any(t.submitted_now for t in self.tasks)


def _group(experiments: list[str], outcomes: list[TaskOutcome]) -> dict[str, Submission]:
    return {e: Submission(e, [o for o in outcomes if o.experiment == e]) for e in experiments}


def submit_evaluations(config: Config, ledger: Ledger, backend: SlurmBackend,
                       experiments: list[str]) -> dict[str, Submission]:
    """One task per checkpoint of each experiment's latest training signal, all in one
    submission (one job array when there are several tasks)."""
    runs = {e: ledger.training_run(e) for e in experiments}
    missing = [e for e, r in runs.items() if r is None or not r.signal_key]
    if missing:
        raise BatonError(f"no accepted training signal for {', '.join(missing)}: nothing to "
                         "evaluate (the training sensor registers an experiment when its "
                         ".training_complete lands)")
    items, keys, triggers = [], [], {}
    for exp, run in runs.items():
        triggers[exp] = run.signal_key
        ckpts = [run.checkpoint_path, *((run.metadata or {}).get("checkpoints") or [])]
        for item, key in evaluation_items(exp, run.signal_key, ckpts):
            items.append(item)
            keys.append(key)
    outcomes = submit_jobs(config, ledger, backend, "evaluation", items, keys=keys,
                           campaign={e: r.campaign for e, r in runs.items()})
    for o in outcomes:
        ledger.record_evaluation_task(experiment=o.experiment,
                                      trigger_key=triggers[o.experiment], checkpoint=o.checkpoint,
                                      slurm_row=o.row_id, job_id=o.job_id)
    return _group(experiments, outcomes)


def submit_analyses(config: Config, ledger: Ledger, backend: SlurmBackend,
                    experiments: list[str]) -> dict[str, Submission]:
    """One analysis per experiment, answering its current evaluation."""
    triggers = {}
    for exp in experiments:
        tasks = ledger.evaluation_tasks(exp)
        if not tasks or not any(t.status == "completed" for t in tasks):
            raise BatonError(f"{exp} has no completed evaluation to analyse")
        triggers[exp] = tasks[0].trigger_key
    items = [(e, "") for e in experiments]
    keys = [analysis_key(e, triggers[e]) for e in experiments]
    outcomes = submit_jobs(config, ledger, backend, "analysis", items, keys=keys,
                           campaign={e: _campaign(ledger, e) for e in experiments})
    for o in outcomes:
        ledger.record_analysis(experiment=o.experiment, trigger_key=triggers[o.experiment],
                               slurm_row=o.row_id, job_id=o.job_id)
    return _group(experiments, outcomes)


def _campaign(ledger: Ledger, experiment: str) -> str | None:
    """The campaign the experiment's training signal named."""
    run = ledger.training_run(experiment)
    return run.campaign if run is not None else None
