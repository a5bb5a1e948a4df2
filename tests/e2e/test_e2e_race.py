"""A UI launch racing the sensor, end to end: a real dagster-daemon and dagster-webserver
on the local backend. The moment the training sensor registers an experiment (and, in
the same tick, submits or requests its evaluation), a person materializes `evaluation_job`
for that partition from the UI. Two submit (the sensor's tick itself, or its batch run
with ``sensors.submit_in_tick: false``, and the UI's run); Slurm gets one job."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus, RunsFilter

from assets.partitions import experiments
from tests.e2e.harness import Pipeline, Webserver

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


def materialize_from_ui(web: Webserver, asset: str, partition: str) -> str:
    """What the UI's "Materialize" on one partition of an asset sends."""
    data = web.graphql(LAUNCH, {"params": {
        "selector": {"repositoryLocationName": "baton", "repositoryName": "__repository__",
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": [asset]}]},
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }})
    result = data["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


@pytest.mark.parametrize("in_tick", [True, False], ids=["tick", "run"])
def test_ui_launch_racing_the_sensor_submits_once(tmp_path: Path, in_tick: bool) -> None:
    exp = f"race-{secrets.token_hex(3)}"
    p = Pipeline(tmp_path, "local", sensors_config=f"  submit_in_tick: {str(in_tick).lower()}\n")
    p.start()
    web = Webserver(p)
    try:
        instance = p.instance()
        p.train(exp)
        deadline = time.monotonic() + 120
        while not instance.has_dynamic_partition(experiments.name, exp):
            assert time.monotonic() < deadline, "the training sensor never registered " + exp
            time.sleep(0.05)
        ui_run = materialize_from_ui(web, "evaluation_job", exp)  # the sensor asked too
        p.wait_for(f"analysis_report of {exp}", lambda: p.materialized("analysis_report", exp))
        p.wait_for("the UI's run to end", lambda: instance.get_run_by_id(ui_run).is_finished)
    finally:
        web.stop()
        p.stop()
    # two materialized evaluation_job: the sensor (its tick, or one run for the tick's due
    # evaluations) and the UI's run, both fine
    records = [r for r in instance.get_run_records(RunsFilter(tags={"dagster/partition": exp}))
               if AssetKey("evaluation_job") in (r.dagster_run.asset_selection or set())]
    records += [r for r in instance.get_run_records(RunsFilter(job_name="submit_evaluations"))
                if exp in str(r.dagster_run.run_config)]
    runs = [r.dagster_run for r in records]
    assert sorted(r.job_name for r in runs) == \
        ["__ASSET_JOB"] + ([] if in_tick else ["submit_evaluations"]), runs
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
    mats = [r.asset_materialization for r in instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("evaluation_job"), asset_partitions=[exp]),
        limit=10).records]
    assert len(mats) == 2
    assert sorted(m.metadata["submitted_now"].value for m in mats) == [False, True]
    assert len({m.metadata["slurm_job_ids"].value for m in mats}) == 1  # the same job
    # ... and one submission: one ledger row, one job handed to the backend
    assert [j.stage for j in p.ledger.jobs(experiment=exp)] == ["evaluation", "analysis"]
    submissions = [json.loads(f.read_text()) for f in
                   (p.config.state_dir / "local-slurm" / "submissions").glob("*.json")]
    assert sorted(s["name"] for s in submissions) == sorted([f"eval_{exp}",
                                                            f"analysis_{exp}"])
