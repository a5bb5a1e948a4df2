"""``baton evaluate``: what the evaluation Slurm job runs on the compute node.

Datasets run in parallel worker processes (at most the job's CPUs), each streaming its
rows to Parquet; a dataset that fails, or whose worker process dies, is named in
``.eval_failed`` and what succeeded is kept. A failure before any dataset starts (no
checkpoint, a bad eval.yaml, an evaluator that does not load) is an ``.eval_failed``
too, so the pipeline hears about it instead of waiting for a signal that never comes.

A run by hand (outside Slurm) is given a folder of its own (``results``): its Parquet and
its would-be signal go there and nothing is announced, so a rerun never answers, joins or
overwrites a live evaluation; ``baton evaluate --publish`` announces it as job ``0``."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baton.config import Config
from baton.errors import BatonError, ConfigError
from baton.evaluate.metric_schema import FIRST_GENERATION
from baton.evaluate.protocol import load_evaluator
from baton.evaluate.writer import DatasetResult, DatasetWriter, clean_partial
from baton.inbox import publish
from baton.layout import DriveLayout, ExperimentLayout, validate_name
from baton.signals import (
    OUTSIDE_SLURM,
    EvalComplete,
    EvalFailed,
    Failure,
    Signal,
    read_signal,
    utcnow,
    write_signal,
)
from baton.tracking import Tracker

log = logging.getLogger(__name__)
# numerical libraries start a thread per core in every process; N workers on N cores
# then fight over them (measured ~20x slower on 2 cores): a worker gets its share
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class EvalConfig(BaseModel):
    """eval.yaml: which evaluator, which datasets, how."""

    model_config = ConfigDict(extra="forbid")
    evaluator: str = "example"
    datasets: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    batch_rows: int = Field(default=5000, ge=1)
    workers: int | None = Field(default=None, ge=1)  # capped at the job's CPUs


def load_eval_config(path: Path | None, drive: DriveLayout) -> EvalConfig:
    """``--config``, else ``config/evaluation/base_eval.yaml`` on the drive, else defaults."""
    if path is not None and not path.is_file():
        raise ConfigError(str(path), "", "no such file")
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
    """The Slurm id of this task (``123`` or ``123_4``) when the pipeline's job script runs
    it (the script exports ``BATON_STAGE``); ``0`` otherwise: by hand, inside a person's
    own ``salloc`` too (which sets ``SLURM_JOB_ID`` as well), so that its signal answers
    no task of a pipeline job."""
    if not os.environ.get("BATON_STAGE"):
        return OUTSIDE_SLURM
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID", OUTSIDE_SLURM)


@dataclass(frozen=True)
class HandLayout(ExperimentLayout):
    """An experiment whose evaluation results go to a folder of their own (a hand run):
    the writer and the signal use ``eval_dir``, here ``results``."""

    results: Path = Path()

    @property
    def eval_dir(self) -> Path:
        return self.results


def hand_results_dir(exp: ExperimentLayout) -> Path:
    """A new ``hand/{UTC time}/`` folder under the experiment's evaluation folder, for one
    hand run: beside the pipeline's results (which never read it), never among them."""
    return new_hand_folder(exp.eval_dir / "hand")


def new_hand_folder(base: Path) -> Path:
    """A new folder ``{UTC time}`` under ``base`` (``-2``, ``-3``... when it is taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1, 1000):
        folder = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise BatonError(f"cannot make a new folder in {base}: too many hand runs at {stamp}")


def layout_of(drive: DriveLayout, experiment: str, results: str | Path | None
              ) -> ExperimentLayout:
    """Where an evaluation writes: the experiment's own folders, or ``results``."""
    exp = drive.experiment(experiment)
    return HandLayout(exp.drive, exp.name, Path(results)) if results else exp


def evaluation_generation() -> int:
    """The experiment's training generation this evaluation answers: ``BATON_GENERATION``,
    which the rendered Slurm script exports; the first when it is not set (a hand run)."""
    value = os.environ.get("BATON_GENERATION", "").strip()
    if not value:
        return FIRST_GENERATION
    if not value.isdigit() or int(value) < FIRST_GENERATION:
        raise BatonError(f"BATON_GENERATION {value!r} is not a generation (1, 2, ...)")
    return int(value)


def cpus() -> int:
    """The CPUs this job may use: Slurm's allocation, else the ones this process may run on."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(conf: EvalConfig, datasets: int) -> int:
    """eval.yaml's ``workers`` (default: one per CPU), never more than the CPUs or datasets."""
    n = cpus()
    return max(1, min(datasets, conf.workers or n, n))


@contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Worker processes start with at most ``threads`` BLAS/OpenMP threads each, unless the
    user set those variables. (Spawned workers inherit the environment at start.)"""
    added = [v for v in BLAS_THREAD_VARS if not os.environ.get(v)]
    for var in added:
        os.environ[var] = str(threads)
    try:
        yield
    finally:
        for var in added:
            os.environ.pop(var, None)


@dataclass
class Outcome:
    dataset: str
    result: DatasetResult | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class Task:
    drive_root: str
    experiment: str
    checkpoint: str
    dataset: str
    job: str
    cfg: dict[str, Any]
    results: str = ""  # a hand run's own folder; "" for the experiment's
    generation: int = FIRST_GENERATION

    def args(self) -> tuple[str, str, str, str, str, dict[str, Any], str, int]:
        return (self.drive_root, self.experiment, self.checkpoint, self.dataset, self.job,
                self.cfg, self.results, self.generation)


def _run_dataset(drive_root: str, experiment: str, checkpoint: str, dataset: str, job: str,
                 cfg: dict[str, Any], results: str = "",
                 generation: int = FIRST_GENERATION) -> Outcome:
    """One dataset, in a worker process: load, evaluate, stream, commit (or abort)."""
    start = time.time()
    exp = layout_of(DriveLayout(Path(drive_root)), experiment, results)
    conf = EvalConfig.model_validate(cfg)
    writer = None
    try:
        evaluator = load_evaluator(conf.evaluator, conf.options)
        model = evaluator.load(Path(checkpoint))
        writer = DatasetWriter(exp, Path(checkpoint).name, dataset, job, conf.batch_rows,
                               generation)
        writer.add_all(evaluator.evaluate(model, dataset))
        return Outcome(dataset, writer.commit(), None, time.time() - start)
    except Exception as exc:  # reported in .eval_failed; the other datasets go on
        if writer is not None:
            writer.abort()
        return Outcome(dataset, None, f"{type(exc).__name__}: {exc}", time.time() - start)


def run_datasets(tasks: list[Task], workers: int) -> list[Outcome]:
    """Every task in a pool of ``workers`` processes. A worker that dies (killed, out of
    memory, ``os._exit`` in user code) breaks the pool and every dataset it was running
    with: those are run again, each in a process of its own, which finds the culprit."""
    ctx = multiprocessing.get_context("spawn")  # a clean process: no inherited threads/BLAS
    outcomes: dict[str, Outcome] = {}
    broken: list[Task] = []
    with blas_threads(max(1, cpus() // workers)):
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_run_dataset, *t.args()): t for t in tasks}
            for fut in as_completed(futures):
                task = futures[fut]
                outcome = _outcome(fut, task)
                if outcome is None:
                    broken.append(task)
                else:
                    outcomes[task.dataset] = outcome
        for task in broken:  # the pool is shut down: no worker writes any more
            _clean(task)
        if broken:
            log.warning("a worker process died; evaluating %s again, one process each",
                        ", ".join(t.dataset for t in broken))
            with ThreadPoolExecutor(max_workers=workers) as threads:
                for task, outcome in zip(broken, threads.map(lambda t: _alone(t, ctx), broken),
                                         strict=True):
                    outcomes[task.dataset] = outcome
    return [outcomes[t.dataset] for t in tasks]


def _outcome(fut: Future[Outcome], task: Task) -> Outcome | None:
    """The dataset's outcome, or None when its worker process died under it."""
    try:
        return fut.result()
    except BrokenProcessPool:
        return None
    except Exception as exc:  # e.g. an argument that does not pickle
        return Outcome(task.dataset, None, f"{type(exc).__name__}: {exc}", 0.0)


def _alone(task: Task, ctx: Any) -> Outcome:
    start = time.time()
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        outcome = _outcome(pool.submit(_run_dataset, *task.args()), task)
    if outcome is not None:
        return outcome
    _clean(task)
    return Outcome(task.dataset, None, "the worker process evaluating it died (killed by a "
                   "signal, out of memory, or exited from inside the evaluator); its "
                   "unfinished files were removed", time.time() - start)


def _clean(task: Task) -> None:
    exp = layout_of(DriveLayout(Path(task.drive_root)), task.experiment, task.results)
    for tmp in clean_partial(exp, Path(task.checkpoint).name, task.dataset, task.job,
                             task.generation):
        log.warning("removed %s, left by a worker that died", tmp)


def evaluate(config: Config, experiment: str, checkpoint: str, eval_config: Path | None = None,
             results: Path | None = None, generation: int | None = None) -> tuple[bool, Path]:
    """Evaluate one checkpoint of one experiment; returns (succeeded, signal path).
    ``results``: a folder of its own for the Parquet, ``eval_metadata.json`` and the
    signal (as ``eval_complete.json``/``eval_failed.json``, announced to no one); None:
    the experiment's, announced to the pipeline (what the Slurm job does). ``generation``:
    the training generation answered (default: ``BATON_GENERATION``, else the first)."""
    start = time.time()
    drive = config.drive
    exp = layout_of(drive, experiment, results)
    job = job_tag()
    try:
        generation = generation or evaluation_generation()
        ckpt, conf, datasets = _prepare(drive, checkpoint, eval_config)
    except Exception as exc:  # anything before the datasets start is critical
        return _failed_to_start(drive, exp, checkpoint, job, exc, time.time() - start)
    training = _training_signal(drive, experiment)
    tracker = Tracker(config.mlflow.tracking_uri)
    tracker.start(f"baton/{(training and training.campaign) or experiment}",
                  f"evaluation {experiment} {ckpt.name}",
                  parent_run_id=training.mlflow_run_id if training else None,
                  tags={"baton.stage": "evaluation", "baton.experiment": experiment,
                        "baton.checkpoint": str(ckpt), "baton.slurm_job_id": job})
    tracker.params({"evaluator": conf.evaluator, "datasets": ",".join(datasets),
                    "checkpoint": ckpt.name})
    workers = worker_count(conf, len(datasets))
    log.info("evaluating %s at %s: %d dataset(s) on %d worker(s)", experiment, ckpt,
             len(datasets), workers)
    cfg = conf.model_dump()
    tasks = [Task(str(drive.root), experiment, str(ckpt), d, job, cfg, str(results or ""),
                  generation) for d in datasets]
    outcomes = run_datasets(tasks, workers)
    return _finish(drive, exp, ckpt, job, outcomes, tracker, time.time() - start)


def _prepare(drive: DriveLayout, checkpoint: str, eval_config: Path | None
             ) -> tuple[Path, EvalConfig, list[str]]:
    ckpt = drive.inside(checkpoint, "checkpoint")
    if not ckpt.exists():
        raise BatonError(f"checkpoint {checkpoint} does not exist")
    validate_name(ckpt.name, "checkpoint folder name")
    conf = load_eval_config(eval_config, drive)
    try:
        evaluator = load_evaluator(conf.evaluator, conf.options)
        names = conf.datasets or evaluator.datasets()
    except BatonError:
        raise
    except Exception as exc:  # the evaluator's own code failed
        raise BatonError(f"evaluator {conf.evaluator!r} failed to load: "
                         f"{type(exc).__name__}: {exc}") from None
    datasets = [validate_name(d, "dataset name") for d in names]
    if not datasets:
        raise BatonError(f"evaluator {conf.evaluator!r} offers no datasets")
    return ckpt, conf, datasets


def _signal_dir(exp: ExperimentLayout) -> Path:
    if isinstance(exp, HandLayout):
        return exp.results
    return Path(os.environ.get("BATON_SIGNAL_DIR") or exp.eval_dir)


def _announce(drive: DriveLayout, exp: ExperimentLayout, signal: Signal) -> Path:
    """Publish the signal to the pipeline; a hand run's only written to its own folder."""
    if isinstance(exp, HandLayout):
        return write_signal(exp.results / f"{signal.kind}.json", signal)
    return publish(drive, signal, _signal_dir(exp) / signal.filename)


def _failed_to_start(drive: DriveLayout, exp: ExperimentLayout, checkpoint: str, job: str,
                     exc: Exception, seconds: float) -> tuple[bool, Path]:
    reason = str(exc) if isinstance(exc, BatonError) else f"{type(exc).__name__}: {exc}"
    message = f"evaluation of {exp.name} at {checkpoint} could not start: {reason}"
    log.error("%s", message)
    try:  # name the checkpoint in the signal only if it is a path the signal may carry
        ckpt: str | None = str(drive.inside(checkpoint, "checkpoint"))
    except BatonError:
        ckpt = None
    signal_dir = _signal_dir(exp)
    meta_path = signal_dir / "eval_metadata.json"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps({"experiment": exp.name, "checkpoint": checkpoint,
                                     "job_id": job, "error": message, "datasets": {}},
                                    indent=2))
    signal = EvalFailed(timestamp=utcnow(), experiment=exp.name, job_id=job, status="failed",
                        error_message=message[:60000], datasets_evaluated=[],
                        eval_duration_seconds=round(seconds, 3),
                        checkpoints_evaluated=[ckpt] if ckpt else None,
                        failures=[Failure(error=message[:4000], checkpoint=ckpt)])
    return False, _announce(drive, exp, signal)


def _training_signal(drive: DriveLayout, experiment: str) -> Any:
    try:
        return read_signal(drive.experiment(experiment).training_signal, drive).signal
    except BatonError:
        return None


def _finish(drive: DriveLayout, exp: ExperimentLayout, ckpt: Path, job: str,
            outcomes: list[Outcome], tracker: Tracker, seconds: float) -> tuple[bool, Path]:
    done = [o for o in outcomes if o.result is not None]
    failed = [o for o in outcomes if o.error is not None]
    summary = {f"{o.dataset}/{m}": round(v, 6) for o in done for m, v in o.result.means().items()}
    tracker.metrics(summary)
    tracker.metrics({"eval_duration_seconds": seconds})
    signal_dir = _signal_dir(exp)
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
                            failures=[Failure(dataset=o.dataset, error=(o.error or "")[:4000],
                                              checkpoint=str(ckpt)) for o in failed],
                            **common)
        path = _announce(drive, exp, signal)
        log.error("%s", message)
    else:
        path = _announce(drive, exp, EvalComplete(status="complete", **common))
    tracker.end(ok=not failed)
    return not failed, path
