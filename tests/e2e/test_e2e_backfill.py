"""From the Dagster API, as the UI does it: a backfill of evaluation_job over 5 partitions
is ONE sbatch array (throttled with %K); each partition ends in its true state, its
checks included. Fan-out over checkpoints joins: evaluation_metrics is recorded only once
every task has ended, never while one still runs. Bad signals are quarantined visibly
(a failed checkpoint check) and do not stop the others."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import pytest
from dagster import AssetKey, AssetPartitionStatus, AssetRecordsFilter, RunsFilter

from assets.partitions import experiments
from tests.e2e.harness import Pipeline, Webserver, latest_check

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
    # the one script holds the array, throttled: at most K tasks run at once
    script = Path(jobs[0].script_path).read_text()
    assert re.search(r"^#SBATCH --array=0-4%\d+$", script, re.MULTILINE), script[:600]
    assert all(statuses(p, "evaluation_job", names)[n] == AssetPartitionStatus.MATERIALIZED
               for n in names)
    final = statuses(p, "evaluation_metrics", names)
    assert {n for n, s in final.items() if s == AssetPartitionStatus.MATERIALIZED} == \
        set(names) - set(failing)
    assert {n for n, s in final.items() if s == AssetPartitionStatus.FAILED} == set(failing)
    assert not any(p.materialized("analysis_report", n) for n in failing)
    # the check says why, per partition: failed where the evaluation failed
    instance = p.instance()
    succeeded = {n: latest_check(instance, "evaluation_metrics", "evaluation_succeeded", n)
                 for n in names}
    assert all(c is not None for c in succeeded.values()), succeeded
    assert {n for n, c in succeeded.items() if not c.passed} == set(failing)


def test_fan_out_joins_and_bad_signals_are_quarantined(tmp_path: Path) -> None:
    token = secrets.token_hex(3)
    fan, ok = f"fan-{token}", f"ok-{token}"
    release = tmp_path / "release-the-held-task"
    # one task of the fan-out (checkpoint-200) runs until the test releases it
    p = Pipeline(tmp_path, "sbatch", {"FAKE_EVAL_HOLD": f"{fan}/checkpoint-200",
                                      "FAKE_EVAL_RELEASE": str(release)})
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

        # two of the three tasks end; the held one runs on
        def two_ended() -> bool:
            tasks = p.ledger.evaluation_tasks(fan)
            return len(tasks) == 3 and [t.status for t in tasks].count("completed") == 2

        p.wait_for(f"two of the three tasks of {fan}", two_ended)
        held = [t for t in p.ledger.evaluation_tasks(fan) if t.status != "completed"]
        assert [Path(t.checkpoint_path).name for t in held] == ["checkpoint-200"]
        # let the evaluation sensor look at the half-finished join for a few ticks (and the
        # daemon launch whatever they asked for)
        seen = time.time()
        p.wait_for("evaluation_sensor ticks", lambda: (
            p.ledger.heartbeats()["evaluation_sensor"].timestamp() > seen + 10))
        assert not p.materialized("evaluation_metrics", fan)
        runs = [r.dagster_run for r in p.instance().get_run_records(RunsFilter())
                if fan in str(r.dagster_run.run_config) or
                r.dagster_run.tags.get("baton/experiment") == fan]
        assert runs == []  # no join run (nor a submitting one: the tick submitted it)
        [still] = [t for t in p.ledger.evaluation_tasks(fan) if t.id == held[0].id]
        assert still.status in ("queued", "running")  # it was held all along
        release.touch()
        for exp in (fan, ok):
            p.wait_for(f"analysis_report of {exp}",
                       lambda e=exp: p.materialized("analysis_report", e))
        p.wait_for("three quarantined signals", lambda: len(p.ledger.quarantined()) >= 3)
    finally:
        release.touch()
        p.stop()
    tasks = [j for j in p.ledger.jobs(stage="evaluation") if j.experiment == fan]
    assert len(tasks) == 3 and len({t.array_job_id for t in tasks}) == 1  # one array
    assert all((layout.eval_dir / "tasks" / Path(c).name / ".eval_complete").is_file()
               for c in ckpts)
    metrics = p.instance().fetch_materializations(AssetKey("evaluation_metrics"),
                                                  limit=10).records
    fan_mats = [r for r in metrics if r.partition_key == fan]
    assert len(fan_mats) == 1  # recorded once, after the join
    recorded = fan_mats[0].asset_materialization.metadata
    assert (recorded["tasks"].value, recorded["failed_tasks"].value) == (3, 0)
    # every task's rows are in: 3 checkpoints x 2 metrics x 8 rows
    assert recorded["rows"].value == 48
    assert recorded["checkpoints"].value == ["checkpoint-100", "checkpoint-200", "final"]
    reasons = {Path(q.path).parent.name: q.reason for q in p.ledger.quarantined()}
    assert "not allowed" in reasons["x; rm -rf ~"]
    assert "does not exist" in reasons[f"nockpt-{token}"]
    assert "malformed JSON" in reasons[f"broken-{token}"]
    # visible in Dagster too: an observation (and a failed check) on the model partition
    seen = p.instance().fetch_observations(AssetRecordsFilter(
        asset_key=AssetKey("model"), asset_partitions=[f"nockpt-{token}"]), limit=5).records
    assert any("does not exist" in r.asset_observation.metadata["quarantined"].value
               for r in seen)
    instance = p.instance()
    nockpt = latest_check(instance, "model", "checkpoint_complete", f"nockpt-{token}")
    assert nockpt is not None and nockpt.passed is False
    assert "does not exist" in nockpt.metadata["quarantined"].value
    for exp in (fan, ok):
        good = latest_check(instance, "model", "checkpoint_complete", exp)
        assert good is not None and good.passed is True, exp
