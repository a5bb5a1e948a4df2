"""Supervision on the real single-node Slurm, driven through the Dagster sensors
(``slurm_tracker`` and ``supervisor``, evaluated with Dagster's public API against an
instance): an evaluation over its memory is resubmitted with more and succeeds; one that
fails every attempt stops at ``max_attempts`` with a clear record and a firing alert; a
late job is cancelled. The three run side by side, so their waits overlap."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from baton.cli import main as baton_main
from baton.config import Config, load_config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import evaluation_jobs
from baton.pipeline.submission import submit_jobs
from baton.slurm.sbatch import SbatchBackend
from baton.units import format_memory
from tests.conftest import require
from tests.exporter.test_exporter import sample

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass
class World:
    config: Config
    ledger: Ledger
    instance: Any
    jobs: dict[str, int]  # scenario -> ledger row of its first attempt
    names: dict[str, str]  # scenario -> experiment
    config_file: Path

    def chain(self, scenario: str) -> list[Any]:
        """Supervisions of a scenario, oldest first."""
        return sorted(self.ledger.list_supervisions(experiment=self.names[scenario]),
                      key=lambda r: r.id)

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = baton_main(["--config", str(self.config_file), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err


def _write_config(tmp: Path) -> Path:
    policy = {"max_attempts": 2, "mem_factor": 2.0, "mem_cap": "1G", "resubmit_failed": True,
              "late_running_factor": 2, "late_action": "cancel"}
    doc = {"shared_drive": str(tmp / "drive"), "state_dir": str(tmp / "state"),
           "slurm": {"backend": "sbatch", "retry_base_seconds": 0.5},
           "sensors": {"interval_seconds": 1},
           "stages": {"evaluation": {
               "time": "00:05:00", "mem": "100M", "cpus": 1, "expected_seconds": 10,
               "command": f"{sys.executable} {HERE / 'supervised_job.py'}",
               "supervision": policy}}}
    path = tmp / "baton.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _settled(w: World) -> bool:
    hog, fail, slow = w.chain("hog"), w.chain("fail"), w.chain("slow")
    return (bool(hog) and hog[0].execution_status == "completed"
            and any(r.action == "gave_up" for r in fail)
            and bool(slow) and slow[0].execution_status == "cancelled")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from dagster import DagsterInstance, build_sensor_context

    tmp = tmp_path_factory.mktemp("supervise")
    config_file = _write_config(tmp)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
                    "BATON_SLURM_BACKEND"):
            mp.delenv(var, raising=False)
        mp.setenv("BATON_CONFIG", str(config_file))
        import resources
        from sensors.supervision_sensor import build_supervisor
        from sensors.tracker import build_tracker

        config = load_config(config_file)
        slurm_tracker, supervisor = build_tracker(config), build_supervisor(config)
        config.drive.create()
        ledger = open_ledger(config.ledger_url, init=True)
        instance = DagsterInstance.ephemeral()
        token = secrets.token_hex(3)
        names = {s: f"{s}-{token}" for s in ("hog", "fail", "slow")}
        instance.add_dynamic_partitions("experiments", list(names.values()))
        backend = SbatchBackend(base_delay=0.5)
        jobs = {}
        for scenario, exp in names.items():
            ckpt = str(config.drive.experiment(exp).final_dir)
            Path(ckpt).mkdir(parents=True)  # submissions refuse a missing checkpoint
            out = submit_jobs(config, ledger, backend, "evaluation", [(exp, ckpt)])[0]
            ledger.record_evaluation_task(experiment=exp, trigger_key=f"sig-{exp}",
                                          checkpoint=ckpt, slurm_row=out.row_id, job_id=out.job_id)
            jobs[scenario] = out.row_id
        res = {"slurm": resources.SlurmResource(settings=config, backend="sbatch"),
               "ledger": resources.LedgerResource(settings=config, url=config.ledger_url)}
        w = World(config, ledger, instance, jobs, names, config_file)
        deadline = time.monotonic() + 300
        while not _settled(w):  # what the daemon does: both sensors, once a second
            assert time.monotonic() < deadline, [r._asdict() for r in ledger.list_supervisions()]
            for sensor in (slurm_tracker, supervisor):
                with build_sensor_context(instance=instance, resources=res) as ctx:
                    result = sensor(ctx)
                for event in getattr(result, "asset_events", None) or []:
                    instance.report_runless_asset_event(event)  # as the daemon would
            time.sleep(1)
        yield w
        unfinished = [r.job_id for r in ledger.unfinished_jobs(settle_seconds=0)]
        if unfinished:
            backend.cancel(unfinished)


def test_over_memory_is_resubmitted_with_more_and_succeeds(world: World) -> None:
    first = world.ledger.job(world.jobs["hog"])
    assert first.state in ("FAILED", "OUT_OF_MEMORY"), first._asdict()
    assert first.req_mem_mb == 100 and first.attempt == 1
    sup = world.chain("hog")[0]
    assert (sup.reason, sup.action, sup.dispatch_status, sup.execution_status) == \
        ("oom", "resubmit", "dispatched", "completed")
    # sized by what it used: the larger of 2 x 100M and its MaxRSS x 1.25
    assert first.max_rss_mb and sup.new_mem_mb == pytest.approx(
        max(200, first.max_rss_mb * 1.25)) and sup.finished_at is not None
    asked = format_memory(sup.new_mem_mb)
    assert f"#SBATCH --mem={asked}" in sup.script and "hog-" in sup.script
    repair = world.ledger.job(sup.repair_row)
    assert (repair.state, repair.attempt, repair.parent_id) == ("COMPLETED", 2, first.id)
    assert format_memory(repair.req_mem_mb) == asked
    assert repair.job_id == sup.repair_job_id
    assert len(world.chain("hog")) == 1  # the success is not supervised
    with world.ledger.read() as conn:
        tasks = conn.execute(evaluation_jobs.select().where(
            evaluation_jobs.c.experiment_name == world.names["hog"]).order_by(
            evaluation_jobs.c.id)).all()
    assert [t.trigger_key for t in tasks] == [f"sig-{world.names['hog']}",
                                              f"sig-{world.names['hog']}#attempt-2"]
    assert tasks[1].slurm_job_row == repair.id


def test_the_repair_is_a_new_attempt_of_the_job_asset(world: World) -> None:
    from dagster import AssetKey, AssetRecordsFilter

    sup = world.chain("hog")[0]
    records = world.instance.fetch_materializations(AssetRecordsFilter(
        asset_key=AssetKey("evaluation_job"), asset_partitions=[world.names["hog"]]),
        limit=5).records
    assert len(records) == 1  # emitted once, then confirmed as a fact
    meta = records[0].asset_materialization.metadata
    assert meta["attempt"].value == 2 and meta["supervision_id"].value == sup.id
    assert meta["slurm_job_ids"].value == sup.repair_job_id
    assert meta["mem"].value == format_memory(sup.new_mem_mb)
    assert world.ledger.has_fact(f"supervision:{sup.id}")


def test_failing_every_attempt_gives_up_with_a_clear_record(world: World) -> None:
    chain = world.chain("fail")
    assert [(r.reason, r.action, r.attempt) for r in chain] == \
        [("failed", "resubmit", 1), ("failed", "gave_up", 2)]
    retried, gave_up = chain
    assert retried.execution_status == "failed"
    assert gave_up.job_row == retried.repair_row and gave_up.execution_status == "open"
    assert gave_up.dispatch_status == "not_needed" and gave_up.repair_row is None
    assert gave_up.note == "failed (exit 3:0) on attempt 2 of 2: giving up " \
        "(supervision.max_attempts)"
    rows = world.ledger.jobs(experiment=world.names["fail"])
    assert [(r.attempt, r.state, r.exit_code) for r in rows] == [(1, "FAILED", 3),
                                                                  (2, "FAILED", 3)]


def _scrape(world: World) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(world.config, world.ledger, QueueSnapshot(Counter)))
    return generate_latest(registry).decode()


def test_give_up_is_reported_and_fires_the_alert(world: World, tmp_path: Path) -> None:
    text = _scrape(world)
    value = sample(text, "baton_supervision_gave_up_open", stage="evaluation")
    assert value == 1
    assert sample(text, "baton_supervisions_total", stage="evaluation", reason="failed",
                  action="gave_up") == 1
    assert sample(text, "baton_supervisions_total", stage="evaluation", reason="oom",
                  action="resubmit") == 1
    assert sample(text, "baton_supervisions_total", stage="analysis", reason="oom",
                  action="resubmit") == 0  # from zero, so that increase() sees the first
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool is not installed (apt-get install prometheus)")
    # the scraped value, fed to the real alert rules
    case = {"rule_files": [str(ROOT / "prometheus" / "alerts.yml")],
            "evaluation_interval": "1m", "tests": [{
                "interval": "1m",
                "input_series": [{"series": 'baton_supervision_gave_up_open{stage="evaluation"}',
                                  "values": f"{value:g}x3"}],
                "alert_rule_test": [{"eval_time": "1m", "alertname": "BatonSupervisionGaveUp",
                                     "exp_alerts": [{"exp_labels": {
                                         "severity": "critical", "stage": "evaluation"},
                                         "exp_annotations": {"summary": (
                                             "1 evaluation job(s) failed every attempt their "
                                             "supervision policy allows: see `baton supervise "
                                             "list --open`, then retry or cancel")}}]}]}]}
    path = tmp_path / "gave_up_test.yml"
    path.write_text(yaml.safe_dump(case))
    proc = subprocess.run([str(promtool), "test", "rules", str(path)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_late_job_is_cancelled(world: World) -> None:
    sup = world.chain("slow")[0]
    job = world.ledger.job(world.jobs["slow"])
    assert (sup.reason, sup.action, sup.dispatch_status, sup.execution_status) == \
        ("late_running", "cancel", "dispatched", "cancelled")
    assert sup.script == f"scancel {job.job_id}" and "late_running_factor" in sup.note
    assert job.state == "CANCELLED" and sup.finished_at is not None
    assert len(world.chain("slow")) == 1  # a cancelled job is not repaired


def test_cli_list_show_cancel_retry(world: World, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    code, out, _ = world.cli(capsys, "supervise", "list", "--experiment", world.names["hog"])
    assert code == 0 and "oom" in out and "resubmit" in out and "completed" in out
    hog = world.chain("hog")[0]
    code, out, _ = world.cli(capsys, "supervise", "show", str(hog.id))
    assert code == 0 and f"repair job:    {hog.repair_job_id}" in out
    asked = format_memory(hog.new_mem_mb)
    assert f"new resources: {asked} 00:05:00" in out and f"#SBATCH --mem={asked}" in out
    gave_up = world.chain("fail")[-1]
    code, out, _ = world.cli(capsys, "supervise", "list", "--open")
    assert f"{gave_up.job_id:<9}" in out and "gave_up" in out
    code, out, _ = world.cli(capsys, "supervise", "cancel", str(gave_up.id))
    assert code == 0 and out.startswith(f"supervision {gave_up.id} dismissed")
    assert sample(_scrape(world), "baton_supervision_gave_up_open", stage="evaluation") == 0
    code, out, err = world.cli(capsys, "supervise", "cancel", str(hog.id))
    assert code == 1 and "nothing to cancel" in err and "COMPLETED" in err
    code, out, _ = world.cli(capsys, "supervise", "retry", str(gave_up.id), "--mem", "300M")
    assert code == 0, out
    manual = world.chain("fail")[-1]
    assert (manual.reason, manual.action, manual.dispatch_status, manual.attempt) == \
        ("manual", "resubmit", "dispatched", 2)
    assert out == f"supervision {manual.id}: job {gave_up.job_id} resubmitted as job " \
        f"{manual.repair_job_id} (attempt 3, 300M 00:05:00)\n"
    assert world.ledger.job(manual.repair_row).req_mem_mb == 300
    code, _, err = world.cli(capsys, "supervise", "retry", str(gave_up.id))
    assert code == 1 and f"already retried as supervision {manual.id}" in err
