"""Where a report's numbers come from: when and with which baton it was made, the
training's git commit and configuration, the Slurm jobs, the MLflow runs and the Dagster
pages; and the hyperparameters of each experiment, from its training signal's own fields
and its training configuration, so that what a campaign sweeps is shown as columns."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

import baton
from baton.config import Config
from baton.errors import BatonError
from baton.evaluate.harness import job_tag
from baton.layout import DriveLayout
from baton.signals import EvalComplete, TrainingComplete, read_signal, utcnow
from baton.tracking import Tracker

log = logging.getLogger(__name__)
Scalar = str | int | float | bool
MAX_CONFIG_BYTES = 1 << 20  # a training configuration larger than this is not read


@dataclass
class Provenance:
    experiment: str
    campaign: str | None = None
    created: str = field(default_factory=lambda: utcnow().isoformat(timespec="seconds"))
    baton_version: str = baton.__version__
    git_commit: str | None = None
    config_path: str | None = None
    hyperparameters: dict[str, Scalar] = field(default_factory=dict)
    jobs: dict[str, list[str]] = field(default_factory=dict)  # stage -> Slurm job ids
    links: dict[str, str | None] = field(default_factory=dict)  # what -> URL (or run id)

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) lines of the report's provenance block; unknowns said so."""
        unknown = "not recorded"
        jobs = "; ".join(f"{stage} {', '.join(ids)}" for stage, ids in self.jobs.items())
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        return [("experiment", self.experiment), ("campaign", self.campaign or "none"),
                ("created (UTC)", self.created), ("baton version", self.baton_version),
                ("training git commit", self.git_commit or unknown),
                ("training configuration", self.config_path or unknown),
                ("hyperparameters", hyper or unknown), ("Slurm job ids", jobs or unknown),
                *((k, v or unknown) for k, v in self.links.items())]


def provenance(config: Config, tracker: Tracker, experiment: str,
               training: TrainingComplete | None, hyper: dict[str, Scalar]) -> Provenance:
    """The report's provenance, from the training signal, the evaluation's signals, this
    job, MLflow, ``web.url`` and ``dagster.url``."""
    campaign = training.campaign if training else None
    return Provenance(
        experiment, campaign, git_commit=training.git_commit if training else None,
        config_path=training.config_path if training else None, hyperparameters=hyper,
        jobs=job_ids(config.drive, experiment, training, job_tag()),
        links={"MLflow training run": mlflow_link(tracker, config.mlflow.ui(),
                                                  training.mlflow_run_id if training else None),
               "MLflow analysis run": mlflow_link(tracker, config.mlflow.ui(), tracker.run_id),
               "baton web": config.web.experiment_page(experiment),
               **dagster_links(config.dagster.url, experiment, campaign)})


def _flat(doc: Any, prefix: str = "") -> dict[str, Scalar]:
    """A nested mapping's scalar leaves as ``a.b`` keys (lists and nulls left out)."""
    out: dict[str, Scalar] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.update(_flat(value, f"{prefix}{key}."))
    elif isinstance(doc, str | int | float | bool):
        out[prefix.rstrip(".")] = doc
    return out


def training_config(path: str | None) -> dict[str, Scalar]:
    """The training configuration file's settings (JSON or YAML mapping), flattened; an
    unreadable one is logged and counts as none (the report says ``not recorded``)."""
    if not path:
        return {}
    try:
        p = Path(path)
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
        text = p.read_text()
        doc = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        log.warning("training configuration %s not read: %s", path, exc)
        return {}
    return _flat(doc) if isinstance(doc, dict) else {}


def hyperparameters(training: TrainingComplete | None) -> dict[str, Scalar]:
    """The training configuration's settings, overridden by the signal's own fields."""
    if training is None:
        return {}
    return {**training_config(training.config_path), **_flat(training.extra_fields())}


def varying(per_experiment: dict[str, dict[str, Scalar]]) -> list[str]:
    """The hyperparameters whose values differ across the experiments (missing counts as
    a value): what the campaign sweeps, in name order."""
    names = sorted({k for h in per_experiment.values() for k in h})
    return [k for k in names if len({repr(h.get(k)) for h in per_experiment.values()}) > 1]


def job_ids(drive: DriveLayout, experiment: str, training: TrainingComplete | None,
            analysis_job: str) -> dict[str, list[str]]:
    """Slurm job ids by stage: the training's (a ``slurm_job_id`` field of its signal),
    the evaluation's (its tasks' signals) and this analysis' own (``0``: by hand)."""
    exp = drive.experiment(experiment)
    out: dict[str, list[str]] = {}
    if training and (job := training.extra_fields().get("slurm_job_id")):
        out["training"] = [str(job)]
    evals = set()
    for path in [exp.eval_complete_signal, *sorted(exp.eval_dir.glob("tasks/*/.eval_complete"))]:
        try:
            sig = read_signal(path).signal
        except BatonError:
            continue
        if isinstance(sig, EvalComplete) and sig.job_id != "0":
            evals.add(sig.job_id)
    if evals:
        out["evaluation"] = sorted(evals)
    out["analysis"] = [analysis_job]
    return out


def mlflow_link(tracker: Tracker, ui: str | None, run_id: str | None) -> str | None:
    """The MLflow UI's page of a run (``mlflow.ui()``); else the run id."""
    if not run_id:
        return None
    if tracker.client is None or not ui:
        return f"run {run_id}"
    try:
        exp_id = tracker.client.get_run(run_id).info.experiment_id
    except Exception as exc:  # MLflow is never in the way
        log.warning("MLflow run %s not found for the report's link: %s", run_id, exc)
        return f"run {run_id}"
    return f"{ui}/#/experiments/{exp_id}/runs/{run_id}"


def dagster_links(dagster_url: str | None, experiment: str, campaign: str | None
                  ) -> dict[str, str]:
    """The Dagster UI's pages of the experiment's analysis and its campaign's table."""
    pages = {"Dagster analysis_report": ("analysis_report", experiment)}
    if campaign:
        pages["Dagster campaign_report"] = ("campaign_report", campaign)
    base = (dagster_url or "").rstrip("/")
    return {what: f"{base}/assets/{asset}?view=partitions&partition={quote(part)}" if base
            else f"asset {asset}, partition {part}" for what, (asset, part) in pages.items()}
