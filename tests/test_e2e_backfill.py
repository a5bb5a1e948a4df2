"""From the Dagster API, as the UI does it: a backfill of evaluation_job over 5 partitions
is ONE sbatch array; each partition ends in its true state. Fan-out over checkpoints
joins before evaluation_metrics is recorded. Bad signals are quarantined visibly and do
not stop the others."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from dagster import AssetKey, AssetPartitionStatus, AssetRecordsFilter

from assets.partitions import experiments
from tests.e2e.harness import Pipeline, Webserver

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


def statuses(p: Pipeline, asset: str, names: list[str]) -> dict[str, AssetPartitionStatus]:
    got = p.instance().get_status_by_partition(AssetKey(asset), names, experiments) or {}
    return {k: v for k, v in got.items() if k in names}


def test_backfill_is_one_array_and_partitions_end_true(tmp_path: Path) -> None:
    token = secrets.token_hex(3)
    names = [f"bf{i}-{token}" for i in range(5)]
    failing = names[1::2]  # two of the five fail
    p = Pipeline(tmp_path, "sbatch", {"FAKE_EVAL_FAIL": ",".join(failing)})
    p.config_file.write_text(p.config_file.read_text().replace(
        "sensors:\n", "sensors:\n  auto_evaluate: false\n"))
    p.start()
    web = Webserver(p)
    try:
        for name in names:
            p.train(name)
        p.wait_for("5 models", lambda: all(p.materialized("model", n) for n in names))
        data = web.graphql(LAUNCH, {"params": {
            "partitionNames": names, "assetSelection": [{"path": ["evaluation_job"]}],
            "fromFailure": False}})
        assert data["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", data

        def settled() -> bool:
            s = statuses(p, "evaluation_metrics", names)
            return len(s) == 5 and AssetPartitionStatus.IN_PROGRESS not in s.values()

        p.wait_for("evaluation_metrics of all 5", settled)
        for name in set(names) - set(failing):
            p.wait_for(f"analysis_report of {name}",
                       lambda n=name: p.materialized("analysis_report", n))
    finally:
        web.stop()
        p.stop()
    jobs = p.ledger.jobs(stage="evaluation")
    assert len(jobs) == 5
    assert len({j.array_job_id for j in jobs}) == 1 and jobs[0].array_job_id is not None
    assert len({j.script_path for j in jobs}) == 1  # one rendered script, one sbatch
    assert all(statuses(p, "evaluation_job", names)[n] == AssetPartitionStatus.MATERIALIZED
               for n in names)
    final = statuses(p, "evaluation_metrics", names)
    assert {n for n, s in final.items() if s == AssetPartitionStatus.MATERIALIZED} == \
        set(names) - set(failing)
    assert {n for n, s in final.items() if s == AssetPartitionStatus.FAILED} == set(failing)
    assert not any(p.materialized("analysis_report", n) for n in failing)


def test_fan_out_joins_and_bad_signals_are_quarantined(tmp_path: Path) -> None:
    token = secrets.token_hex(3)
    fan, ok = f"fan-{token}", f"ok-{token}"
    p = Pipeline(tmp_path, "sbatch")
    layout = p.drive.experiment(fan)
    ckpts = []
    for step in (100, 200):
        ckpt = layout.checkpoint(step)
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"\1" * 64)
        ckpts.append(str(ckpt))
    p.start()
    try:
        # hostile and broken signals next to good ones
        bad = p.drive.models / "x; rm -rf ~" / ".training_complete"
        bad.parent.mkdir(parents=True)
        bad.write_text("{}")
        missing = p.drive.experiment(f"nockpt-{token}")
        missing.training_signal.parent.mkdir(parents=True)
        missing.training_signal.write_text(json.dumps({
            "timestamp": "2026-11-21T10:00:00Z", "experiment": f"nockpt-{token}",
            "checkpoint_path": str(missing.final_dir), "hostname": "h", "user": "u"}))
        malformed = p.drive.experiment(f"broken-{token}").training_signal
        malformed.parent.mkdir(parents=True)
        malformed.write_text('{"experiment": ')
        p.train(ok)
        p.train(fan, checkpoints=ckpts)
        for exp in (fan, ok):
            p.wait_for(f"analysis_report of {exp}",
                       lambda e=exp: p.materialized("analysis_report", e))
        p.wait_for("three quarantined signals", lambda: len(p.ledger.quarantined()) >= 3)
    finally:
        p.stop()
    tasks = [j for j in p.ledger.jobs(stage="evaluation") if j.experiment == fan]
    assert len(tasks) == 3 and len({t.array_job_id for t in tasks}) == 1  # one array
    assert all((layout.eval_dir / "tasks" / Path(c).name / ".eval_complete").is_file()
               for c in ckpts)
    metrics = p.instance().fetch_materializations(AssetKey("evaluation_metrics"),
                                                  limit=10).records
    fan_mats = [r for r in metrics if r.partition_key == fan]
    assert len(fan_mats) == 1  # recorded once, after the join
    assert fan_mats[0].asset_materialization.metadata["tasks"].value == 3
    reasons = {Path(q.path).parent.name: q.reason for q in p.ledger.quarantined()}
    assert "not allowed" in reasons["x; rm -rf ~"]
    assert "does not exist" in reasons[f"nockpt-{token}"]
    assert "malformed JSON" in reasons[f"broken-{token}"]
    # visible in Dagster too: an observation (and a failed check) on the model partition
    seen = p.instance().fetch_observations(AssetRecordsFilter(
        asset_key=AssetKey("model"), asset_partitions=[f"nockpt-{token}"]), limit=5).records
    assert any("does not exist" in r.asset_observation.metadata["quarantined"].value
               for r in seen)
