"""The asset checks as Dagster records them: each check passes on good data and fails, with
its reason, on the problem it is there to catch. The code location runs in process (the
sensors through ``build_sensor_context``, the runs through ``materialize``) against a
temporary Dagster instance, with the real resources on a temporary drive, a SQLite
ledger and the local Slurm backend running the evaluation and analysis jobs."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    RunRequest,
    SensorResult,
)

from assets.checks import checkpoint_complete
from baton.analyze.summary import summarize
from tests.e2e.harness import InProcess, per_signal

pytestmark = pytest.mark.slow

# the code location's sensors, by name: InProcess builds them from its baton.yaml
training_sensor, evaluation_sensor, analysis_sensor, slurm_tracker = (
    "training_sensor", "evaluation_sensor", "analysis_sensor", "slurm_tracker")


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    """The code location in process, configured by the test (``InProcess``'s arguments)."""
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(InProcess(tmp_path, **per_signal(kwargs)))


@pytest.fixture
def site(make_site: Callable[..., InProcess]) -> InProcess:
    return make_site()


def requests_of(result: object) -> list[RunRequest]:
    return list(result.run_requests or []) if isinstance(result, SensorResult) else []


def submit(site: InProcess, *experiments: str) -> None:
    """The training sensor sees the signals; the runs it requests submit the evaluations."""
    result = site.tick(training_sensor)
    reqs = requests_of(result)
    assert sorted(r.partition_key for r in reqs) == sorted(experiments), result
    for req in reqs:
        assert site.run(req, training_sensor).success


def join(site: InProcess, experiment: str) -> RunRequest:
    """Tick the evaluation sensor (and the Slurm tracker) until every task of the
    experiment's evaluation has ended and the sensor asks for the join's run."""
    found: list[RunRequest] = []

    def ready() -> bool:
        found.extend(r for r in requests_of(site.tick(evaluation_sensor))
                     if r.partition_key == experiment)
        return bool(found)

    site.wait_for(f"the evaluation of {experiment} to end", ready,
                  between=lambda: site.tick(slurm_tracker))
    return found[0]


def checks_of(run: object, asset: str) -> dict[str, AssetCheckEvaluation]:
    return {c.check_name: c for c in run.get_asset_check_evaluations()  # type: ignore[attr-defined]
            if c.asset_key == AssetKey(asset)}


def materialized(run: object, asset: str) -> list[AssetMaterialization]:
    events = run.get_asset_materialization_events()  # type: ignore[attr-defined]
    return [e.materialization for e in events if e.asset_key == AssetKey(asset)]


def meta(evaluation: AssetCheckEvaluation, key: str) -> object:
    value = evaluation.metadata[key]
    return getattr(value, "value", value)


# --- evaluation_metrics ---------------------------------------------------------------------
def test_a_failed_task_fails_evaluation_succeeded_and_keeps_what_succeeded(
        make_site: Callable[..., InProcess]) -> None:
    site = make_site(extra_env={"FAKE_EVAL_FAIL": "mixed/checkpoint-100"})
    failing = site.checkpoint("mixed", 100)
    site.train("mixed", checkpoints=[failing])  # two tasks: final and checkpoint-100
    submit(site, "mixed")
    run = site.run(join(site, "mixed"), evaluation_sensor)
    assert run.success
    [mat] = materialized(run, "evaluation_metrics")
    assert mat.partition == "mixed"
    assert (mat.metadata["tasks"].value, mat.metadata["failed_tasks"].value) == (2, 1)
    checks = checks_of(run, "evaluation_metrics")
    assert checks["evaluation_succeeded"].passed is False
    assert meta(checks["evaluation_succeeded"], "failed_tasks") == {
        failing: "dataset toy: simulated failure"}
    assert checks["schema_valid"].passed and checks["datasets_complete"].passed
    # what Dagster stored for the partition
    stored = site.check("evaluation_metrics", "evaluation_succeeded", "mixed")
    assert stored is not None and stored.passed is False
    assert "simulated failure" in str(meta(stored, "failed_tasks"))
    # the succeeded task's Parquet is kept; the failed one wrote none
    summary = summarize(site.drive.experiment("mixed"))
    assert summary.checkpoints == ["final"] and summary.rows == 16 and summary.files == 2
    assert all(Path(p).is_file() for p in
               (site.drive.experiment("mixed").metrics_dir / "dataset=toy").rglob("*.parquet"))


def test_an_evaluation_that_produced_nothing_fails_and_says_why(
        make_site: Callable[..., InProcess]) -> None:
    site = make_site(extra_env={"FAKE_EVAL_FAIL": "nothing"})
    site.train("nothing")
    submit(site, "nothing")
    run = site.run(join(site, "nothing"), evaluation_sensor)
    assert not run.success  # no materialization of metrics that do not exist
    assert materialized(run, "evaluation_metrics") == []
    assert materialized(run, "analysis_job") == []
    stored = site.check("evaluation_metrics", "evaluation_succeeded", "nothing")
    assert stored is not None and stored.passed is False
    assert "simulated failure" in str(meta(stored, "failed_tasks"))
    # the run failed on purpose, having recorded what it found: it is not asked again (a
    # run that died before its step ended would be: tests/dagster_layer/test_request_again)
    assert requests_of(site.tick(evaluation_sensor)) == []


def test_a_wrong_schema_parquet_fails_schema_valid(site: InProcess) -> None:
    site.train("rogue")
    submit(site, "rogue")
    request = join(site, "rogue")
    # a file someone else dropped among the metrics, with its own idea of the columns
    folder = site.drive.experiment("rogue").metrics_dir / "dataset=toy" / "metric=accuracy"
    pq.write_table(pa.table({"experiment": ["rogue"], "value": ["high"]}),
                   folder / "part-rogue.parquet")
    run = site.run(request, evaluation_sensor)
    checks = checks_of(run, "evaluation_metrics")
    assert checks["schema_valid"].passed is False
    problems = meta(checks["schema_valid"], "problems")
    assert list(problems) == ["dataset=toy/metric=accuracy/part-rogue.parquet"]
    assert "column 'value' is string, expected double" in problems[
        "dataset=toy/metric=accuracy/part-rogue.parquet"]
    assert checks["evaluation_succeeded"].passed and checks["datasets_complete"].passed
    stored = site.check("evaluation_metrics", "schema_valid", "rogue")
    assert stored is not None and stored.passed is False


def test_a_missing_configured_dataset_fails_datasets_complete(
        make_site: Callable[..., InProcess]) -> None:
    site = make_site(datasets=["toy", "squad"])
    site.train("partial")
    submit(site, "partial")
    run = site.run(join(site, "partial"), evaluation_sensor)
    checks = checks_of(run, "evaluation_metrics")
    assert checks["datasets_complete"].passed is False
    assert meta(checks["datasets_complete"], "missing") == ["squad"]
    assert meta(checks["datasets_complete"], "datasets") == ["toy"]
    assert checks["evaluation_succeeded"].passed and checks["schema_valid"].passed
    stored = site.check("evaluation_metrics", "datasets_complete", "partial")
    assert stored is not None and stored.passed is False


# --- analysis_report -------------------------------------------------------------------------
def test_a_missing_report_fails_report_exists(site: InProcess) -> None:
    for exp in ("kept", "lost"):
        site.train(exp)
    submit(site, "kept", "lost")
    for exp in ("kept", "lost"):
        run = site.run(join(site, exp), evaluation_sensor)
        assert run.success and materialized(run, "analysis_job")
    wanted: dict[str, RunRequest] = {}

    def analysed() -> bool:
        for r in requests_of(site.tick(analysis_sensor)):
            if r.job_name == "record_analysis":
                wanted[r.partition_key] = r
        return set(wanted) == {"kept", "lost"}

    site.wait_for("both analyses", analysed, between=lambda: site.tick(slurm_tracker))
    report = site.drive.experiment("lost").reports_dir / "report.html"
    assert report.is_file()
    report.unlink()  # announced, then lost
    kept = site.run(wanted["kept"], analysis_sensor)
    assert kept.success and materialized(kept, "analysis_report")
    assert checks_of(kept, "analysis_report")["report_exists"].passed
    lost = site.run(wanted["lost"], analysis_sensor)
    assert not lost.success and materialized(lost, "analysis_report") == []
    check = checks_of(lost, "analysis_report")["report_exists"]
    assert check.passed is False and meta(check, "missing") == [str(report)]
    assert site.check("analysis_report", "report_exists", "lost").passed is False
    assert site.check("analysis_report", "report_exists", "kept").passed is True


# --- model -----------------------------------------------------------------------------------
def test_checkpoint_complete_passes_for_a_good_model_and_fails_without_its_checkpoint(
        site: InProcess) -> None:
    site.train("good")
    missing = site.drive.experiment("nockpt")
    site.train("nockpt")
    shutil.rmtree(missing.final_dir)  # the signal names a checkpoint that is not there
    result = site.tick(training_sensor)
    assert [r.partition_key for r in requests_of(result)] == ["good"]
    assert sorted(site.instance.get_dynamic_partitions("experiments")) == ["good", "nockpt"]
    # reported by the sensor
    good = site.check("model", "checkpoint_complete", "good")
    assert good is not None and good.passed is True
    bad = site.check("model", "checkpoint_complete", "nockpt")
    assert bad is not None and bad.passed is False
    assert f"checkpoint {missing.final_dir} does not exist" in str(meta(bad, "quarantined"))
    # and the same check run on demand (from the UI) says the same
    for exp, ok in (("good", True), ("nockpt", False)):
        run = site.materialize_checks([checkpoint_complete], exp)
        [evaluation] = run.get_asset_check_evaluations()
        assert evaluation.passed is ok, exp
    # a checkpoint damaged after the fact is caught by the next run of the check
    (site.drive.experiment("good").final_dir / "model.safetensors").write_bytes(b"")
    run = site.materialize_checks([checkpoint_complete], "good")
    [evaluation] = run.get_asset_check_evaluations()
    assert evaluation.passed is False and "is empty" in str(meta(evaluation, "problem"))
    assert site.check("model", "checkpoint_complete", "good").passed is False
