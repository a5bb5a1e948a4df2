"""Ingestion of the status spool when several ingesters run at once (the sensor and
``baton status list`` on the same drive and ledger), and when the drive has a hiccup."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

import baton.jobstatus.ingest as status_ingest
from baton.jobstatus.ingest import ingest
from baton.jobstatus.report import _write, drive_spool, make_event
from baton.ledger import open_ledger
from baton.ledger.schema import status_events


def spool_events(drive: Path, n: int) -> None:
    for i in range(n):
        _write(drive_spool(drive), make_event("proj", f"job{i % 7}", "running", progress=i % 100))


def rows_and_ids(ledger) -> tuple[int, int]:
    ev = status_events
    with ledger.read() as conn:
        return tuple(conn.execute(select(func.count(), func.count(ev.c.event_id.distinct())))
                     .one())


def test_two_ingesters_at_once_take_each_event_once(tmp_path: Path, ledger_url: str) -> None:
    drive = tmp_path / "drive"
    spool_events(drive, 400)
    ledgers = [open_ledger(ledger_url, init=True), open_ledger(ledger_url, init=True)]
    start = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def ingester(ledger) -> None:
        start.wait()
        try:
            counts.append(ingest(drive, ledger))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ingester, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(counts) == 400  # each event counted new by exactly one of them
    assert rows_and_ids(ledgers[0]) == (400, 400)
    assert list(drive_spool(drive).iterdir()) == []
    assert not (drive / "status" / "rejected").exists()  # a file another took is no error
    for ledger in ledgers:
        ledger.close()


def test_an_unreadable_event_stays_for_the_next_ingest(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A transient error of the network filesystem (EIO on read, the one call that cannot
    be made to fail for real here) leaves the event where it is; only a file that is not
    an event is rejected."""
    drive = tmp_path / "drive"
    spool_events(drive, 3)
    flaky = sorted(drive_spool(drive).glob("*.json"))[1]
    real_read = status_ingest.read_spool_file

    def read(path: Path) -> bytes:
        if path == flaky:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_read(path)

    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)
    with monkeypatch.context() as m:
        m.setattr(status_ingest, "read_spool_file", read)
        assert ingest(drive, ledger) == 2
    assert list(drive_spool(drive).glob("*.json")) == [flaky]
    assert not (drive / "status" / "rejected").exists()
    assert ingest(drive, ledger) == 1  # the drive is back
    assert rows_and_ids(ledger) == (3, 3)
    ledger.close()


def test_an_event_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    drive = tmp_path / "drive"
    drive_spool(drive).mkdir(parents=True)
    (drive_spool(drive) / "1-list.json").write_text("[1, 2]")
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)
    assert ingest(drive, ledger) == 0
    reason = (drive / "status" / "rejected" / "1-list.json.reason").read_text()
    assert reason.startswith("TypeError: an event is a JSON object")
    ledger.close()
