"""The ``failures`` entries of an ``.eval_failed`` from other people's scripts follow the
signals' own rule: a lab's own fields are kept (they used to quarantine the whole signal),
a near miss of a known field is refused with the field it meant and where it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baton.errors import SignalError
from baton.layout import DriveLayout
from baton.signals import EvalFailed, Failure, read_signal, utcnow, write_signal

LAB = {"node": "gpu07", "exit_code": 137, "cuda": {"driver": "550.54"}}


def eval_failed(drive: DriveLayout, *failures: dict) -> Path:
    path = drive.experiment("exp1").eval_failed_signal
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1",
                                "job_id": "12", "status": "failed", "error_message": "oom",
                                "failures": list(failures)}))
    return path


def test_a_labs_own_fields_in_a_failure_are_kept(drive: DriveLayout) -> None:
    sig = read_signal(eval_failed(drive, {"error": "oom", "dataset": "squad", **LAB}),
                      drive).signal
    assert isinstance(sig, EvalFailed) and sig.failures
    [failure] = sig.failures
    assert (failure.error, failure.dataset) == ("oom", "squad")
    assert failure.extra_fields() == LAB
    # written back as read: the lab's fields travel with the signal
    again = write_signal(drive.experiment("exp1").eval_dir / "copy" / ".eval_failed", sig)
    assert json.loads(again.read_text())["failures"][0]["cuda"] == LAB["cuda"]


@pytest.mark.parametrize(("typo", "meant"), [("datset", "dataset"), ("eror", "error"),
                                             ("checkpont", "checkpoint")])
def test_a_near_miss_in_a_failure_is_refused_with_the_field_it_meant(
        drive: DriveLayout, typo: str, meant: str) -> None:
    entry = {"error": "oom", typo: "x"} if typo != "eror" else {typo: "oom"}
    with pytest.raises(SignalError) as info:
        read_signal(eval_failed(drive, {"error": "fine"}, entry), drive)
    message = str(info.value)
    assert f"failures.1: unknown field '{typo}': did you mean '{meant}'?" in message, message
    assert "\n" not in message and "Traceback" not in message


def test_a_near_miss_in_a_failure_is_refused_when_built_in_python_too() -> None:
    with pytest.raises(ValueError, match="did you mean 'dataset'"):
        Failure(error="oom", datset="squad")
    assert Failure(error="oom", node="gpu07").extra_fields() == {"node": "gpu07"}
    assert EvalFailed(timestamp=utcnow(), experiment="e", job_id="1", status="failed",
                      error_message="x", failures=[Failure(error="oom", node="gpu07")])
