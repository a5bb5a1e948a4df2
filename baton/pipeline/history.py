"""What the shared drive remembers of the pipeline's past, for a ledger that lost it: the
signals, the Slurm scripts kept for audit (with the token each job carried as its
comment), and, cheaply for one experiment, whether it holds results at all.
``baton db rebuild`` replays the first two; the training sensor asks the third before it
submits anything for an experiment a fresh ledger knows nothing about."""

from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.errors import BatonError, SignalError
from baton.layout import DriveLayout
from baton.ledger.rebuild import Answered
from baton.pipeline.scan import CANONICAL
from baton.signals import SignalFile, read_signal
from baton.slurm.render import REPAIR_LINE, STAGE_PREFIX, TRIGGER_LINE
from baton.slurm.spec import JobSpec, spec_from_script

log = logging.getLogger(__name__)

_ATTEMPT = re.compile(r"\.attempt-(\d+)\.")


@dataclass(frozen=True)
class KeptScript:
    """One submission as its audit copy tells it: the stage, the token it carried as its
    comment, its tasks (experiment, checkpoint) in array order, its attempt, and the
    training signal each task answers (empty: a script written before scripts named it)."""

    path: Path
    stage: str
    spec: JobSpec
    tasks: tuple[tuple[str, str], ...]
    attempt: int
    answered: tuple[Answered, ...] = ()
    repair: dict[str, Any] | None = None

    @property
    def token(self) -> str | None:
        return self.spec.comment


def script_tasks(script: str) -> list[tuple[str, str]]:
    """The (experiment, checkpoint) of each task of a script rendered from baton's
    templates: the ``export BATON_*`` of one task, or one ``case`` line per array task."""
    tasks: list[tuple[str, str]] = []
    single: dict[str, str] = {}
    for line in script.splitlines():
        stripped = line.strip()
        if "BATON_EXPERIMENT=" not in stripped and "BATON_CHECKPOINT=" not in stripped:
            continue
        try:
            words = shlex.split(stripped)
        except ValueError:
            continue
        env = dict(w.split("=", 1) for w in words if "=" in w)
        if words and words[0].endswith(")"):  # an array task: N) export ... ;;
            tasks.append((env.get("BATON_EXPERIMENT", ""), env.get("BATON_CHECKPOINT", "")))
        elif words and words[0] == "export":
            single.update(env)
    if not tasks and "BATON_EXPERIMENT" in single:
        tasks.append((single["BATON_EXPERIMENT"], single.get("BATON_CHECKPOINT", "")))
    return tasks


def script_answers(script: str, tasks: int) -> tuple[Answered, ...]:
    """The training signal each of a script's ``tasks`` answers, from its ``# baton-trigger:
    task=I generation=N signal=KEY [time=ISO]`` lines (written since a retrain's jobs must
    be placed after its signal is overwritten); empty when the script names none. Raises
    BatonError naming the line that does not read."""
    found: dict[int, Answered] = {}
    for number, line in enumerate(script.splitlines(), 1):
        if not line.startswith(TRIGGER_LINE):
            continue
        fields = dict(w.split("=", 1) for w in line[len(TRIGGER_LINE):].split() if "=" in w)
        try:
            when = datetime.fromisoformat(fields["time"]) if fields.get("time") else None
            found[int(fields["task"])] = Answered(
                fields["signal"], int(fields["generation"]),
                when.astimezone(UTC) if when and when.tzinfo else when)
        except (KeyError, ValueError) as exc:
            raise BatonError(f"line {number} ({line.strip()}) does not read: {exc}") from None
    if not found:
        return ()
    if sorted(found) != list(range(tasks)):
        raise BatonError(f"its {TRIGGER_LINE} lines name tasks {sorted(found)}, not its "
                         f"{tasks} task(s)")
    return tuple(found[i] for i in range(tasks))


def script_repair(script: str) -> dict[str, Any] | None:
    """The supervision a repair's script answers (its ``# baton-repair:`` JSON line); None
    when it names none. Raises BatonError when the line does not read."""
    for number, line in enumerate(script.splitlines(), 1):
        if line.startswith(REPAIR_LINE):
            try:
                found = json.loads(line[len(REPAIR_LINE):])
            except ValueError as exc:
                raise BatonError(f"line {number} ({REPAIR_LINE} ...) does not read: "
                                 f"{exc}") from None
            if not isinstance(found, dict) or not {"repairs", "submission_key", "reason",
                                                   "supervision"} <= found.keys():
                raise BatonError(f"line {number} ({REPAIR_LINE} ...) does not name the "
                                 "job it repairs, its key, its supervision and its reason")
            return found
    return None


def kept_scripts(drive: DriveLayout) -> tuple[list[KeptScript], list[str]]:
    """Every stage script kept under ``logs/scripts/``, oldest first, and the problems of
    those that cannot be read (one line each)."""
    found: list[KeptScript] = []
    problems: list[str] = []
    for stage in STAGE_PREFIX:
        for path in sorted((drive.logs / "scripts" / stage).rglob("*.sh")):
            try:
                text = path.read_text()
                spec = spec_from_script(text)
            except (OSError, UnicodeDecodeError, BatonError) as exc:
                problems.append(f"{path}: {exc}")
                continue
            tasks = script_tasks(text)
            if not tasks:
                problems.append(f"{path}: names no task (not rendered by baton?)")
                continue
            try:
                answered = script_answers(text, len(tasks))
                repair = script_repair(text)
            except BatonError as exc:
                problems.append(f"{path}: {exc}")
                continue
            m = _ATTEMPT.search(path.name)
            found.append(KeptScript(path, stage, spec, tuple(tasks),
                                    int(m.group(1)) if m else 1, answered, repair))
    found.sort(key=lambda s: (s.path.stat().st_mtime, str(s.path)))
    return found, problems


def drive_signals(drive: DriveLayout) -> tuple[list[SignalFile], list[str]]:
    """Every signal where the drive's layout puts it, read strictly; and the problems of
    those that cannot be read (the sensors quarantine them when they see them)."""
    found: list[SignalFile] = []
    problems: list[str] = []
    for kind, (parts, patterns) in CANONICAL.items():
        base = drive.root.joinpath(*parts)
        for pattern in patterns:
            for path in sorted(base.glob(pattern)):
                try:
                    found.append(read_signal(path, drive, kind=kind))
                except SignalError as exc:
                    problems.append(f"{path}: {exc.problem}")
                except (BatonError, OSError) as exc:
                    problems.append(f"{path}: {exc}")
    return found, problems


def results_on_drive(drive: DriveLayout, experiment: str) -> list[str]:
    """What the drive holds of ``experiment``'s evaluation and analysis (empty: nothing):
    a few stat calls and a glob that stops at its first match, so the training sensor can
    ask it of every experiment it is about to submit for."""
    exp = drive.experiment(experiment)
    found = [str(p) for p in (exp.eval_complete_signal, exp.eval_failed_signal,
                              exp.analysis_signal) if p.exists()]
    tasks = exp.eval_dir / "tasks"
    if tasks.is_dir():
        found += [str(p) for p in (next(tasks.glob("*/.eval_*"), None),) if p]
    if exp.metrics_dir.is_dir():
        found += [str(p) for p in (next(exp.metrics_dir.glob("dataset=*/metric=*/*.parquet"),
                                        None),) if p]
    return found
