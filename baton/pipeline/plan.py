"""What the daemon would do with signal files, worked out without doing any of it.

``baton plan`` asks the same questions as the sensors and the submitting runs, through
the same code (:func:`baton.signals.read_signal` and :func:`~baton.signals.check_signal`
for a signal, :func:`~baton.pipeline.submission.validate_request` and
:func:`~baton.slurm.render.render_job` for a submission), so a plan cannot disagree with
what happens. It writes nothing anywhere: no ledger, no log folder, no audit script; a
ledger that exists is only read, to say which tasks are already submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.config import Config
from baton.errors import BatonError, SignalError
from baton.ledger import Ledger
from baton.pipeline.guard import HOLD_MESSAGE, held
from baton.pipeline.keys import analysis_key, evaluation_items
from baton.pipeline.submission import comment_token, validate_request
from baton.signals import BY_FILENAME, SignalFile, TrainingComplete, check_signal, read_signal
from baton.slurm.render import RenderedJob, render_job


@dataclass(frozen=True)
class Verdict:
    """What the sensors would decide about one file: accepted, or quarantined and why."""

    path: Path
    signal: SignalFile | None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class PlannedTask:
    experiment: str
    checkpoint: str
    key: str
    job_id: str | None = None  # already submitted as this job (from the ledger)


@dataclass(frozen=True)
class PlannedSubmission:
    """One submission a run would make: its tasks (one job, or one array), the resources
    it asks for, the rendered script; or the problem the run would fail with."""

    stage: str
    tasks: list[PlannedTask]
    rendered: RenderedJob | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def new_tasks(self) -> list[PlannedTask]:
        return [t for t in self.tasks if t.job_id is None]


@dataclass
class Plan:
    verdicts: list[Verdict]
    submissions: list[PlannedSubmission]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every file would be accepted and every submission would pass its checks."""
        return all(v.accepted for v in self.verdicts) and \
            not any(s.problem for s in self.submissions)


def find_signals(paths: list[Path]) -> list[Path]:
    """The signal files named, and those under each folder named (a whole drive: every
    file named as a signal is, wherever it sits; the sensors quarantine one out of place)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for name in BY_FILENAME for p in path.rglob(name)
                            if "inbox" not in p.relative_to(path).parts)
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise BatonError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))


def judge(path: Path, config: Config) -> Verdict:
    """Accepted or quarantined, as the sensors would decide (strict read, place on the
    drive, checkpoints there to evaluate)."""
    try:
        sf = read_signal(path, config.drive)
        check_signal(path, sf.signal, config.drive)
    except SignalError as exc:
        return Verdict(path, None, exc.problem)
    return Verdict(path, sf)


def make_plan(config: Config, paths: list[Path], ledger: Ledger | None = None) -> Plan:
    """Judge every signal under ``paths`` and plan the submissions the accepted ones lead
    to: one evaluation (an array when several tasks) for the training signals, one
    analysis submission for the completed evaluations, as one sensor tick would batch
    them. ``ledger``: an existing ledger, read to find tasks already submitted."""
    verdicts = [judge(p, config) for p in find_signals(paths)]
    accepted = [v.signal for v in verdicts if v.signal is not None]
    plan = Plan(verdicts, [])
    latest: dict[str, SignalFile] = {}
    for sf in accepted:
        if isinstance(sf.signal, TrainingComplete):
            prev = latest.get(sf.signal.experiment)
            if prev is None or sf.signal.timestamp >= prev.signal.timestamp:
                latest[sf.signal.experiment] = sf
    if ledger is not None:  # as the training sensor holds them
        for exp, found in held(ledger, config.drive, sorted(latest)).items():
            plan.notes.append(f"{exp}: {HOLD_MESSAGE} (found {found[0]})")
            del latest[exp]
    generations = {exp: ledger.generation_for(exp, sf.idempotency_key)
                   for exp, sf in latest.items()} if ledger is not None else None
    triggers = {exp: (sf.idempotency_key, sf.signal.timestamp.isoformat())
                for exp, sf in latest.items()}
    tasks = [PlannedTask(e, c, key)
             for exp, sf in sorted(latest.items())
             for (e, c), key in evaluation_items(exp, sf.idempotency_key,
                                                 sf.signal.checkpoint_paths())]
    if tasks:
        if not config.sensors.auto_evaluate:
            plan.notes.append("sensors.auto_evaluate is false: the daemon records these "
                              "models and leaves their evaluation to you (the UI, a backfill)")
        plan.submissions.append(plan_stage(config, "evaluation", tasks, ledger, generations,
                                           triggers))
    evaluated = sorted({sf.signal.experiment for sf in accepted
                        if sf.kind == "eval_complete"
                        and getattr(sf.signal, "status", "") == "complete"})
    if evaluated:
        plan.submissions.append(plan_stage(config, "analysis", [
            PlannedTask(e, "", _analysis_key(e, latest, ledger)) for e in evaluated], ledger))
    return plan


def _analysis_key(experiment: str, latest: dict[str, SignalFile], ledger: Ledger | None
                  ) -> str:
    """The analysis key answers the evaluation's training signal: from this plan, else
    from the ledger; unknown without either (then nothing is found already submitted)."""
    if experiment in latest:
        return analysis_key(experiment, latest[experiment].idempotency_key)
    tasks = ledger.evaluation_tasks(experiment) if ledger is not None else []
    return analysis_key(experiment, tasks[0].trigger_key) if tasks else \
        f"analysis:{experiment}:(training signal unknown)"


def plan_stage(config: Config, stage: str, tasks: list[PlannedTask],
               ledger: Ledger | None, generations: Mapping[str, int] | None = None,
               triggers: Mapping[str, tuple[str, str]] | None = None) -> PlannedSubmission:
    """The submission of ``tasks`` as a run would make it (those the ledger holds already
    left out), checked and rendered but not submitted: ``baton plan`` and the dry run.
    ``generations``: each experiment's training generation, as the run exports it;
    ``triggers``: the training signal each experiment's tasks answer (key, time), else
    the ledger's of those generations, for the script's trigger lines as a run writes
    them."""
    if triggers is None and ledger is not None and generations:
        triggers = ledger.generation_signals(generations)
    if ledger is not None:
        known = {row.submission_key: row.job_id
                 for e in {t.experiment for t in tasks}
                 for row in ledger.jobs(experiment=e, stage=stage)}
        tasks = [PlannedTask(t.experiment, t.checkpoint, t.key, known.get(t.key))
                 if known.get(t.key) else t for t in tasks]
    new = [t for t in tasks if t.job_id is None]
    if not new:
        return PlannedSubmission(stage, tasks)
    items = [(t.experiment, t.checkpoint) for t in new]
    keys = [t.key for t in new]
    try:
        resources = validate_request(config, stage, items, keys, attempt=1, mem=None,
                                     time=None, campaigns={})
        rendered = render_job(config, stage, items, comment=comment_token(keys),
                              generations=generations, triggers=triggers)
    except BatonError as exc:
        return PlannedSubmission(stage, tasks, problem=str(exc))
    return PlannedSubmission(stage, tasks, rendered, resources)
