"""Render evaluation and analysis scripts from Jinja2 templates, and keep each for audit.

Everything that comes from a signal (experiment, checkpoint) is validated and
shell-quoted; only the stage's ``setup`` and ``command`` from baton.yaml (the admin's
own configuration) are inserted as they are.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from baton import __version__
from baton.config import Config
from baton.errors import ConfigError, InvalidName
from baton.fsio import atomic_write
from baton.layout import DriveLayout
from baton.slurm.spec import JobSpec

STAGE_PREFIX = {"evaluation": "eval", "analysis": "analysis"}
DEFAULT_COMMANDS = {
    "evaluation": '{python} -m baton evaluate --experiment "$BATON_EXPERIMENT" '
                  '--checkpoint "$BATON_CHECKPOINT"',
    "analysis": '{python} -m baton analyze --experiment "$BATON_EXPERIMENT"',
}


@dataclass(frozen=True)
class Task:
    """One unit of work: an experiment (and for evaluation, a checkpoint). ``signal_dir``
    is where the task writes its completion signal: the experiment's own folder, or
    ``tasks/{checkpoint}/`` when the experiment's evaluation fans out over checkpoints."""

    experiment: str
    checkpoint: str = ""
    index: int = 0
    signal_dir: str = ""
    generation: int = 1  # the experiment's training generation it answers (a retrain's >1)
    trigger: str = ""  # that generation's training signal (its key), for the audit copy
    signal_time: str = ""  # its timestamp (ISO 8601), when known


# what ``baton db rebuild`` reads back from the audit copy: per task, the training signal
# it answers (a retrain overwrites that signal on the drive, the script keeps its key)
TRIGGER_LINE = "# baton-trigger:"
REPAIR_LINE = "# baton-repair:"  # then JSON: the supervision a repair's script answers
_WORD = re.compile(r"[A-Za-z0-9._:#+-]*")


@dataclass(frozen=True)
class RenderedJob:
    spec: JobSpec
    tasks: tuple[Task, ...]
    stage: str

    @property
    def script(self) -> str:
        return self.spec.script


@functools.lru_cache(maxsize=8)
def _environment(extra_dir: Path | None) -> jinja2.Environment:
    """One environment per template folder and process: it keeps the compiled templates
    (compiling anew cost 8.2 ms of CPU a render, against 0.27 ms; a burst of 1,000 renders
    a script per experiment) and reloads a template whose file changed (jinja2's
    ``auto_reload``)."""
    loaders: list[jinja2.BaseLoader] = []
    if extra_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(extra_dir)))
    loaders.append(jinja2.PackageLoader("baton.slurm", "templates"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=True)
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env


def build_tasks(stage: str, items: list[tuple[str, str]], drive: DriveLayout,
                generations: Mapping[str, int] | None = None,
                triggers: Mapping[str, tuple[str, str]] | None = None) -> list[Task]:
    """Validate every (experiment, checkpoint) pair before anything is rendered.
    ``generations``: each experiment's training generation (1 when not given);
    ``triggers``: each experiment's (signal key, signal time) of that generation."""
    if not items:
        raise InvalidName("nothing to submit: no experiments given")
    per_experiment: dict[str, int] = {}
    for experiment, _ in items:
        per_experiment[experiment] = per_experiment.get(experiment, 0) + 1
    tasks = []
    for i, (experiment, checkpoint) in enumerate(items):
        exp = drive.experiment(experiment)
        signal_dir = exp.reports_dir if stage == "analysis" else exp.eval_dir
        if stage == "evaluation":
            if not checkpoint:
                raise InvalidName(f"evaluation of {experiment!r} needs a checkpoint")
            drive.inside(checkpoint, "checkpoint")
            if per_experiment[experiment] > 1:
                signal_dir = exp.eval_task_dir(checkpoint)
        trigger, signal_time = (triggers or {}).get(experiment, ("", ""))
        for value in (trigger, signal_time):  # goes into a comment line: one word
            if not _WORD.fullmatch(value):
                raise InvalidName(f"training signal {value!r} of {experiment} cannot be "
                                  "named in a script (not one word)")
        tasks.append(Task(experiment, checkpoint, i, str(signal_dir),
                          int((generations or {}).get(experiment, 1)), trigger, signal_time))
    return tasks


def render_job(config: Config, stage: str, items: list[tuple[str, str]], *,
               attempt: int = 1, mem: str | None = None, time: str | None = None,
               array_throttle: int | None = None, dependency: str | None = None,
               comment: str | None = None,
               generations: Mapping[str, int] | None = None,
               triggers: Mapping[str, tuple[str, str]] | None = None,
               repair: Mapping[str, Any] | None = None) -> RenderedJob:
    """One script for one or many (experiment, checkpoint) tasks; many become an array.
    Each task exports its experiment's training generation (``generations``, else 1); with
    ``triggers`` (experiment -> that generation's signal key and time) the script also
    names them in a ``# baton-trigger:`` comment per task, and a repair's script names the
    supervision it answers (``repair``, one ``# baton-repair:`` JSON line): what ``baton db
    rebuild`` reads back."""
    if stage not in STAGE_PREFIX:
        raise InvalidName(f"unknown stage {stage!r}; expected evaluation or analysis")
    drive = config.drive
    stage_cfg = config.stage(stage)
    tasks = build_tasks(stage, items, drive, generations, triggers)
    prefix = STAGE_PREFIX[stage]
    is_array = len(tasks) > 1
    name = f"{prefix}_{tasks[0].experiment}" if not is_array else f"{prefix}_array"
    log_dir = drive.logs / stage
    pattern = "%A_%a" if is_array else "%j"
    throttle = array_throttle or stage_cfg.array_throttle
    spec = JobSpec(
        name=name,
        script="#!/bin/bash\n",  # replaced below, once the directives are known
        time=time or stage_cfg.time,
        mem=mem or stage_cfg.mem,
        cpus=stage_cfg.cpus,
        partition=stage_cfg.partition or config.slurm.partition,
        account=config.slurm.account,
        qos=stage_cfg.qos or config.slurm.qos,
        gres=stage_cfg.gres,
        array=f"0-{len(tasks) - 1}%{throttle}" if is_array else None,
        dependency=dependency,
        comment=comment,
        output=str(log_dir / f"{pattern}.log"),
        error=str(log_dir / f"{pattern}.err"),
    )
    template_dir = stage_cfg.template.parent if stage_cfg.template else None
    template_name = stage_cfg.template.name if stage_cfg.template else "job.sh.j2"
    command = stage_cfg.command or DEFAULT_COMMANDS[stage].format(
        python=shlex.quote(sys.executable))
    try:
        text = _environment(template_dir).get_template(template_name).render(
            spec=spec, stage=stage, tasks=tasks, drive=str(drive.root),
            mlflow_uri=config.mlflow.tracking_uri, setup=stage_cfg.setup, command=command,
            version=__version__,
            rendered_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), attempt=attempt,
            repair=json.dumps(dict(repair), sort_keys=True, default=str) if repair else None)
    except (jinja2.TemplateError, OSError) as exc:  # the admin's template: say which
        raise ConfigError(config.source, f"stages.{stage}.template",
                          f"{template_name} cannot be rendered: {exc}") from None
    return RenderedJob(spec=spec.with_(script=text), tasks=tuple(tasks), stage=stage)


def keep_for_audit(drive: DriveLayout, job: RenderedJob, attempt: int = 1) -> Path:
    """Write the script where people can read it later: ``logs/scripts/{stage}/...``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    prefix = STAGE_PREFIX[job.stage]
    if len(job.tasks) == 1:
        folder = drive.experiment(job.tasks[0].experiment).script_dir(job.stage)
        name = f"slurm_{prefix}_{job.tasks[0].experiment}.attempt-{attempt}.{stamp}.sh"
    else:
        folder = drive.logs / "scripts" / job.stage / "_arrays"
        name = f"slurm_{prefix}_array.{len(job.tasks)}-tasks.{stamp}.sh"
    path = atomic_write(folder / name, job.script.encode())
    path.chmod(0o755)
    return path
