"""The signal contract: the spec's example parses verbatim; every bad case is rejected
with a message naming the file and the problem; writes are atomic."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest

from baton.errors import SignalError
from baton.fsio import atomic_write
from baton.layout import DriveLayout
from baton.signals import (
    MAX_SIGNAL_BYTES,
    EvalComplete,
    EvalFailed,
    TrainingComplete,
    read_signal,
    utcnow,
    write_signal,
)

SPEC_EXAMPLE = """{
  "timestamp": "2025-09-30T14:32:15Z",
  "experiment": "experiment_01",
  "checkpoint_path": "/mnt/shared/subject-drop/models/experiment_01/final",
  "hostname": "wild_west",
  "user": "tmorton",
  "config_path": "/mnt/shared/subject-drop/config/experiments/experiment_01.yaml",
  "num_epochs": 10,
  "final_loss": 2.34,
  "total_steps": 50000,
  "git_commit": "a94429c"
}
"""
SPEC_DRIVE = DriveLayout(Path("/mnt/shared/subject-drop"))


def good_training(drive: DriveLayout, experiment: str = "exp1") -> dict:
    return {
        "timestamp": "2026-11-21T10:00:00Z",
        "experiment": experiment,
        "checkpoint_path": str(drive.experiment(experiment).final_dir),
        "hostname": "gpu01",
        "user": "alice",
    }


def put(drive: DriveLayout, doc: object, experiment: str = "exp1") -> Path:
    path = drive.experiment(experiment).training_signal
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def rejected(path: Path, drive: DriveLayout | None, *fragments: str) -> str:
    with pytest.raises(SignalError) as info:
        read_signal(path, drive)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_spec_example_parses_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "experiment_01" / ".training_complete"
    path.parent.mkdir()
    path.write_text(SPEC_EXAMPLE)
    sf = read_signal(path, SPEC_DRIVE)
    sig = sf.signal
    assert isinstance(sig, TrainingComplete)
    assert (sig.experiment, sig.hostname, sig.user) == ("experiment_01", "wild_west", "tmorton")
    assert (sig.num_epochs, sig.final_loss, sig.total_steps) == (10, 2.34, 50000)
    assert sig.git_commit == "a94429c" and sig.schema_version == 1 and sig.campaign is None
    assert sig.timestamp.isoformat() == "2025-09-30T14:32:15+00:00"
    assert sf.idempotency_key.startswith("training_complete:experiment_01:")


def test_malformed_json(drive: DriveLayout) -> None:
    rejected(put(drive, '{"experiment": "exp1",'), drive, "malformed JSON", "line 1")


def test_not_an_object(drive: DriveLayout) -> None:
    rejected(put(drive, "[1, 2]"), drive, "must be a JSON object")


def test_duplicate_keys_and_nan(drive: DriveLayout) -> None:
    rejected(put(drive, '{"experiment": "exp1", "experiment": "exp2"}'), drive,
             "duplicate key 'experiment'")
    doc = json.dumps(good_training(drive))[:-1] + ', "final_loss": NaN}'
    rejected(put(drive, doc), drive, "NaN is not valid JSON")


@pytest.mark.parametrize("field", ["timestamp", "experiment", "checkpoint_path", "hostname",
                                   "user"])
def test_missing_required_field(drive: DriveLayout, field: str) -> None:
    doc = good_training(drive)
    del doc[field]
    rejected(put(drive, doc), drive, f"missing required field '{field}'")


@pytest.mark.parametrize(("field", "value", "says"), [
    ("num_epochs", "10", "field 'num_epochs'"),
    ("final_loss", "low", "field 'final_loss'"),
    ("total_steps", -5, "field 'total_steps'"),
    ("total_steps", True, "field 'total_steps'"),
    ("timestamp", "yesterday", "field 'timestamp'"),
    ("timestamp", "2026-11-21T10:00:00", "timezone"),
    ("hostname", 42, "field 'hostname'"),
    ("checkpoint_path", "relative/path", "field 'checkpoint_path'"),
    ("git_commit", "not-a-sha", "field 'git_commit'"),
    ("schema_version", 2, "field 'schema_version'"),
])
def test_mistyped_field(drive: DriveLayout, field: str, value: object, says: str) -> None:
    doc = good_training(drive)
    doc[field] = value
    rejected(put(drive, doc), drive, says)


def test_unknown_field(drive: DriveLayout) -> None:
    doc = good_training(drive)
    doc["final_lost"] = 1.0
    rejected(put(drive, doc), drive, "unknown field 'final_lost'")


def test_unknown_status(drive: DriveLayout) -> None:
    path = drive.experiment("exp1").eval_complete_signal
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1",
                                "job_id": "12", "status": "done"}))
    rejected(path, drive, "unknown status 'done'")


def test_eval_failed_requires_failed_status_and_message(drive: DriveLayout) -> None:
    path = drive.experiment("exp1").eval_failed_signal
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1",
                                "job_id": 12, "status": "complete"}))
    msg = rejected(path, drive, "unknown status 'complete'")
    assert "missing required field 'error_message'" in msg


def test_oversized_file(drive: DriveLayout) -> None:
    doc = good_training(drive)
    doc["hostname"] = "x" * 100
    text = json.dumps(doc)
    path = put(drive, text + " " * (MAX_SIGNAL_BYTES + 1 - len(text)))
    rejected(path, drive, "1 MiB")


def test_not_utf8(drive: DriveLayout) -> None:
    path = put(drive, "")
    path.write_bytes(b'{"experiment": "caf\xe9"}')
    rejected(path, drive, "not valid UTF-8")


def test_checkpoint_outside_drive(drive: DriveLayout) -> None:
    doc = good_training(drive)
    doc["checkpoint_path"] = "/etc/passwd"
    rejected(put(drive, doc), drive, "outside the shared drive", "/etc/passwd")


def test_checkpoint_escaping_through_dotdot(drive: DriveLayout) -> None:
    doc = good_training(drive)
    doc["checkpoint_path"] = str(drive.root / "models" / ".." / ".." / "elsewhere")
    rejected(put(drive, doc), drive, "outside the shared drive")


def test_checkpoint_outside_drive_through_symlink(drive: DriveLayout, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link = drive.experiment("exp1").model_dir / "final"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    doc = good_training(drive)  # checkpoint_path is .../models/exp1/final: the symlink
    message = rejected(put(drive, doc), drive, "outside the shared drive")
    assert str(outside) in message


def test_hostile_experiment_name(drive: DriveLayout) -> None:
    doc = good_training(drive)
    doc["experiment"] = "x; rm -rf ~"
    rejected(put(drive, doc), drive, "field 'experiment'", "not allowed")


def test_experiment_must_match_folder(drive: DriveLayout) -> None:
    doc = good_training(drive, "exp1")
    doc["experiment"] = "exp2"
    rejected(put(drive, doc, "exp1"), drive, "does not match its folder 'exp1'")


def test_signal_must_be_regular_file(drive: DriveLayout, tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text(json.dumps(good_training(drive)))
    path = drive.experiment("exp1").training_signal
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    rejected(path, drive, "is a symlink")
    path.unlink()
    os.mkfifo(path)  # a FIFO must not block the reader
    rejected(path, drive, "not a regular file")


def test_missing_file(drive: DriveLayout) -> None:
    rejected(drive.experiment("exp1").training_signal, drive, "does not exist")


def test_write_then_read_round_trip(drive: DriveLayout) -> None:
    sig = EvalFailed(timestamp=utcnow(), experiment="exp1", job_id="42_3", status="failed",
                     error_message="dataset blimp: CUDA out of memory",
                     datasets_evaluated=["wikitext"], campaign="sweep-lr")
    path = write_signal(drive.experiment("exp1").eval_failed_signal, sig)
    back = read_signal(path, drive).signal
    assert back == sig
    assert json.loads(path.read_text())["status"] == "failed"


def test_write_refuses_invalid_signal(drive: DriveLayout) -> None:
    # model_construct skips validation, as a careless caller might; the write re-checks
    bad = EvalComplete.model_construct(timestamp=utcnow(), experiment="x; rm -rf ~",
                                       job_id="1", status="complete")
    target = drive.experiment("exp1").eval_complete_signal
    with pytest.raises(SignalError, match="not allowed"):
        write_signal(target, bad)
    assert not target.exists()


def test_atomic_write_readers_never_see_partial(tmp_path: Path) -> None:
    path = tmp_path / "sig.json"
    docs = [json.dumps({"n": i, "pad": "x" * (200_000 + i)}).encode() for i in range(40)]
    atomic_write(path, docs[0])
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(path.read_bytes())

    t = threading.Thread(target=reader)
    t.start()
    for doc in docs:
        atomic_write(path, doc)
    stop.set()
    t.join()
    assert seen and all(data in docs for data in seen)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_retries_transient_errors(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # a network filesystem's EIO on fsync cannot be produced on local disk: inject it
    real_fsync = os.fsync
    failures = [OSError(errno.EIO, "Input/output error"), OSError(errno.ESTALE, "Stale")]

    def flaky(fd: int) -> None:
        if failures:
            raise failures.pop(0)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", flaky)
    path = atomic_write(tmp_path / "sig.json", b"{}", base_delay=0.001)
    assert path.read_bytes() == b"{}" and not failures
    assert [p.name for p in tmp_path.iterdir()] == ["sig.json"]


def test_atomic_write_gives_up_on_permanent_error(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "sig.json", b"{}", attempts=3, base_delay=0.001)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_hostile_folder_name(drive: DriveLayout) -> None:
    path = drive.models / "x; rm -rf ~" / ".training_complete"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(good_training(drive)))
    rejected(path, drive, "its folder name 'x; rm -rf ~' is not allowed")
