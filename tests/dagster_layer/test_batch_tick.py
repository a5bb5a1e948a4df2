"""``sensors.batch`` (the default): what a signal sensor finds due in one tick is one run.
Several training signals at once become one job array for every evaluation task,
submitted by the training sensor's tick (``sensors.submit_in_tick``; off: by one run, as
tested here too); the evaluations that ended become one run that records each partition's
metrics and checks and submits their analyses as one array; the analysis sensor records
each report itself (a report that needs a run: one run for all of them). Every partition
ends in its true state in Dagster, and a batch whose runs all failed is asked again, then
given up per signal. The code location runs in process on the local Slurm backend
(tests/e2e/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, RunRequest, SensorResult

from baton.slurm.states import TERMINAL_STATES
from sensors.once import MAX_RUNS
from tests.e2e.harness import InProcess

pytestmark = pytest.mark.slow

EXPERIMENTS = ["b1", "b2", "b3", "bad"]
IN_RUNS = {"submit_in_tick": "false"}  # the training sensor's submissions made by runs


def requests_of(result: object) -> list[RunRequest]:
    return list(result.run_requests or []) if isinstance(result, SensorResult) else []


def experiments_of(request: RunRequest) -> list[str]:
    [config] = request.run_config["ops"].values()
    return sorted(config["config"]["experiments"])


def materialized(site: InProcess, asset: str) -> set[str]:
    records = site.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset)), limit=1000).records
    return {r.partition_key for r in records if r.partition_key}


def ended(site: InProcess, stage: str, count: int) -> bool:
    site.tick("slurm_tracker")
    jobs = site.ledger.jobs(stage=stage)
    return len(jobs) == count and all(j.state in TERMINAL_STATES for j in jobs)


def test_a_burst_is_one_run_per_stage_and_every_partition_ends_true(tmp_path: Path) -> None:
    with InProcess(tmp_path, extra_env={"FAKE_EVAL_FAIL": "bad"}) as site:
        for exp in EXPERIMENTS:
            site.train(exp, checkpoints=[site.checkpoint(exp, 100)] if exp == "b1" else None)
        # submitted by the tick itself (tests/dagster_layer/test_submit_in_tick.py): no run
        assert requests_of(site.tick("training_sensor")) == []
        assert materialized(site, "evaluation_job") == set(EXPERIMENTS)
        evals = site.ledger.jobs(stage="evaluation")
        assert len(evals) == 5  # b1's two checkpoints, one task each of the others
        assert len({j.array_job_id for j in evals}) == 1 and evals[0].array_job_id
        assert requests_of(site.tick("training_sensor")) == []  # confirmed: asked once

        site.wait_for("the evaluations to end", lambda: ended(site, "evaluation", 5))
        good = set(EXPERIMENTS) - {"bad"}
        record, alone = requests_of(site.tick("evaluation_sensor"))
        assert (record.job_name, experiments_of(record)) == ("record_evaluations", sorted(good))
        # every task of `bad` failed: a run of its own, so its partition ends FAILED
        assert (alone.job_name, alone.partition_key) == ("record_evaluation", "bad")
        assert site.run(record, "evaluation_sensor").success
        assert not site.run(alone, "evaluation_sensor").success
        assert materialized(site, "evaluation_metrics") == good
        for exp in good:
            for check in ("evaluation_succeeded", "schema_valid", "datasets_complete"):
                assert site.check("evaluation_metrics", check, exp).passed, (exp, check)
        failed = site.check("evaluation_metrics", "evaluation_succeeded", "bad")
        assert failed is not None and failed.passed is False
        assert materialized(site, "analysis_job") == good
        analyses = site.ledger.jobs(stage="analysis")
        assert len(analyses) == 3 and len({j.array_job_id for j in analyses}) == 1
        assert requests_of(site.tick("evaluation_sensor")) == []  # the failure is its answer

        site.wait_for("the analyses to end", lambda: ended(site, "analysis", 3))
        # the reports are recorded by the sensor itself (tests/dagster_layer/
        # test_runless_reports.py): no run
        assert requests_of(site.tick("analysis_sensor")) == []
        assert materialized(site, "analysis_report") == good
        for exp in good:
            assert site.check("analysis_report", "report_exists", exp).passed
        assert requests_of(site.tick("analysis_sensor")) == []


def test_a_batch_in_flight_waits_and_a_failed_one_is_asked_again_then_given_up(
        tmp_path: Path) -> None:
    with InProcess(tmp_path, sensors=IN_RUNS) as site:
        site.train("x1")
        [first] = requests_of(site.tick("training_sensor"))
        site.instance.create_run_for_job(  # launched, not started: in flight
            job_def=_job(site, "submit_evaluations"), run_config=first.run_config,
            tags={**first.tags, "dagster/run_key": first.run_key})
        site.train("x2")
        [second] = requests_of(site.tick("training_sensor"))
        assert experiments_of(second) == ["x2"]  # x1's run is in flight: it waits
        for run in site.instance.get_runs():
            site.instance.report_run_failed(run)
        keys = []
        for _ in range(MAX_RUNS + 1):  # both due again: one batch, asked until given up
            requests = requests_of(site.tick("training_sensor"))
            if not requests:
                break
            [request] = requests
            assert experiments_of(request) == ["x1", "x2"]
            keys.append(request.run_key)
            site.instance.report_run_failed(site.instance.create_run_for_job(
                job_def=_job(site, "submit_evaluations"), run_config=request.run_config,
                tags={**request.tags, "dagster/run_key": request.run_key}))
        assert keys == [keys[0]] + [f"{keys[0]}#{n}" for n in range(2, MAX_RUNS + 1)]
        assert requests_of(site.tick("training_sensor")) == []
        signals = [site.ledger.training_run(e).signal_key for e in ("x1", "x2")]
        assert sorted(site.ledger.fact_keys("run_given_up")) == sorted(
            f"run:evaluation_job:{s}" for s in signals)
        assert site.ledger.jobs(stage="evaluation") == []  # none of the runs submitted


def test_one_refused_request_does_not_hold_the_rest_of_the_batch(tmp_path: Path) -> None:
    """A checkpoint gone from the drive (cleaned up after its signal was accepted) refuses
    that experiment's submission: the others of the tick are submitted all the same, the
    run fails naming it, and only its request stays due (asked again, then given up)."""
    import shutil

    with InProcess(tmp_path, sensors=IN_RUNS) as site:
        for exp in ("g1", "g2", "gone"):
            site.train(exp, checkpoints=[site.checkpoint(exp, 100)] if exp == "gone" else None)
        [submit] = requests_of(site.tick("training_sensor"))
        assert experiments_of(submit) == ["g1", "g2", "gone"]
        shutil.rmtree(site.drive.experiment("gone").checkpoint(100))
        result = site.run(submit, "training_sensor")
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert "evaluation of gone refused: checkpoint" in str(failure.step_failure_data.error)
        evals = site.ledger.jobs(stage="evaluation")
        assert sorted(j.experiment for j in evals) == ["g1", "g2"]
        assert materialized(site, "evaluation_job") == {"g1", "g2"}
        [again] = requests_of(site.tick("training_sensor"))
        assert experiments_of(again) == ["gone"]  # g1 and g2 were answered


def _job(site: InProcess, name: str):
    from assets.batches import BATCH_JOBS

    return {j.name: j for j in BATCH_JOBS}[name]


def test_a_batch_that_dies_part_way_leaves_what_it_recorded_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording run that dies after recording some of its analyses (second reports of
    their experiments, which take a run): those stay answered (their events are facts in
    Dagster), and the next tick asks only for the others, so no partition is recorded
    twice."""
    import assets.batches

    with InProcess(tmp_path) as site:
        names = ["r1", "r2", "r3"]
        for exp in names:
            site.train(exp)
        site.tick("training_sensor")  # submits their evaluations
        site.wait_for("the evaluations to end", lambda: ended(site, "evaluation", 3))
        [record] = requests_of(site.tick("evaluation_sensor"))
        assert site.run(record, "evaluation_sensor").success
        site.wait_for("the analyses to end", lambda: ended(site, "analysis", 3))
        for exp in names:  # each had a report before (a retrain's second one takes a run)
            site.ledger.record_fact(f"check:analysis_report:report_exists:{exp}",
                                    "check_reported", exp)
        [report] = requests_of(site.tick("analysis_sensor"))
        assert experiments_of(report) == names

        real = assets.batches.report_of

        def dies_at_r2(exp, *args, **kwargs):  # type: ignore[no-untyped-def]
            if exp == "r2":
                raise RuntimeError("the run's process died here")
            return real(exp, *args, **kwargs)

        monkeypatch.setattr(assets.batches, "report_of", dies_at_r2)
        assert not site.run(report, "analysis_sensor").success
        assert materialized(site, "analysis_report") == {"r1"}
        monkeypatch.setattr(assets.batches, "report_of", real)
        [again] = requests_of(site.tick("analysis_sensor"))
        assert experiments_of(again) == ["r2", "r3"]  # r1 was recorded: not asked again
        assert site.run(again, "analysis_sensor").success
        records = site.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("analysis_report")), limit=100).records
        assert sorted(r.partition_key for r in records) == names  # each recorded once
