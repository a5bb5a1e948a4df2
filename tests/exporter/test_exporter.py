"""The exporter: values from the ledger (SQLite and PostgreSQL), one queue snapshot per
period, degraded parts, counters that never go down, and an exposition promtool accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import insert
from sqlalchemy import text as sql

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.exporter.flows import FlowTally
from baton.exporter.server import build_registry
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import analysis_jobs, evaluation_jobs, training_runs
from baton.slurm.sbatch import SbatchBackend
from baton.slurm.states import JobStatus
from tests.conftest import DATA, require

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def job(ledger: Ledger, key: str, stage: str, state: str, *, submit: bool = True,
        submitted_at: datetime = T0, **status: object) -> None:
    claim = ledger.claim_submission(key, stage=stage, experiment=key, backend="sbatch",
                                    req_mem_mb=100.0)
    if submit:
        ledger.mark_submitted(claim.row_id, key, submitted_at=submitted_at)
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


def flows(ledger: Ledger) -> None:
    """Four trained models: A evaluated (two checkpoints) and analysed; B still evaluating;
    C's evaluation failed; D's failed task was repaired (``#attempt-2``) and analysed."""
    runs = {"A": ("sig-A", T0), "B": ("sig-B", T0 + timedelta(seconds=10)),
            "C": ("sig-C", T0 - HOUR), "D": ("sig-D", T0)}
    s = timedelta(seconds=1)
    evals = [  # trigger, checkpoint, status, submitted, completed
        ("sig-A", "a1", "completed", T0 + 5 * s, T0 + 100 * s),
        ("sig-A", "a2", "completed", T0 + 6 * s, T0 + 130 * s),
        ("sig-B", "b1", "running", T0 + 20 * s, None),
        ("sig-C", "c1", "failed", T0 - HOUR + 5 * s, T0 - HOUR + 50 * s),
        ("sig-D", "d1", "failed", T0 + 5 * s, T0 + 60 * s),
        ("sig-D#attempt-2", "d1", "completed", T0 + 70 * s, T0 + 600 * s),
    ]
    analyses = [("sig-A", "completed", T0 + 400 * s), ("sig-D", "failed", T0 + 650 * s),
                ("sig-D#attempt-2", "completed", T0 + 700 * s)]
    with ledger.write() as conn:
        for exp, (key, done) in runs.items():
            conn.execute(insert(training_runs).values(
                experiment_name=f"flow-{exp}", status="completed", completed_at=done,
                signal_key=key))
        for key, ckpt, status, sub, done in evals:
            conn.execute(insert(evaluation_jobs).values(
                experiment_name=f"flow-{key[4]}", status=status, trigger_key=key,
                checkpoint_path=ckpt, submitted_at=sub, completed_at=done))
        for key, status, done in analyses:
            conn.execute(insert(analysis_jobs).values(
                experiment_name=f"flow-{key[4]}", status=status, trigger_key=key,
                completed_at=done))
    ledger.record_signal("sig-A", "training_complete", "/d/A", "accepted",
                         experiment="flow-A", file_mtime=(T0 + s).timestamp())


@pytest.fixture
def filled(ledger_url: str) -> Iterator[Ledger]:
    """A ledger (SQLite, then PostgreSQL) with one job in every dashboard state and a
    known value for every metric."""
    ledger = open_ledger(ledger_url, init=True)
    s = timedelta(seconds=1)
    job(ledger, "1", "evaluation", "COMPLETED", started_at=T0 + 30 * s,
        ended_at=T0 + 90 * s, cpu_seconds=50.0, max_rss_mb=50.0, restarts=2)
    job(ledger, "2", "evaluation", "FAILED", exit_code=0, exit_signal=9, max_rss_mb=300.0,
        started_at=T0, ended_at=T0 + 200 * s, cpu_seconds=1.0)
    job(ledger, "3", "evaluation", "TIMEOUT", started_at=T0, ended_at=T0 + 300 * s,
        cpu_seconds=1.0)
    job(ledger, "4", "evaluation", "PENDING", reason="JobHeldUser")
    job(ledger, "5", "analysis", "RUNNING", started_at=T0 + 5 * s, restarts=1)
    job(ledger, "6", "evaluation", "SUBMITTING", submit=False)
    job(ledger, "7", "evaluation", "PENDING", reason="Priority", submitted_at=T0 - HOUR)
    job(ledger, "8", "analysis", "CONFIGURING", started_at=T0 + 10 * s)
    job(ledger, "9", "evaluation", "PREEMPTED", started_at=T0, ended_at=T0 + 20 * s)
    ledger.heartbeat("training_sensor")
    ledger.record_signal("s1", "training_complete", "/d/x", "quarantined", reason="bad")
    flows(ledger)
    yield ledger
    ledger.close()


def registry_of(config: Config, ledger: Ledger, fetch: Callable[[], Counter[str]] | None = None,
                ttl: float = 60) -> tuple[CollectorRegistry, QueueSnapshot]:
    queue = QueueSnapshot(fetch or (lambda: Counter({"PENDING": 7, "RUNNING": 2})), ttl)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(config, ledger, queue))
    return registry, queue


def scrape(config: Config, ledger: Ledger, fetch: Callable[[], Counter[str]] | None = None,
           ttl: float = 60) -> tuple[str, QueueSnapshot]:
    registry, queue = registry_of(config, ledger, fetch, ttl)
    return generate_latest(registry).decode(), queue


def test_values_agree_with_the_ledger(config: Config, filled: Ledger) -> None:
    before = datetime.now(UTC)
    text, _ = scrape(config, filled)
    after = datetime.now(UTC)
    assert sample(text, "baton_exporter_component_up", component="ledger") == 1
    assert sample(text, "baton_exporter_component_up", component="slurm") == 1
    assert sample(text, "baton_exporter_component_up", component="drive") == 1
    # every dashboard state
    for stage, state, n in (("evaluation", "submitting", 1), ("evaluation", "pending", 1),
                            ("evaluation", "held", 1), ("evaluation", "started", 0),
                            ("evaluation", "running", 0), ("evaluation", "preempted", 1),
                            ("evaluation", "failed", 2), ("evaluation", "finished", 1),
                            ("analysis", "started", 1), ("analysis", "running", 1),
                            ("analysis", "pending", 0)):
        assert sample(text, "baton_jobs", stage=stage, state=state) == n, (stage, state)
    assert sample(text, "baton_jobs_failed_total", stage="evaluation",
                  reason="out_of_memory") == 1  # signal 9 with MaxRSS over the request
    assert sample(text, "baton_jobs_failed_total", stage="evaluation", reason="timeout") == 1
    assert sample(text, "baton_jobs_failed_total", stage="evaluation", reason="error") == 0
    assert sample(text, "baton_jobs_finished_total", stage="evaluation") == 1
    assert sample(text, "baton_job_restarts_total", stage="evaluation") == 2
    assert sample(text, "baton_job_restarts_total", stage="analysis") == 1
    assert sample(text, "baton_stage_consecutive_failures", stage="evaluation") == 2
    assert sample(text, "baton_stage_last_success_timestamp_seconds", stage="evaluation") == \
        (T0 + timedelta(seconds=90)).timestamp()
    # queue wait: 30 s (1), 0 s (2, 3, 9); the running and started jobs 5 s and 10 s
    assert sample(text, "baton_job_queue_wait_seconds_bucket", stage="evaluation",
                  le="30") == 4
    assert sample(text, "baton_job_queue_wait_seconds_sum", stage="evaluation") == 30
    assert sample(text, "baton_job_queue_wait_seconds_count", stage="analysis") == 2
    # run time: 60 s, 200 s, 300 s, 20 s (preempted); the running jobs have no end yet
    assert sample(text, "baton_job_run_seconds_count", stage="evaluation") == 4
    assert sample(text, "baton_job_run_seconds_sum", stage="evaluation") == 580
    assert sample(text, "baton_job_run_seconds_bucket", stage="evaluation", le="60") == 2
    assert sample(text, "baton_job_run_seconds_bucket", stage="evaluation", le="120") == 2
    assert sample(text, "baton_job_run_seconds_bucket", stage="evaluation", le="300") == 4
    assert "baton_job_run_seconds_count{stage=\"analysis\"}" not in text
    # memory: 50 of 100 MB, 300 of 100 MB
    assert sample(text, "baton_job_memory_used_ratio_count", stage="evaluation") == 2
    assert sample(text, "baton_job_memory_used_ratio_sum", stage="evaluation") == 3.5
    assert sample(text, "baton_job_memory_used_ratio_bucket", stage="evaluation",
                  le="0.5") == 1
    assert sample(text, "baton_job_memory_used_ratio_bucket", stage="evaluation",
                  le="2.0") == 1
    assert sample(text, "baton_job_cpu_seconds_total", stage="evaluation") == 52

    def age(at: datetime) -> tuple[float, float]:
        return (before - at).total_seconds(), (after - at).total_seconds()

    def between(value: float, bounds: tuple[float, float]) -> bool:
        return bounds[0] <= value <= bounds[1]

    # the oldest waiting job is the plain pending one, submitted an hour before the held one
    assert between(sample(text, "baton_oldest_waiting_job_seconds", stage="evaluation"),
                   age(T0 - HOUR))
    assert sample(text, "baton_oldest_waiting_job_seconds", stage="analysis") == 0
    assert between(sample(text, "baton_longest_running_job_seconds", stage="analysis"),
                   age(T0 + timedelta(seconds=5)))
    assert sample(text, "baton_longest_running_job_seconds", stage="evaluation") == 0
    # flows: A took 130 s to evaluate (its later checkpoint), D 600 s through its repair;
    # B is still evaluating and C's evaluation failed: neither counts as evaluated
    assert sample(text, "baton_training_to_evaluation_seconds_count") == 2
    assert sample(text, "baton_training_to_evaluation_seconds_sum") == 730
    assert sample(text, "baton_training_to_evaluation_seconds_bucket", le="300") == 1
    assert sample(text, "baton_evaluation_to_analysis_seconds_count") == 2
    assert sample(text, "baton_evaluation_to_analysis_seconds_sum") == 270 + 100
    assert sample(text, "baton_end_to_end_seconds_sum") == 400 + 700
    assert sample(text, "baton_signal_detection_latency_seconds_count") == 1
    assert sample(text, "baton_signal_detection_latency_seconds_sum") == 4  # mtime to submit
    # the oldest model without a completed evaluation is C (failed), not B
    assert between(sample(text, "baton_oldest_unanswered_training_seconds"), age(T0 - HOUR))
    assert sample(text, "baton_signals_total", kind="training_complete",
                  status="quarantined") == 1
    assert sample(text, "baton_signals_total", kind="training_complete",
                  status="accepted") == 1
    assert sample(text, "baton_queue_depth") == 7
    assert sample(text, "baton_queue_jobs", state="running") == 2
    assert sample(text, "baton_ledger_integrity_ok") == 1
    assert 0 < sample(text, "baton_shared_drive_free_ratio") < 1
    assert between(sample(text, "baton_sensor_heartbeat_timestamp_seconds",
                          sensor="training_sensor"), (0, after.timestamp()))


def test_oldest_evaluation_without_analysis_is_exported(ledger_url: str) -> None:
    """The missing ``.analysis_complete`` alert's metric: the age of the oldest completed
    evaluation whose analysis has not completed (a failed analysis is not one)."""
    ledger = open_ledger(ledger_url, init=True)
    runs = {"E": T0 - 5 * HOUR, "F": T0 - 4 * HOUR, "G": T0 - 4 * HOUR, "H": T0 - HOUR}
    with ledger.write() as conn:
        for exp, done in runs.items():
            conn.execute(insert(training_runs).values(
                experiment_name=f"age-{exp}", status="completed", completed_at=done,
                signal_key=f"sig-{exp}"))
        for exp, evaluated in (("E", T0 - 4 * HOUR), ("F", T0 - 3 * HOUR),
                               ("G", T0 - 2 * HOUR)):
            conn.execute(insert(evaluation_jobs).values(
                experiment_name=f"age-{exp}", status="completed", trigger_key=f"sig-{exp}",
                checkpoint_path="c", submitted_at=runs[exp], completed_at=evaluated))
        for exp, status in (("E", "completed"), ("F", "failed")):  # G: none yet
            conn.execute(insert(analysis_jobs).values(
                experiment_name=f"age-{exp}", status=status, trigger_key=f"sig-{exp}",
                completed_at=T0 - 2 * HOUR))
    flows = FlowTally().add_all(ledger.signal_timelines()).families(now=T0)
    got = {m.name: m.samples[0].value for m in flows
           if m.name.startswith("baton_oldest_unanswered")}
    # F's analysis failed 3 h after its evaluation; H has no evaluation for 1 h
    assert got == {"baton_oldest_unanswered_evaluation_seconds": 3 * 3600,
                   "baton_oldest_unanswered_training_seconds": 3600}
    ledger.close()


def test_integrity_failure_is_exported(config: Config, filled: Ledger) -> None:
    with filled.write() as conn:  # a schema the code does not expect
        conn.execute(sql("UPDATE alembic_version SET version_num = '0001'"))
    text, _ = scrape(config, filled)
    assert sample(text, "baton_ledger_integrity_ok") == 0
    assert sample(text, "baton_exporter_component_up", component="ledger") == 1


def test_submit_failures_never_go_down(config: Config, ledger_url: str) -> None:
    """Retrying a claim turns its SUBMIT_FAILED row back into SUBMITTING; the counter of
    submit failures keeps the failure."""
    ledger = open_ledger(ledger_url, init=True)
    registry, _ = registry_of(config, ledger)

    def failures() -> float:
        return sample(generate_latest(registry).decode(), "baton_jobs_failed_total",
                      stage="evaluation", reason="submit_failed")

    claim = ledger.claim_submission("k", stage="evaluation", experiment="e", backend="sbatch")
    assert failures() == 0
    ledger.mark_submit_failed(claim.row_id, "sbatch: invalid partition")
    assert failures() == 1
    again = ledger.claim_submission("k", stage="evaluation", experiment="e", backend="sbatch")
    assert again.created and again.row_id == claim.row_id  # reclaimed: SUBMITTING again
    assert ledger.job(claim.row_id).state == "SUBMITTING"
    assert failures() == 1
    ledger.mark_submit_failed(claim.row_id, "sbatch: invalid partition")
    assert failures() == 2  # a second failure of the same row
    ledger.close()


def fake_squeue(tmp_path: Path, calls: Path, release: Path | None = None) -> Path:
    """An ``squeue`` that counts its calls and prints the state column (``%T``) of a real
    capture (tests/data/slurm/squeue.txt: 5 PENDING, 2 RUNNING); with ``release``, it
    waits until that file exists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wait = f'while [ ! -e "{release}" ]; do sleep 0.05; done\n' if release else ""
    script = bin_dir / "squeue"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        f"{wait}"
        'case " $* " in *" --format=%T "*) ;; *) echo "unexpected: $*" >&2; exit 2;; esac\n'
        f'cut -d"|" -f4 "{DATA / "slurm" / "squeue.txt"}"\n')
    script.chmod(0o755)
    return bin_dir


def test_one_queue_snapshot_per_period(config: Config, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent scrapes share one squeue call; after the TTL the next scrape calls it
    again. The real sbatch backend's fetcher runs a fake squeue that blocks until every
    scrape has reached the snapshot, so the scrapes really are concurrent."""
    calls, release = tmp_path / "calls", tmp_path / "release"
    monkeypatch.setenv("PATH", f"{fake_squeue(tmp_path, calls, release)}:{os.environ['PATH']}")
    ledger = open_ledger(config.ledger_url, init=True)
    ttl = 0.5
    registry, queue = registry_of(config, ledger, SbatchBackend().queue_states, ttl)
    texts: list[str] = []
    threads = [threading.Thread(target=lambda: texts.append(generate_latest(registry).decode()))
               for _ in range(6)]
    for t in threads:
        t.start()
    in_snapshot = {QueueSnapshot.get.__code__}
    deadline = 600
    while deadline and not all(_inside(t, in_snapshot) for t in threads):
        threading.Event().wait(0.05)  # until every scrape waits on the one squeue
        deadline -= 1
    assert deadline, "the scrapes did not all reach the queue snapshot"
    release.touch()
    for t in threads:
        t.join(60)
    assert len(calls.read_text().splitlines()) == 1
    assert len(texts) == 6
    assert all(sample(t, "baton_queue_depth") == 5 for t in texts)
    assert all(sample(t, "baton_queue_jobs", state="running") == 2 for t in texts)
    threading.Event().wait(ttl * 1.5)  # the snapshot is now older than its TTL
    text_ = generate_latest(registry).decode()
    assert len(calls.read_text().splitlines()) == 2
    assert queue.calls == 2 and sample(text_, "baton_queue_depth") == 5
    ledger.close()


def _inside(thread: threading.Thread, codes: set[object]) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def test_failed_slurm_degrades_only_its_part(config: Config, filled: Ledger,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # squeue cannot be found: a real failure
    text, _ = scrape(config, filled, SbatchBackend().queue_states)
    assert sample(text, "baton_exporter_component_up", component="slurm") == 0
    assert sample(text, "baton_exporter_component_up", component="ledger") == 1
    assert "baton_queue_depth " not in text
    assert sample(text, "baton_jobs", stage="evaluation", state="finished") == 1


def promtool_check_metrics(exposition: bytes) -> None:
    require(shutil.which("promtool") is not None,
            "promtool is not installed (apt-get install prometheus)")
    proc = subprocess.run(["promtool", "check", "metrics"], input=exposition,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_accepts_the_exposition(config: Config, filled: Ledger) -> None:
    registry, _ = registry_of(config, filled)  # with a queue snapshot
    exposition = generate_latest(registry)
    for family in ("baton_queue_jobs{", "baton_queue_depth ", "baton_jobs{",
                   "baton_training_to_evaluation_seconds_bucket{", "baton_progress_tasks{",
                   "baton_supervisions_total{", "baton_exporter_component_up{"):
        assert family.encode() in exposition, family
    promtool_check_metrics(exposition)
    # as `baton exporter` builds it, over the same ledger
    registry, collector = build_registry(config.model_copy(update={"database_url": filled.url}))
    promtool_check_metrics(generate_latest(registry))
    collector.ledger.close()


def test_failure_reasons_agree_with_the_supervisor() -> None:
    """A job killed over its memory is out_of_memory however Slurm reports the kill: state
    OUT_OF_MEMORY (cgroups), signal 9, or exit code 137 (a shell that saw the kill)."""
    from baton.exporter.dashboard import failure_reason

    cases = [("OUT_OF_MEMORY", 0, None, None), ("FAILED", 0, 9, 900.0),
             ("FAILED", 137, None, 900.0), ("FAILED", 137, None, 100.0),
             ("FAILED", 1, None, None), ("TIMEOUT", 0, 15, 10.0)]
    got = [failure_reason(state, code, sig, rss, 800.0) for state, code, sig, rss in cases]
    assert got == ["out_of_memory", "out_of_memory", "out_of_memory", "error", "error",
                   "timeout"]
