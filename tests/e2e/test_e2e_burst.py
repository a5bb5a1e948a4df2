"""A sweep finishes on the real Slurm (issue 15): six training signals land at once and
the daemon turns them into ONE sbatch (an array) for their evaluations, made by the
training sensor's tick itself (no run);
the recordings of the evaluations and analyses are one run per tick that has work, never
a run per experiment. Every partition ends materialized with its checks passed. The
sbatch calls are counted by a wrapper first on the daemon's PATH (the real sbatch runs)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from dagster import RunsFilter

from tests.e2e.harness import Pipeline, latest_check
from tests.e2e.sbatch_killer import install

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

SIGNALS = 6
CHECKS = {"evaluation_metrics": ("evaluation_succeeded", "schema_valid", "datasets_complete"),
          "analysis_report": ("report_exists",)}


def test_a_burst_of_signals_is_one_array_and_few_runs(tmp_path: Path) -> None:
    token = secrets.token_hex(3)
    exps = [f"sweep{i}-{token}" for i in range(SIGNALS)]
    p = Pipeline(tmp_path, "sbatch", install(tmp_path, ""))
    for exp in exps:  # written before the daemon starts: its first tick sees them all
        p.train(exp)
    p.start()
    try:
        for exp in exps:
            p.wait_for(f"analysis_report of {exp}",
                       lambda e=exp: p.materialized("analysis_report", e), timeout=420)
    finally:
        p.stop()
    evals = p.ledger.jobs(stage="evaluation")
    assert sorted(j.experiment for j in evals) == sorted(exps)
    assert len({j.array_job_id for j in evals}) == 1 and evals[0].array_job_id
    analyses = p.ledger.jobs(stage="analysis")
    assert sorted(j.experiment for j in analyses) == sorted(exps)
    arrays = {j.array_job_id or j.job_id for j in analyses}
    calls = (tmp_path / "sbatch-calls.log").read_text().splitlines()
    assert len(calls) == 1 + len(arrays), calls  # one for the evaluations, one per analysis
    runs = [r.dagster_run for r in p.instance().get_run_records(RunsFilter())
            if "dagster/schedule_name" not in r.dagster_run.tags]  # the sensors' runs
    by_job: dict[str, int] = {}
    for run in runs:
        by_job[run.job_name] = by_job.get(run.job_name, 0) + 1
    assert not {"submit_evaluations", "submit_evaluation", "record_evaluation",
                "record_analysis"} & set(by_job), by_job
    # a recording run per tick that had work, never one per experiment (that path: 18 runs)
    assert by_job["record_evaluations"] <= len(arrays), by_job
    assert "record_analyses" not in by_job, by_job  # the analysis sensor records them
    instance = p.instance()
    for exp in exps:
        for asset in ("model", "evaluation_job", "evaluation_metrics", "analysis_job",
                      "analysis_report"):
            assert p.materialized(asset, exp), (asset, exp)
        for asset, checks in CHECKS.items():
            for check in checks:
                found = latest_check(instance, asset, check, exp)
                assert found is not None and found.passed, (exp, asset, check)
