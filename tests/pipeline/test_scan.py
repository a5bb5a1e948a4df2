"""The scanner: inbox markers on every tick, the full rescan for signals other tools wrote,
debounce, once-only records, quarantine with a reason."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.config import Config
from baton.inbox import pending, publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.ledger.stages import APPLIERS
from baton.ledger.training import apply_training_signal
from baton.pipeline.scan import Scanner, checkpoint_problem
from baton.pipeline.steps import submit_evaluations
from baton.signals import EvalComplete, TrainingComplete, read_signal
from baton.slurm.local import LocalBackend


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return open_ledger(f"sqlite:///{tmp_path / 'l.db'}", init=True)


def training(drive: DriveLayout, exp: str) -> TrainingComplete:
    final = drive.experiment(exp).final_dir
    final.mkdir(parents=True, exist_ok=True)
    (final / "model.safetensors").write_bytes(b"x")
    return TrainingComplete(timestamp=datetime.now(UTC), experiment=exp, hostname="h",
                            user="u", checkpoint_path=str(final))


def write_unannounced(drive: DriveLayout, exp: str) -> Path:
    """A signal written by another tool: no inbox marker."""
    path = drive.experiment(exp).training_signal
    sig = training(drive, exp)
    path.write_text(json.dumps(sig.model_dump(mode="json", exclude_none=True)))
    old = path.stat().st_mtime - 60
    os.utime(path, (old, old))
    return path


def test_inbox_tick_accepts_once_and_clears_markers(drive: DriveLayout, ledger: Ledger) -> None:
    scanner = Scanner(drive, ledger, debounce_seconds=0)
    publish(drive, training(drive, "e1"))
    first = scanner.tick(["training_complete"])
    assert [sf.signal.experiment for sf in first.accepted] == ["e1"]
    assert pending(drive, "training_complete") == []
    publish(drive, training(drive, "e1").model_copy(update={"timestamp": first.accepted[0]
                                                            .signal.timestamp}))
    again = scanner.tick(["training_complete"])  # same content, announced again
    assert again.accepted == [] and again.checked == 1


def test_idle_tick_reads_only_the_inbox(drive: DriveLayout, ledger: Ledger) -> None:
    for i in range(300):
        write_unannounced(drive, f"old{i}")
    scanner = Scanner(drive, ledger, debounce_seconds=0)
    full = scanner.tick(["training_complete"], full=True)
    assert len(full.accepted) == 300 and full.checked == 300
    idle = scanner.tick(["training_complete"])
    assert idle.checked == 0 and idle.accepted == []
    rescan = scanner.tick(["training_complete"], full=True)
    assert rescan.checked == 0  # known files with unchanged mtimes are not read again


def test_full_rescan_finds_unannounced_signals(drive: DriveLayout, ledger: Ledger) -> None:
    write_unannounced(drive, "quiet")
    scanner = Scanner(drive, ledger, debounce_seconds=0)
    assert scanner.tick(["training_complete"]).accepted == []
    assert [s.signal.experiment for s in scanner.tick(["training_complete"], full=True)
            .accepted] == ["quiet"]


def test_debounce_leaves_a_fresh_file_for_later(drive: DriveLayout, ledger: Ledger) -> None:
    clock = [1000.0]
    scanner = Scanner(drive, ledger, debounce_seconds=5, clock=lambda: clock[0])
    path = publish(drive, training(drive, "fresh"))
    os.utime(path, (999.0, 999.0))
    tick = scanner.tick(["training_complete"])
    assert tick.deferred == [path] and tick.accepted == []
    assert len(pending(drive, "training_complete")) == 1  # the marker stays
    clock[0] = 1005.0
    assert [s.signal.experiment for s in scanner.tick(["training_complete"]).accepted] == \
        ["fresh"]


def test_quarantine_once_with_reason(drive: DriveLayout, ledger: Ledger) -> None:
    path = drive.experiment("bad").training_signal
    path.parent.mkdir(parents=True)
    path.write_text("{nope")
    os.utime(path, (1, 1))
    scanner = Scanner(drive, ledger, debounce_seconds=0,
                      validators={"training_complete": checkpoint_problem})
    first = scanner.tick(["training_complete"], full=True)
    assert [(q.experiment, "malformed JSON" in q.reason) for q in first.quarantined] == \
        [("bad", True)]
    assert scanner.tick(["training_complete"], full=True).quarantined == []
    assert [r.reason for r in ledger.quarantined()] == [first.quarantined[0].reason]
    # a checkpoint that is missing: quarantined by the validator, the rest goes on
    sig = training(drive, "nockpt")
    (Path(sig.checkpoint_path) / "model.safetensors").unlink()
    publish(drive, sig)
    publish(drive, training(drive, "good"))
    tick = scanner.tick(["training_complete"])
    assert [s.signal.experiment for s in tick.accepted] == ["good"]
    assert "is empty" in tick.quarantined[0].reason


def test_ui_launch_racing_the_sensor_submits_once(config: Config, tmp_path: Path) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    cfg = config.model_copy(update={"stages": {**config.stages, "evaluation":
                            config.stage("evaluation").model_copy(update={
                                "mem": "10M", "cpus": 1, "command": "true"})}})
    sf = read_signal(publish(cfg.drive, training(cfg.drive, "race")), cfg.drive)
    ledger.accept_signal(sf, apply_training_signal)
    backend = LocalBackend(tmp_path / "local")
    results = []

    def launch() -> None:  # the sensor's run and a UI launch, at once
        results.append(submit_evaluations(cfg, ledger, backend, ["race"])["race"])

    threads = [threading.Thread(target=launch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.submitted_now for r in results) == 1
    assert len({tuple(r.job_ids) for r in results}) == 1
    assert len(list((tmp_path / "local" / "local-slurm" / "submissions").iterdir())) == 1
    assert len(ledger.evaluation_tasks("race")) == 1


@pytest.mark.parametrize("announced", [True, False])
def test_a_failure_while_applying_loses_nothing(drive: DriveLayout, ledger: Ledger,
                                                announced: bool) -> None:
    """The signal is recorded and applied in one transaction: when applying dies half-way
    (a crash, a lost database connection), neither stays, and a later tick takes it."""
    failures = [1]

    def dies_after_writing(conn, sf):  # type: ignore[no-untyped-def]
        APPLIERS["training_complete"](conn, sf)  # the real writes, then the crash
        if failures:
            failures.pop()
            raise ConnectionError("server closed the connection unexpectedly")

    if announced:
        publish(drive, training(drive, "crash"))
    else:
        write_unannounced(drive, "crash")
    scanner = Scanner(drive, ledger, debounce_seconds=0,
                      appliers={"training_complete": dies_after_writing})
    first = scanner.tick(["training_complete"], full=not announced)
    assert first.accepted == []
    assert ledger.training_run("crash") is None
    assert ledger.known_signal_files("training_complete") == {}
    assert len(pending(drive, "training_complete")) == (1 if announced else 0)
    second = scanner.tick(["training_complete"], full=True)
    assert [sf.signal.experiment for sf in second.accepted] == ["crash"]
    assert ledger.training_run("crash").signal_key == second.accepted[0].idempotency_key
    assert pending(drive, "training_complete") == []
    assert [r.experiment_name for r in ledger.training_awaiting_evaluation()] == ["crash"]


def test_the_scanner_applies_what_it_accepts(drive: DriveLayout, ledger: Ledger) -> None:
    publish(drive, training(drive, "e1"))
    tick = Scanner(drive, ledger, debounce_seconds=0).tick(["training_complete"])
    assert ledger.training_run("e1").signal_key == tick.accepted[0].idempotency_key
    sig = EvalComplete(timestamp=datetime.now(UTC), experiment="e1", job_id="7",
                       status="complete")
    publish(drive, sig)
    tick = Scanner(drive, ledger, debounce_seconds=0).tick(["eval_complete"])
    assert tick.unanswered == tick.accepted  # no evaluation job answers it: said so
