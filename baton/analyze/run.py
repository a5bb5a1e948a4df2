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

from baton.analyze.data import Metrics, last_checkpoint, step_of
from baton.analyze.outputs import html_report, manifest_entry, write_table
from baton.analyze.provenance import hyperparameters, provenance, varying
from baton.analyze.sections import Member, accuracy_by_group, comparison, learning_curve
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
    return last_checkpoint(names, final_step)


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
        outputs = _analyze(config, experiment, training,
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


def _member(m: Metrics, drive: DriveLayout, name: str) -> Member | None:
    training = _training(drive, name)
    step = training.total_steps if training else None
    try:
        final = final_checkpoint(m, name, step)
    except BatonError:
        return None
    return Member(name, final, step_of(final, step), hyperparameters(training))


def _analyze(config: Config, experiment: str, training: TrainingComplete | None,
             others: list[str], tracker: Tracker, exp: ExperimentLayout
             ) -> tuple[Path, Path, list[Path]]:
    drive = config.drive
    m = Metrics(drive, [experiment, *others])
    try:
        me = _member(m, drive, experiment)
        if me is None:
            raise BatonError(f"no metrics for {experiment}")
        members = [me, *filter(None, (_member(m, drive, o) for o in others))]
        swept = varying({e.name: e.hyper for e in members})
        files: list[Path] = []
        sections = [accuracy_by_group(m, me, exp.figures_dir, files),
                    learning_curve(m, me, exp.figures_dir, files),
                    comparison(m, members, swept, exp.figures_dir, files)]
    finally:
        m.close()
    for s in sections:
        files += write_table(exp.tables_dir, s.name, s.columns, s.rows, s.caption)
    tracker.metrics({f"accuracy.{r[0]}": r[2] for r in sections[0].rows})
    prov = provenance(config, tracker, experiment, training, me.hyper)
    title = f"baton report: {experiment}" + (f" (campaign {prov.campaign})"
                                             if prov.campaign else "")
    report = atomic_write(exp.reports_dir / "report.html",
                          html_report(title, prov.rows(), sections).encode())
    files.append(report)
    kinds = {".png": "figure", ".pdf": "figure", ".csv": "table", ".tex": "table",
             ".html": "report"}
    manifest = atomic_write(exp.reports_dir / "manifest.json", json.dumps({
        "experiment": experiment, "created": prov.created, "final_checkpoint": me.final,
        "final_step": me.final_step, "baton_version": prov.baton_version,
        "git_commit": prov.git_commit, "hyperparameters": me.hyper,
        "swept_hyperparameters": swept, "slurm_job_ids": prov.jobs,
        "outputs": [manifest_entry(f, kinds.get(f.suffix, "other")) for f in files]},
        indent=2).encode())
    return report, manifest, files
