"""``report()`` returns within a second (the issue's words) when the drive is missing or
hangs, and the event is not lost: it is kept locally and forwarded by a later call. (The
read-only drive, a real read-only mount, is in test_status.py.)

The bound asserted is 2 s, a margin over the documented 1 s for a loaded CI machine; a
hanging write here takes 5 s, so a call that waited for it could not pass."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import baton.jobstatus.report as status
from baton.jobstatus.ingest import ingest
from baton.jobstatus.report import drive_spool, local_spool, report
from baton.ledger import open_ledger
from baton.ledger.schema import status_events

BOUND = 2.0  # seconds: the documented "within a second", with margin for a loaded machine
HANG = 5.0  # seconds a hanging drive write takes


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SHARED_DRIVE", raising=False)


def timed(*args: Any, **kwargs: Any) -> tuple[bool, float]:
    start = time.monotonic()
    returned = report(*args, **kwargs)
    return returned, time.monotonic() - start


def kept() -> list[Path]:
    return sorted(local_spool().glob("*.json"))


def statuses(drive: Path, tmp_path: Path) -> list[str]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)
    ingest(drive, ledger)
    with ledger.read() as conn:
        out = [r.status for r in conn.execute(select(status_events).order_by(
            status_events.c.reported_at))]
    ledger.close()
    return out


def test_missing_drive(tmp_path: Path) -> None:
    drive = tmp_path / "not-mounted"
    returned, elapsed = timed("p", "j", "started", drive=drive)
    assert returned is True and elapsed < BOUND
    assert not drive.exists()  # never created where the mount should be
    assert len(kept()) == 1
    drive.mkdir()  # mounted again
    assert report("p", "j", "completed", drive=drive)
    assert kept() == []
    assert statuses(drive, tmp_path) == ["started", "completed"]


def test_no_drive_configured(tmp_path: Path) -> None:
    returned, elapsed = timed("p", "j", "started")  # no drive, no $SHARED_DRIVE
    assert returned is True and elapsed < BOUND
    assert len(kept()) == 1


@pytest.fixture
def hanging_drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The drive's write blocks (a hung network mount) until released or HANG seconds have
    passed; then it fails like a hung NFS write does, or, with ``succeed``, completes."""
    drive = tmp_path / "drive"
    drive.mkdir()
    release = threading.Event()
    outcome = {"succeed": False}
    finished = threading.Event()
    real_write = status._write

    def write(folder: Path, event: dict[str, Any]) -> Path:
        if folder != drive_spool(drive):
            return real_write(folder, event)
        try:
            release.wait(HANG)
            if not outcome["succeed"]:
                raise OSError("the drive hung")
            return real_write(folder, event)
        finally:
            finished.set()

    monkeypatch.setattr(status, "_write", write)
    yield drive, release, outcome, finished, real_write
    release.set()


def test_hanging_drive_returns_in_time_and_the_event_is_forwarded_later(
        tmp_path: Path, hanging_drive, monkeypatch: pytest.MonkeyPatch) -> None:
    drive, release, _, finished, real_write = hanging_drive
    returned, elapsed = timed("p", "j", "started", drive=drive)
    assert returned is True and elapsed < BOUND  # did not wait for the hung write
    assert not finished.is_set()  # ... which is still hanging
    assert len(kept()) == 1
    release.set()
    assert finished.wait(10)  # the hung write gave up
    monkeypatch.setattr(status, "_write", real_write)
    assert report("p", "j", "completed", drive=drive)  # the drive answers again
    assert kept() == []
    assert statuses(drive, tmp_path) == ["started", "completed"]


def test_a_late_drive_write_takes_the_local_copy_back(tmp_path: Path, hanging_drive) -> None:
    """The hung write completes after the caller gave up on it: the event is on the drive,
    so the copy kept locally is removed and nothing is sent twice."""
    drive, release, outcome, finished, _ = hanging_drive
    outcome["succeed"] = True
    returned, elapsed = timed("p", "j", "started", drive=drive)
    assert returned is True and elapsed < BOUND
    assert len(kept()) == 1
    release.set()
    assert finished.wait(10)
    for _ in range(100):  # the drive thread removes the local copy right after its write
        if not kept():
            break
        time.sleep(0.05)
    assert kept() == []
    assert len(list(drive_spool(drive).glob("*.json"))) == 1
    assert statuses(drive, tmp_path) == ["started"]

