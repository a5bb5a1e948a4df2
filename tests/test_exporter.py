"""The exporter: values from the ledger, one queue snapshot per period, degraded parts,
and an exposition promtool accepts."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.exporter.server import build_registry, queue_fetcher
from baton.ledger import open_ledger
from baton.slurm.sbatch import SbatchBackend
from baton.slurm.states import JobStatus
from tests.conftest import require

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def job(ledger, key: str, stage: str, state: str, **status: object) -> None:
    claim = ledger.claim_submission(key, stage=stage, experiment=key, backend="sbatch",
                                    req_mem_mb=100.0)
    ledger.mark_submitted(claim.row_id, key, submitted_at=T0)
    ledger.apply_statuses({key: JobStatus(job_id=key, state=state, **status)})


def sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        mname, _, mlabels = metric.partition("{")
        got = ",".join(sorted(mlabels.rstrip("}").split(","))) if mlabels else ""
        if mname == name and got == want:
            return float(value)
    raise AssertionError(f"no sample {name}{{{want}}}")


@pytest.fixture
def filled(config: Config):
    ledger = open_ledger(config.ledger_url)
    job(ledger, "1", "evaluation", "COMPLETED", started_at=T0 + timedelta(seconds=30),
        ended_at=T0 + timedelta(seconds=90), cpu_seconds=50.0, max_rss_mb=50.0)
    job(ledger, "2", "evaluation", "FAILED", exit_code=0, exit_signal=9, max_rss_mb=300.0,
        started_at=T0, ended_at=T0 + timedelta(seconds=200), cpu_seconds=1.0)
    job(ledger, "3", "evaluation", "TIMEOUT", started_at=T0, ended_at=T0 + timedelta(
        seconds=300), cpu_seconds=1.0)
    job(ledger, "4", "evaluation", "PENDING", reason="JobHeldUser")
    job(ledger, "5", "analysis", "RUNNING", started_at=T0 + timedelta(seconds=5))
    ledger.heartbeat("training_sensor")
    ledger.record_signal("s1", "training_complete", "/d/x", "quarantined", reason="bad")
    return ledger


def scrape(config: Config, ledger, fetch=None, ttl: float = 60) -> tuple[str, QueueSnapshot]:
    from prometheus_client import CollectorRegistry

    queue = QueueSnapshot(fetch or (lambda: Counter({"PENDING": 7, "RUNNING": 2})), ttl)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(config, ledger, queue))
    return generate_latest(registry).decode(), queue


def test_values_agree_with_the_ledger(config: Config, filled) -> None:
    text, _ = scrape(config, filled)
    assert sample(text, "baton_jobs", stage="evaluation", state="finished") == 1
    assert sample(text, "baton_jobs", stage="evaluation", state="failed") == 2
    assert sample(text, "baton_jobs", stage="evaluation", state="held") == 1
    assert sample(text, "baton_jobs", stage="analysis", state="running") == 1
    assert sample(text, "baton_jobs_failed_total", stage="evaluation",
                  reason="out_of_memory") == 1  # signal 9 with MaxRSS over the request
    assert sample(text, "baton_jobs_failed_total", stage="evaluation", reason="timeout") == 1
    assert sample(text, "baton_stage_consecutive_failures", stage="evaluation") == 2
    assert sample(text, "baton_stage_last_success_timestamp_seconds", stage="evaluation") == \
        (T0 + timedelta(seconds=90)).timestamp()
    assert sample(text, "baton_job_queue_wait_seconds_bucket", stage="evaluation",
                  le="30") == 3
    assert sample(text, "baton_job_cpu_seconds_total", stage="evaluation") == 52
    assert sample(text, "baton_signals_total", kind="training_complete",
                  status="quarantined") == 1
    assert sample(text, "baton_queue_depth") == 7
    assert sample(text, "baton_ledger_integrity_ok") == 1
    assert 0 < sample(text, "baton_shared_drive_free_ratio") < 1
    assert sample(text, "baton_sensor_heartbeat_timestamp_seconds", sensor="training_sensor")


def test_one_queue_snapshot_per_period(config: Config, filled) -> None:
    from prometheus_client import CollectorRegistry

    from baton.slurm.local import LocalBackend

    queue = QueueSnapshot(queue_fetcher(LocalBackend(config.state_dir)), ttl=60)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(config, filled, queue))
    for _ in range(10):
        generate_latest(registry)
    assert queue.calls == 1


def test_failed_slurm_degrades_only_its_part(config: Config, filled,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # squeue cannot be found: a real failure
    text, _ = scrape(config, filled, queue_fetcher(SbatchBackend()))
    assert sample(text, "baton_exporter_component_up", component="slurm") == 0
    assert sample(text, "baton_exporter_component_up", component="ledger") == 1
    assert "baton_queue_depth " not in text
    assert sample(text, "baton_jobs", stage="evaluation", state="finished") == 1


def test_promtool_accepts_the_exposition(config: Config, filled, tmp_path) -> None:
    require(shutil.which("promtool") is not None,
            "promtool is not installed (apt-get install prometheus)")
    registry, _ = build_registry(config)
    text = generate_latest(registry)
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
