"""``analysis_report`` recorded by the analysis sensor's own tick, without a run (issue 15):
the common report costs no Dagster run; its request is confirmed only once Dagster holds
its events, so events a dying daemon never stored are recorded again, by a run. The code
location runs in process on the local backend (tests/e2e/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, SensorResult

from tests.dagster_layer.test_batch_tick import ended, experiments_of, materialized, requests_of
from tests.e2e.harness import InProcess

pytestmark = pytest.mark.slow

NAMES = ["q1", "q2"]


def analysed(site: InProcess) -> None:
    """Train, evaluate and analyse NAMES through the batch runs, up to the analyses ended."""
    for exp in NAMES:
        site.train(exp)
    site.tick("training_sensor")  # submits their evaluations itself
    site.wait_for("the evaluations to end", lambda: ended(site, "evaluation", len(NAMES)))
    [record] = requests_of(site.tick("evaluation_sensor"))
    assert site.run(record, "evaluation_sensor").success
    site.wait_for("the analyses to end", lambda: ended(site, "analysis", len(NAMES)))


def confirmed(site: InProcess) -> set[str]:
    keys = set(site.ledger.fact_keys("run_requested"))
    return {exp for exp in NAMES if f"run:analysis_report:"
            f"{site.ledger.current_analysis(exp).trigger_key}" in keys}


def test_reports_are_recorded_by_the_tick_and_confirmed_once_stored(tmp_path: Path) -> None:
    with InProcess(tmp_path) as site:
        analysed(site)
        runs_before = len(site.instance.get_runs())
        result = site.tick("analysis_sensor")
        assert isinstance(result, SensorResult) and requests_of(result) == []
        kinds = sorted(type(e).__name__ for e in result.asset_events)
        assert kinds == ["AssetCheckEvaluation"] * 2 + ["AssetMaterialization"] * 2
        assert confirmed(site) == set()  # emitted, not yet known to be stored
        assert materialized(site, "analysis_report") == set(NAMES)
        for exp in NAMES:
            assert site.check("analysis_report", "report_exists", exp).passed
        again = site.tick("analysis_sensor")  # finds them stored: confirmed, nothing more
        assert requests_of(again) == [] and not getattr(again, "asset_events", None)
        assert confirmed(site) == set(NAMES)
        assert len(site.instance.get_runs()) == runs_before  # no run at all


def test_events_a_dying_daemon_never_stored_are_recorded_by_a_run(tmp_path: Path) -> None:
    with InProcess(tmp_path) as site:
        analysed(site)
        lost = site.tick("analysis_sensor", apply=False)  # the daemon died before storing
        assert len(lost.asset_events) == 4 and materialized(site, "analysis_report") == set()
        [request] = requests_of(site.tick("analysis_sensor"))  # their checks were spent
        assert (request.job_name, experiments_of(request)) == ("record_analyses", NAMES)
        assert site.run(request, "analysis_sensor").success
        records = site.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("analysis_report")), limit=10).records
        assert sorted(r.partition_key for r in records) == NAMES  # each once
        assert confirmed(site) == set(NAMES)
        assert requests_of(site.tick("analysis_sensor")) == []
