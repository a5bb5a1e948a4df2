"""``baton analyze``: what the analysis Slurm job runs. Reads the experiment's metrics
(and its campaign's) with DuckDB and writes figures, tables, a report and a manifest
under ``analysis/``, logs to MLflow, and announces ``.analysis_complete``. Run by hand
(outside Slurm) it writes to a folder of its own instead (``results``) and announces
nothing, unless ``baton analyze --publish``, as ``baton evaluate``."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baton.analyze.data import Frame, Metrics, step_of
from baton.analyze.outputs import (
    html_report,
    html_table,
    manifest_entry,
    plt,
    save_figure,
    write_table,
)
from baton.analyze.stats import bootstrap_ci
from baton.config import Config
from baton.errors import BatonError
from baton.evaluate.harness import job_tag, new_hand_folder
from baton.fsio import atomic_write
from baton.inbox import publish
from baton.layout import DriveLayout, ExperimentLayout
from baton.signals import AnalysisComplete, TrainingComplete, read_signal, utcnow, write_signal
from baton.tracking import Tracker

log = logging.getLogger(__name__)
MAX_CAMPAIGN_SCAN = 5000


@dataclass(frozen=True)
class HandAnalysisLayout(ExperimentLayout):
    """An experiment whose analysis outputs go to a folder of their own (a hand run):
    ``figures/``, ``tables/`` and the report in ``results``."""

    results: Path = Path()

    @property
    def figures_dir(self) -> Path:
        return self.results / "figures"

    @property
    def tables_dir(self) -> Path:
        return self.results / "tables"

    @property
    def reports_dir(self) -> Path:
        return self.results


def hand_analysis_dir(exp: ExperimentLayout) -> Path:
    """A new ``hand/{UTC time}/`` folder under the experiment's reports folder, for one
    hand run: the pipeline's outputs are never replaced by it."""
    return new_hand_folder(exp.reports_dir / "hand")


def _announce(drive: DriveLayout, exp: ExperimentLayout, signal: AnalysisComplete) -> Path:
    """Publish the signal to the pipeline; a hand run's only written to its own folder."""
    if isinstance(exp, HandAnalysisLayout):
        return write_signal(exp.results / f"{signal.kind}.json", signal)
    return publish(drive, signal, exp.analysis_signal)


def _training(drive: DriveLayout, experiment: str) -> TrainingComplete | None:
    try:
        sig = read_signal(drive.experiment(experiment).training_signal, drive).signal
    except BatonError:
        return None
    return sig if isinstance(sig, TrainingComplete) else None


def campaign_members(drive: DriveLayout, campaign: str | None, experiment: str) -> list[str]:
    """The other experiments of the campaign that have metrics, from their training signals."""
    if not campaign:
        return []
    members = []
    for i, sig_path in enumerate(sorted(drive.models.glob("*/.training_complete"))):
        if i >= MAX_CAMPAIGN_SCAN:
            log.warning("campaign scan stopped after %d experiments", MAX_CAMPAIGN_SCAN)
            break
        name = sig_path.parent.name
        if name == experiment:
            continue
        sig = _training(drive, name)
        if sig and sig.campaign == campaign and drive.experiment(name).metrics_dir.is_dir():
            members.append(name)
    return members


def final_checkpoint(m: Metrics, experiment: str, final_step: int | None) -> str:
    names = m.query("SELECT DISTINCT checkpoint FROM m WHERE experiment = ?",
                    [experiment]).column("checkpoint")
    if not names:
        raise BatonError(f"no metrics for {experiment}")
    if "final" in names:
        return "final"
    return max(names, key=lambda c: step_of(c, final_step) or -1)


def analyze(config: Config, experiment: str, compare: list[str] | None = None,
            results: Path | None = None) -> tuple[bool, Path]:
    """Analyse one experiment; returns (succeeded, signal path). ``results``: a folder of
    its own for the outputs and the signal (``analysis_complete.json``, announced to no
    one); None: the experiment's, announced to the pipeline (what the Slurm job does)."""
    start = time.time()
    drive = config.drive
    exp = drive.experiment(experiment)
    if results is not None:
        exp = HandAnalysisLayout(drive, exp.name, results)
    training = _training(drive, experiment)
    campaign = training.campaign if training else None
    tracker = Tracker(config.mlflow.tracking_uri)
    tracker.start(f"baton/{campaign or experiment}", f"analysis {experiment}",
                  parent_run_id=training.mlflow_run_id if training else None,
                  tags={"baton.stage": "analysis", "baton.experiment": experiment})
    try:
        outputs = _analyze(drive, experiment, training,
                           compare if compare is not None else
                           campaign_members(drive, campaign, experiment), tracker, exp)
    except Exception as exc:
        log.exception("analysis of %s failed", experiment)
        tracker.end(ok=False)
        path = _announce(drive, exp, AnalysisComplete(
            timestamp=utcnow(), experiment=experiment, job_id=job_tag(), status="failed",
            error_message=f"{type(exc).__name__}: {exc}"[:60000],
            analysis_duration_seconds=round(time.time() - start, 3),
            mlflow_run_id=tracker.run_id))
        return False, path
    report, manifest, files = outputs
    tracker.artifact(report)
    tracker.end()
    path = _announce(drive, exp, AnalysisComplete(
        timestamp=utcnow(), experiment=experiment, job_id=job_tag(), status="complete",
        report_path=str(report), manifest_path=str(manifest), outputs=[str(f) for f in files],
        analysis_duration_seconds=round(time.time() - start, 3), mlflow_run_id=tracker.run_id))
    return True, path


def _analyze(drive: DriveLayout, experiment: str, training: TrainingComplete | None,
             others: list[str], tracker: Tracker, exp: ExperimentLayout
             ) -> tuple[Path, Path, list[Path]]:
    final_step = training.total_steps if training else None
    m = Metrics(drive, [experiment, *others])
    try:
        final = final_checkpoint(m, experiment, final_step)
        files: list[Path] = []
        images: dict[str, bytes] = {}
        sections: list[tuple[str, str]] = []

        # 1. accuracy per item group at the final checkpoint, with bootstrap CIs
        groups = m.query("SELECT DISTINCT item_group FROM m WHERE experiment = ? AND "
                         "checkpoint = ? AND metric = 'accuracy' ORDER BY 1",
                         [experiment, final]).column("item_group")
        acc_rows = []
        for g in groups:
            values = m.values(experiment, final, g, "accuracy")
            mean, low, high = bootstrap_ci(values)
            acc_rows.append((g, len(values), round(mean, 4), round(low, 4), round(high, 4)))
        acc_cols = ["item_group", "items", "accuracy", "ci_low", "ci_high"]
        files += write_table(exp.tables_dir, "accuracy_by_group", acc_cols, acc_rows)
        tracker.metrics({f"accuracy.{g}": a for g, _, a, _, _ in acc_rows})
        if acc_rows:
            fig, ax = plt.subplots(figsize=(8, 4))
            means = np.array([r[2] for r in acc_rows])
            err = np.array([[r[2] - r[3] for r in acc_rows], [r[4] - r[2] for r in acc_rows]])
            ax.bar(range(len(acc_rows)), means, yerr=err, capsize=4, color="#4c72b0")
            ax.set_xticks(range(len(acc_rows)), [r[0] for r in acc_rows], rotation=20,
                          ha="right")
            ax.axhline(0.5, color="grey", ls="--", lw=1)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("accuracy (95% bootstrap CI)")
            ax.set_title(f"{experiment}: minimal pairs at {final}")
            paths, png = save_figure(fig, exp.figures_dir, "accuracy_by_group")
            files += paths
            images["Accuracy by item group"] = png
        sections.append(("Accuracy by item group", html_table(acc_cols, acc_rows)))

        # 2. learning curves across checkpoints
        curve = m.query("SELECT checkpoint, dataset, metric, avg(value) AS mean, count(*) AS n "
                        "FROM m WHERE experiment = ? GROUP BY 1, 2, 3", [experiment])
        curve_rows = sorted(
            [(c, step_of(c, final_step), d, met, round(v, 5), n) for c, d, met, v, n in
             curve.rows], key=lambda r: (r[2], r[3], r[1] if r[1] is not None else -1))
        # "final" is a copy of the last checkpoint: keep one point per step
        curve_rows = [r for r in curve_rows if not (r[0] == "final" and any(
            o[1] == r[1] and o[0] != "final" for o in curve_rows))]
        curve_cols = ["checkpoint", "step", "dataset", "metric", "mean", "rows"]
        files += write_table(exp.tables_dir, "learning_curve", curve_cols, curve_rows)
        series = sorted({(r[2], r[3]) for r in curve_rows if r[1] is not None})
        if series:
            fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.5),
                                     squeeze=False)
            for ax, (d, met) in zip(axes[0], series, strict=True):
                pts = sorted((r[1], r[4]) for r in curve_rows if (r[2], r[3]) == (d, met)
                             and r[1] is not None)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
                ax.set_xlabel("training step")
                ax.set_title(f"{d} / {met}")
            paths, png = save_figure(fig, exp.figures_dir, "learning_curve")
            files += paths
            images["Learning curves"] = png
        sections.append(("Learning curves", html_table(curve_cols, curve_rows)))

        # 3. the campaign: this experiment next to the others, each at its final checkpoint
        comp = _campaign(m, [experiment, *others], drive)
        comp_cols = ["experiment", *sorted({k for r in comp for k in r} - {"experiment"})]
        comp_rows = [tuple(r.get(c, "") for c in comp_cols) for r in comp]
        files += write_table(exp.tables_dir, "campaign_comparison", comp_cols, comp_rows)
        if len(comp) > 1:
            metric_cols = [c for c in comp_cols if c.startswith("accuracy")]
            fig, ax = plt.subplots(figsize=(9, 4))
            width = 0.8 / max(1, len(comp))
            for i, r in enumerate(comp):
                ax.bar([j + i * width for j in range(len(metric_cols))],
                       [r.get(c, 0) or 0 for c in metric_cols], width, label=r["experiment"])
            ax.set_xticks([j + width * (len(comp) - 1) / 2 for j in range(len(metric_cols))],
                          [c.removeprefix("accuracy ") for c in metric_cols], rotation=20,
                          ha="right")
            ax.set_ylim(0, 1.05)
            ax.legend(fontsize=8)
            ax.set_title("campaign: accuracy by item group")
            paths, png = save_figure(fig, exp.figures_dir, "campaign_comparison")
            files += paths
            images["Campaign comparison"] = png
        sections.append(("Campaign comparison", html_table(comp_cols, comp_rows)))
    finally:
        m.close()

    title = f"baton report: {experiment}" + (f" (campaign {training.campaign})"
                                             if training and training.campaign else "")
    report = atomic_write(exp.reports_dir / "report.html",
                          html_report(title, sections, images).encode())
    files.append(report)
    kinds = {".png": "figure", ".pdf": "figure", ".csv": "table", ".tex": "table",
             ".html": "report"}
    manifest = atomic_write(exp.reports_dir / "manifest.json", json.dumps({
        "experiment": experiment, "created": utcnow().isoformat(), "final_checkpoint": final,
        "outputs": [manifest_entry(f, kinds.get(f.suffix, "other")) for f in files]},
        indent=2).encode())
    return report, manifest, files


def _campaign(m: Metrics, experiments: list[str], drive: DriveLayout) -> list[dict[str, Any]]:
    out = []
    for e in experiments:
        training = _training(drive, e)
        try:
            final = final_checkpoint(m, e, training.total_steps if training else None)
        except BatonError:
            continue
        f: Frame = m.query("SELECT metric, item_group, avg(value) FROM m WHERE experiment = ? "
                           "AND checkpoint = ? GROUP BY 1, 2", [e, final])
        row: dict[str, Any] = {"experiment": e}
        for metric, group, value in f.rows:
            if metric == "accuracy":
                row[f"accuracy {group}"] = round(value, 4)
        ppl = [v for metric, _, v in f.rows if metric == "perplexity"]
        if ppl:
            row["perplexity"] = round(float(np.mean(ppl)), 3)
        out.append(row)
    return out
