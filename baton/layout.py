"""The shared-drive layout of the streaming-pipeline spec, and the names allowed in it.

No database lives on the drive (SQLite's WAL does not work over NFS): the spec's
``state/`` folder is replaced by the orchestrator's local ledger.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from baton.errors import BatonError, InvalidName, PathEscape

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STAGES = ("training", "evaluation", "analysis")
SIGNAL_KINDS = ("training_complete", "eval_complete", "eval_failed", "analysis_complete")

TRAINING_SIGNAL = ".training_complete"
EVAL_COMPLETE_SIGNAL = ".eval_complete"
EVAL_FAILED_SIGNAL = ".eval_failed"
ANALYSIS_SIGNAL = ".analysis_complete"
# the metrics Parquet inside an experiment's metrics/ folder (hive-style partitions)
METRIC_FILES = "dataset=*/metric=*/*.parquet"


def validate_name(value: object, what: str = "experiment name") -> str:
    """Return ``value`` if it is a safe name for a folder, a Slurm job and a shell word."""
    if not isinstance(value, str):
        raise InvalidName(f"{what} must be a string, got {type(value).__name__}")
    if not NAME_RE.fullmatch(value):
        raise InvalidName(
            f"{what} {value!r} is not allowed: use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return value


def resolve_inside(root: Path, path: Path | str, what: str = "path") -> Path:
    """Resolve ``path`` (following symlinks) and make sure it stays under ``root``."""
    real_root = Path(os.path.realpath(root))
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = real_root / candidate
    real = Path(os.path.realpath(candidate))
    if real != real_root and real_root not in real.parents:
        shown = f"{path} (resolves to {real})" if str(real) != str(path) else str(path)
        raise PathEscape(f"{what} {shown} is outside the shared drive {real_root}")
    return real


@dataclass(frozen=True)
class DriveLayout:
    """Where everything lives on the shared drive; every path is derived, none stored."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # top-level folders
    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlflow-artifacts"

    @property
    def inbox(self) -> Path:
        """Where writers drop a marker next to each signal, so a watcher need not list
        every experiment folder to find new signals."""
        return self.root / "signals" / "incoming"

    def top_level(self) -> list[Path]:
        return [
            *(self.inbox / kind for kind in SIGNAL_KINDS),
            self.config / "experiments",
            self.config / "evaluation",
            self.models,
            self.evaluation,
            self.analysis,
            self.mlflow_artifacts,
            *(self.logs / stage for stage in STAGES),
            self.logs / "scripts",
        ]

    def create(self) -> None:
        """Create the drive and its top-level folders (idempotent): ``baton db init``, the
        demo."""
        for folder in self.top_level():
            folder.mkdir(parents=True, exist_ok=True)

    def ensure(self, *folders: Path) -> None:
        """Create ``folders`` where they are missing, under a drive that exists. The drive
        itself is never created here: one that is not there is likely not mounted, and a
        local folder in its place would hide that."""
        if not self.root.is_dir():
            raise BatonError(f"the shared drive {self.root} does not exist (not mounted?): "
                             "mount it, or create it with `baton db init`")
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BatonError(f"cannot create {folder}: {exc.strerror or exc}") from None

    def experiment(self, name: str) -> ExperimentLayout:
        return ExperimentLayout(self, validate_name(name))

    def inside(self, path: Path | str, what: str = "path") -> Path:
        return resolve_inside(self.root, path, what)


@dataclass(frozen=True)
class ExperimentLayout:
    """The paths of one experiment, as the spec lays them out."""

    drive: DriveLayout
    name: str

    # training (written by the training server)
    @property
    def model_dir(self) -> Path:
        return self.drive.models / self.name

    @property
    def checkpoints_dir(self) -> Path:
        return self.model_dir / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return self.model_dir / "final"

    @property
    def training_signal(self) -> Path:
        return self.model_dir / TRAINING_SIGNAL

    @property
    def training_metadata(self) -> Path:
        return self.model_dir / "training_metadata.json"

    # evaluation (written by the evaluation jobs)
    @property
    def eval_dir(self) -> Path:
        return self.drive.evaluation / self.name

    @property
    def metrics_dir(self) -> Path:
        return self.eval_dir / "metrics"

    def metric_files(self) -> list[Path]:
        """Every metrics Parquet file of the experiment, sorted."""
        return sorted(self.metrics_dir.glob(METRIC_FILES))

    @property
    def predictions_dir(self) -> Path:
        return self.eval_dir / "predictions"

    @property
    def eval_complete_signal(self) -> Path:
        return self.eval_dir / EVAL_COMPLETE_SIGNAL

    @property
    def eval_failed_signal(self) -> Path:
        return self.eval_dir / EVAL_FAILED_SIGNAL

    def eval_task_dir(self, checkpoint: str | Path) -> Path:
        """Where one task of a fanned-out evaluation (one checkpoint) leaves its signal."""
        return self.eval_dir / "tasks" / validate_name(Path(checkpoint).name, "checkpoint name")

    @property
    def eval_metadata(self) -> Path:
        return self.eval_dir / "eval_metadata.json"

    # analysis (written by the analysis jobs)
    @property
    def figures_dir(self) -> Path:
        return self.drive.analysis / "figures" / self.name

    @property
    def tables_dir(self) -> Path:
        return self.drive.analysis / "tables" / self.name

    @property
    def reports_dir(self) -> Path:
        return self.drive.analysis / "reports" / self.name

    @property
    def analysis_signal(self) -> Path:
        return self.reports_dir / ANALYSIS_SIGNAL

    # logs and audit copies of the Slurm scripts
    @property
    def training_log(self) -> Path:
        return self.drive.logs / "training" / f"{self.name}.log"

    def job_log_dir(self, stage: str) -> Path:
        if stage not in STAGES:
            raise InvalidName(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        return self.drive.logs / stage

    def script_dir(self, stage: str) -> Path:
        self.job_log_dir(stage)
        return self.drive.logs / "scripts" / stage / self.name

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f"checkpoint-{step}"
