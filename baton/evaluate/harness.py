"""``baton evaluate``: what the evaluation Slurm job runs on the compute node.

Datasets run in parallel (up to the job's CPUs), each streaming its rows to Parquet;
a dataset that fails is named in ``.eval_failed`` and what succeeded is kept."""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baton.config import Config
from baton.errors import BatonError, ConfigError
from baton.evaluate.protocol import load_evaluator
from baton.evaluate.writer import DatasetResult, DatasetWriter
from baton.inbox import publish
from baton.layout import DriveLayout, validate_name
from baton.signals import EvalComplete, EvalFailed, Failure, read_signal, utcnow
from baton.tracking import Tracker

log = logging.getLogger(__name__)


class EvalConfig(BaseModel):
    """eval.yaml: which evaluator, which datasets, how."""

    model_config = ConfigDict(extra="forbid")
    evaluator: str = "example"
    datasets: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    batch_rows: int = Field(default=5000, ge=1)
    workers: int | None = Field(default=None, ge=1)


def load_eval_config(path: Path | None, drive: DriveLayout) -> EvalConfig:
    """``--config``, else ``config/evaluation/base_eval.yaml`` on the drive, else defaults."""
    path = path or (drive.config / "evaluation" / "base_eval.yaml")
    if not path.is_file():
        return EvalConfig()
    try:
        return EvalConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(str(path), "", str(exc).splitlines()[0] if isinstance(
            exc, yaml.YAMLError) else _first(exc)) from None


def _first(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def job_tag() -> str:
    """The Slurm id of this task (``123`` or ``123_4``), ``0`` outside Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID", "0")


def cpus() -> int:
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


@dataclass
class Outcome:
    dataset: str
    result: DatasetResult | None
    error: str | None
    seconds: float


def _run_dataset(drive_root: str, experiment: str, checkpoint: str, dataset: str, job: str,
                 cfg: dict[str, Any]) -> Outcome:
    """One dataset, in a worker process: load, evaluate, stream, commit (or abort)."""
    start = time.time()
    exp = DriveLayout(Path(drive_root)).experiment(experiment)
    conf = EvalConfig.model_validate(cfg)
    writer = None
    try:
        evaluator = load_evaluator(conf.evaluator, conf.options)
        model = evaluator.load(Path(checkpoint))
        writer = DatasetWriter(exp, Path(checkpoint).name, dataset, job, conf.batch_rows)
        writer.add_all(evaluator.evaluate(model, dataset))
        return Outcome(dataset, writer.commit(), None, time.time() - start)
    except Exception as exc:  # reported in .eval_failed; the other datasets go on
        if writer is not None:
            writer.abort()
        return Outcome(dataset, None, f"{type(exc).__name__}: {exc}", time.time() - start)


def evaluate(config: Config, experiment: str, checkpoint: str, eval_config: Path | None = None
             ) -> tuple[bool, Path]:
    """Evaluate one checkpoint of one experiment; returns (succeeded, signal path)."""
    start = time.time()
    drive = config.drive
    exp = drive.experiment(experiment)
    ckpt = drive.inside(checkpoint, "checkpoint")
    if not ckpt.exists():
        raise BatonError(f"checkpoint {checkpoint} does not exist")
    validate_name(ckpt.name, "checkpoint folder name")
    conf = load_eval_config(eval_config, drive)
    evaluator = load_evaluator(conf.evaluator, conf.options)
    datasets = [validate_name(d, "dataset name") for d in (conf.datasets or
                                                           evaluator.datasets())]
    job = job_tag()
    training = _training_signal(drive, experiment)
    tracker = Tracker(config.mlflow.tracking_uri)
    tracker.start(f"baton/{(training and training.campaign) or experiment}",
                  f"evaluation {experiment} {ckpt.name}",
                  parent_run_id=training.mlflow_run_id if training else None,
                  tags={"baton.stage": "evaluation", "baton.experiment": experiment,
                        "baton.checkpoint": str(ckpt), "baton.slurm_job_id": job})
    tracker.params({"evaluator": conf.evaluator, "datasets": ",".join(datasets),
                    "checkpoint": ckpt.name})
    workers = min(len(datasets), conf.workers or cpus())
    log.info("evaluating %s at %s: %d dataset(s) on %d worker(s)", experiment, ckpt,
             len(datasets), workers)
    cfg = conf.model_dump()
    args = [(str(drive.root), experiment, str(ckpt), d, job, cfg) for d in datasets]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(_run_dataset, *zip(*args, strict=True)))
    else:
        outcomes = [_run_dataset(*a) for a in args]
    return _finish(drive, exp, ckpt, job, outcomes, tracker, time.time() - start)


def _training_signal(drive: DriveLayout, experiment: str) -> Any:
    try:
        return read_signal(drive.experiment(experiment).training_signal, drive).signal
    except BatonError:
        return None


def _finish(drive: DriveLayout, exp: Any, ckpt: Path, job: str, outcomes: list[Outcome],
            tracker: Tracker, seconds: float) -> tuple[bool, Path]:
    done = [o for o in outcomes if o.result is not None]
    failed = [o for o in outcomes if o.error is not None]
    summary = {f"{o.dataset}/{m}": round(v, 6) for o in done for m, v in o.result.means().items()}
    tracker.metrics(summary)
    tracker.metrics({"eval_duration_seconds": seconds})
    signal_dir = Path(os.environ.get("BATON_SIGNAL_DIR") or exp.eval_dir)
    meta = {"experiment": exp.name, "checkpoint": str(ckpt), "job_id": job,
            "datasets": {o.dataset: {"seconds": round(o.seconds, 3), "error": o.error,
                                     **(asdict(o.result) if o.result else {})}
                         for o in outcomes}}
    meta_path = signal_dir / "eval_metadata.json"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2, default=str))
    tracker.artifact(meta_path)
    common = dict(timestamp=utcnow(), experiment=exp.name, job_id=job,
                  datasets_evaluated=[o.dataset for o in done], metrics_summary=summary,
                  eval_duration_seconds=round(seconds, 3), checkpoints_evaluated=[str(ckpt)],
                  mlflow_run_id=tracker.run_id)
    if failed:
        message = f"{len(failed)} of {len(outcomes)} dataset(s) failed: " + "; ".join(
            f"{o.dataset}: {o.error}" for o in failed)
        signal = EvalFailed(status="failed", error_message=message[:60000],
                            failures=[Failure(dataset=o.dataset, error=o.error[:4000],
                                              checkpoint=str(ckpt)) for o in failed],
                            **common)
        path = publish(drive, signal, signal_dir / ".eval_failed")
        log.error("%s", message)
    else:
        path = publish(drive, EvalComplete(status="complete", **common),
                       signal_dir / ".eval_complete")
    tracker.end(ok=not failed)
    return not failed, path
