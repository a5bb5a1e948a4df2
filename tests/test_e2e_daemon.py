"""End to end on a real dagster-daemon: a training signal leads, with no other action, to
the analysis report, through real jobs on the local backend and on the real Slurm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.slow
EXPERIMENTS = ["alpha", "beta"]


def run_pipeline(p: Pipeline) -> None:
    p.start()
    try:
        for exp in EXPERIMENTS:
            p.train(exp, campaign="sweep")
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
                                          "analysis_sensor", "slurm_tracker"}


def test_local_backend(tmp_path: Path) -> None:
    run_pipeline(Pipeline(tmp_path, "local"))


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_real_slurm(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, "sbatch")
    run_pipeline(p)
    ids = ",".join(j.job_id for j in p.ledger.jobs())
    out = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations",
                          "--format=JobName,State", f"--jobs={ids}"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert sorted(out) == sorted(f"{prefix}_{e}|COMPLETED" for e in EXPERIMENTS
                                 for prefix in ("eval", "analysis"))
