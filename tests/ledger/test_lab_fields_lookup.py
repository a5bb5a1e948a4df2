"""The ledger finds the lab's own fields of the signal that answered a stage: by the
signal's key (an evaluation task keeps it) or by its timestamp (an analysis keeps that)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from baton.layout import DriveLayout
from baton.ledger import open_ledger
from baton.signals import read_signal

LAB = {"cluster": "west", "seeds": [1, 2]}
T1, T2 = "2026-11-21T10:00:00.123456Z", "2026-11-21T11:00:00Z"


def test_lab_fields_by_key_and_by_time(ledger_url: str, drive: DriveLayout) -> None:
    ledger = open_ledger(ledger_url, init=True)
    keys = {}
    for exp, lab, when in (("exp1", LAB, T1), ("exp2", {}, T1), ("exp1", {"late": 1}, T2)):
        path = drive.experiment(exp).analysis_signal
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"timestamp": when, "experiment": exp, "job_id": "3",
                                    "status": "complete", **lab}))
        sf = read_signal(path, drive)
        assert ledger.accept_signal(sf)
        keys[(exp, when)] = sf.idempotency_key
    assert ledger.lab_fields([*keys.values(), "no-such-key"]) == {
        keys[("exp1", T1)]: LAB, keys[("exp1", T2)]: {"late": 1}}
    assert ledger.lab_fields([]) == {}
    at = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    assert ledger.lab_fields_of("exp1", "analysis_complete", at) == LAB
    assert ledger.lab_fields_of("exp2", "analysis_complete", at) == {}
    assert ledger.lab_fields_of("exp1", "eval_complete", at) == {}
    assert ledger.lab_fields_of("exp1", "analysis_complete", at.replace(microsecond=0)) == {}
