"""The ledger keeps a lab's own fields of every accepted signal (``signals.extra_fields``,
schema 0009), whatever its kind; migration 0009 leaves the history as it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import column, insert, select, table

from baton.layout import DriveLayout
from baton.ledger import Ledger, migrate, open_ledger
from baton.ledger.migrate import head_revision
from baton.ledger.schema import signals
from baton.signals import read_signal

LAB = {"cluster": "west", "seeds": [1, 2], "notes": {"by": "r-script"}}


def test_every_kind_keeps_its_lab_fields(ledger_url: str, drive: DriveLayout) -> None:
    ledger = open_ledger(ledger_url, init=True)
    path = drive.experiment("exp1").eval_complete_signal
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1",
                                "job_id": 12, "status": "complete", **LAB}))
    sf = read_signal(path, drive)
    assert ledger.accept_signal(sf)
    plain = drive.experiment("exp2").analysis_signal
    plain.parent.mkdir(parents=True)
    plain.write_text(json.dumps({"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp2",
                                 "job_id": "3", "status": "complete"}))
    assert ledger.accept_signal(read_signal(plain, drive))
    with ledger.read() as conn:
        kept = dict(conn.execute(select(signals.c.experiment, signals.c.extra_fields)).all())
    assert kept == {"exp1": LAB, "exp2": None}
    with ledger.read() as conn:  # none is SQL NULL, not JSON null
        assert conn.execute(select(signals.c.experiment).where(
            signals.c.extra_fields.is_(None))).scalars().all() == ["exp2"]


def test_upgrade_to_0009_keeps_the_history(ledger_url: str) -> None:
    led = Ledger(ledger_url, create=True)
    assert migrate.upgrade(led.engine, "0008") == (None, "0008")
    old = table("signals", *[column(c.name, c.type) for c in signals.c
                             if c.name != "extra_fields"])
    now = datetime.now(UTC)
    with led.engine.begin() as conn:
        conn.execute(insert(old).values(idempotency_key="k", kind="training_complete",
                                        experiment="e", path="/d/x", status="accepted",
                                        seen_at=now))
    assert led.init() == ("0008", head_revision())
    with led.engine.connect() as conn:
        rows = conn.execute(select(signals.c.idempotency_key, signals.c.extra_fields)).all()
    assert [tuple(r) for r in rows] == [("k", None)]
    assert led.check().ok, led.check().problems
    led.close()
