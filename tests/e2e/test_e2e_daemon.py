"""End to end on a real dagster-daemon: a training signal leads, with no other action, to
the analysis report, through real jobs on the local backend and on the real Slurm."""

from __future__ import annotations

import secrets
import signal
import time
from pathlib import Path

import pytest

from baton.jobstatus.report import drive_spool, report
from baton.supervision.policy import RSS_MARGIN
from tests.e2e.harness import Pipeline
from tests.e2e.sbatch_killer import install, tasks_in_slurm

pytestmark = pytest.mark.slow


def run_pipeline(p: Pipeline, kill_midway: bool = False) -> list[str]:
    token = secrets.token_hex(3)
    EXPERIMENTS = [f"alpha-{token}", f"beta-{token}"]  # noqa: N806 - unique names per run
    p.start()
    try:
        assert report("nightly", f"fetch-{token}", "running", 40, "from a script",
                      drive=p.drive.root)
        for exp in EXPERIMENTS:
            p.train(exp, campaign="sweep")
        if kill_midway:
            p.wait_for("both evaluations submitted", lambda: len(
                [j for j in p.ledger.jobs(stage="evaluation") if j.job_id]) == 2)
            p.kill(signal.SIGKILL, group=False)
            time.sleep(3)
            p.start()
        for exp in EXPERIMENTS:
            p.wait_for(f"analysis_report of {exp}",
                       lambda e=exp: p.materialized("analysis_report", e))
        p.wait_for("campaign_report of sweep", lambda: p.materialized("campaign_report", "sweep"))
    finally:
        p.stop()
    for exp in EXPERIMENTS:
        for asset in ("model", "evaluation_job", "evaluation_metrics", "analysis_job"):
            assert p.materialized(asset, exp), (asset, exp)
        assert (p.drive.experiment(exp).reports_dir / "report.html").is_file()
    jobs = p.ledger.jobs()
    assert sorted((j.experiment, j.stage) for j in jobs) == sorted(
        (e, s) for e in EXPERIMENTS for s in ("evaluation", "analysis"))
    assert all(j.state == "COMPLETED" for j in jobs), [(j.job_id, j.state) for j in jobs]
    assert set(p.ledger.heartbeats()) >= {"training_sensor", "evaluation_sensor",
                                          "analysis_sensor", "slurm_tracker", "status_reports"}
    # the status report was ingested by the daemon's sensor, once; the campaign registered
    # itself from the training signals, inactive until a curator activates it
    assert [(r.project, r.job, r.status, r.progress) for r in p.ledger.last_reports()] == [
        ("nightly", f"fetch-{token}", "running", 40.0)]
    assert not list(drive_spool(p.drive.root).glob("*.json"))
    assert [(c.tag, c.type, c.active) for c in p.ledger.list_campaigns()] == [
        ("sweep", "default", False)]
    return EXPERIMENTS


def test_local_backend(tmp_path: Path) -> None:
    run_pipeline(Pipeline(tmp_path, "local"))


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
@pytest.mark.parametrize("kill_midway", [False, True], ids=["steady", "daemon-sigkilled"])
def test_real_slurm(tmp_path: Path, kill_midway: bool) -> None:
    p = Pipeline(tmp_path, "sbatch", install(tmp_path, ""))  # sbatch's tokens logged
    run_pipeline(p, kill_midway)
    # every job or array task Slurm ran for this pipeline's sbatch calls (a batch is one
    # array across experiments): one per ledger row, each completed
    ran = tasks_in_slurm(tmp_path, since="now-1hour")
    assert sorted(job_id for _, job_id, _, _ in ran) == sorted(
        str(j.job_id) for j in p.ledger.jobs()), ran
    assert {state for *_, state in ran} == {"COMPLETED"}, ran


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_over_memory_evaluation_is_repaired_by_the_daemon(tmp_path: Path) -> None:
    """The supervisor sensor in the real daemon: an evaluation killed over its memory is
    resubmitted with twice the memory, and the pipeline goes on to the report."""
    exp = f"hog-{secrets.token_hex(3)}"
    p = Pipeline(tmp_path, "sbatch", {"FAKE_EVAL_HOG": exp})
    p.start()
    try:
        p.train(exp)
        p.wait_for(f"analysis_report of {exp}", lambda: p.materialized("analysis_report", exp))
    finally:
        p.stop()
    evals = p.ledger.jobs(experiment=exp, stage="evaluation")
    assert [(j.attempt, j.state) for j in evals] == [(1, "FAILED"), (2, "COMPLETED")], \
        [j._asdict() for j in evals]
    # the retry asks twice the memory, or what the measured MaxRSS needs (x 1.25), whole MB
    first, retry = evals
    assert first.req_mem_mb == 200 and first.max_rss_mb is not None, first._asdict()
    wanted = max(400, first.max_rss_mb * RSS_MARGIN)
    assert wanted <= retry.req_mem_mb < wanted + 1, (retry.req_mem_mb, first.max_rss_mb)

    [sup] = p.ledger.list_supervisions(experiment=exp)
    assert (sup.reason, sup.action, sup.repair_job_id, sup.execution_status) == (
        "oom", "resubmit", evals[1].job_id, "completed")
    from dagster import AssetKey, AssetRecordsFilter

    records = p.instance().fetch_materializations(AssetRecordsFilter(
        asset_key=AssetKey("evaluation_job"), asset_partitions=[exp]), limit=5).records
    attempts = sorted(r.asset_materialization.metadata.get("attempt").value
                      for r in records if "attempt" in r.asset_materialization.metadata)
    assert attempts == [2] and len(records) == 2  # the first submission, then the repair
    assert "supervisor" in p.ledger.heartbeats()
