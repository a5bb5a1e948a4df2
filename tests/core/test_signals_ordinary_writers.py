"""Signals from other people's scripts: what an ordinary writer emits is accepted (a lab's
own fields, `git describe --dirty`, a UTF-8 byte-order mark, per-dataset metrics), a near
miss of a known field is refused with the field it meant, and the lab's fields are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baton.errors import SignalError
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.ledger.training import apply_training_signal
from baton.signals import EvalComplete, TrainingComplete, read_signal, utcnow


def training_doc(drive: DriveLayout, **more: object) -> dict:
    return {"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1",
            "checkpoint_path": str(drive.experiment("exp1").final_dir),
            "hostname": "gpu01", "user": "alice", **more}


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def put_training(drive: DriveLayout, doc: dict) -> Path:
    return put(drive.experiment("exp1").training_signal, json.dumps(doc).encode())


def test_a_labs_own_fields_are_kept(drive: DriveLayout) -> None:
    lab = {"slurm_array_task": 3, "dataset_version": "v2.1", "tags": ["ablation", "lr"],
           "optimizer": {"name": "adamw", "betas": [0.9, 0.95]}}
    sig = read_signal(put_training(drive, training_doc(drive, **lab)), drive).signal
    assert sig.extra_fields() == lab
    assert sig.model_dump(mode="json")["optimizer"] == lab["optimizer"]


def test_a_labs_fields_reach_the_ledger(ledger_url: str, drive: DriveLayout) -> None:
    ledger: Ledger = open_ledger(ledger_url, init=True)
    doc = training_doc(drive, dataset_version="v2.1", seeds=[1, 2, 3])
    assert ledger.accept_signal(read_signal(put_training(drive, doc), drive),
                                apply_training_signal)
    metadata = ledger.training_run("exp1").metadata
    assert metadata["dataset_version"] == "v2.1" and metadata["seeds"] == [1, 2, 3]


@pytest.mark.parametrize(("typo", "meant"), [
    ("final_los", "final_loss"), ("num_epoch", "num_epochs"), ("checkpoint_pth", "checkpoints"),
    ("git_comit", "git_commit"), ("hostnme", "hostname"),
])
def test_a_near_miss_is_refused_with_the_field_it_meant(drive: DriveLayout, typo: str,
                                                         meant: str) -> None:
    doc = training_doc(drive, **{typo: 1})
    if typo == "checkpoint_pth":  # the required field is there: the typo is an extra one
        meant = "checkpoint_path"
    with pytest.raises(SignalError) as info:
        read_signal(put_training(drive, doc), drive)
    message = str(info.value)
    assert f"unknown field '{typo}': did you mean '{meant}'?" in message, message
    assert "Traceback" not in message and "\n" not in message


def test_a_near_miss_is_refused_when_built_in_python_too() -> None:
    with pytest.raises(ValueError, match="did you mean 'final_loss'"):
        TrainingComplete(timestamp=utcnow(), experiment="e", checkpoint_path="/d/m",
                         hostname="h", user="u", final_los=1.0)


@pytest.mark.parametrize("described", [
    "a94429c-dirty", "v1.2.0-14-ga94429c", "v1.2.0-14-ga94429c-dirty",
    "release/2026.11-rc1-3-g0123456789ab-dirty", "a94429c",
])
def test_git_describe_dirty_is_a_git_commit(drive: DriveLayout, described: str) -> None:
    sig = read_signal(put_training(drive, training_doc(drive, git_commit=described)),
                      drive).signal
    assert sig.git_commit == described


@pytest.mark.parametrize("bad", ["not-a-sha", "v1.2.0", "a94429c dirty", "x" * 70 + "-1-gabcd",
                                 "a94429c-dirty\n"])
def test_git_commit_is_still_strict(drive: DriveLayout, bad: str) -> None:
    with pytest.raises(SignalError, match="field 'git_commit'"):
        read_signal(put_training(drive, training_doc(drive, git_commit=bad)), drive)


def test_a_byte_order_mark_is_accepted(drive: DriveLayout) -> None:
    data = b"\xef\xbb\xbf" + json.dumps(training_doc(drive)).encode()
    sf = read_signal(put(drive.experiment("exp1").training_signal, data), drive)
    assert sf.signal.experiment == "exp1" and sf.size == len(data)


def test_a_byte_order_mark_only_at_the_start(drive: DriveLayout) -> None:
    data = json.dumps(training_doc(drive)).encode().replace(b'"exp1"', b'"\xef\xbb\xbfexp1"')
    with pytest.raises(SignalError, match="field 'experiment'"):
        read_signal(put(drive.experiment("exp1").training_signal, data), drive)


def test_per_dataset_metrics_summary(drive: DriveLayout) -> None:
    doc = {"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1", "job_id": "12",
           "status": "complete", "metrics_summary": {
               "accuracy": 0.9, "squad": {"f1": 0.81, "em": 0.7}, "mmlu": {"accuracy": 0.6}}}
    path = put(drive.experiment("exp1").eval_complete_signal, json.dumps(doc).encode())
    sig = read_signal(path, drive).signal
    assert isinstance(sig, EvalComplete)
    assert sorted(sig.metric_values(), key=str) == sorted(
        [(None, "accuracy", 0.9), ("squad", "f1", 0.81), ("squad", "em", 0.7),
         ("mmlu", "accuracy", 0.6)], key=str)


@pytest.mark.parametrize(("summary", "says"), [
    ({"squad": {"f1": "high"}}, "metrics_summary"),
    ({"squad": {"f1": {"deeper": 1.0}}}, "metrics_summary"),
    ({"x" * 129: {"f1": 1.0}}, "metrics_summary"),
])
def test_metrics_summary_is_still_strict(drive: DriveLayout, summary: dict, says: str) -> None:
    doc = {"timestamp": "2026-11-21T10:00:00Z", "experiment": "exp1", "job_id": "12",
           "status": "complete", "metrics_summary": summary}
    path = put(drive.experiment("exp1").eval_complete_signal, json.dumps(doc).encode())
    with pytest.raises(SignalError, match=says):
        read_signal(path, drive)


def test_a_labs_field_cannot_pass_for_the_signals_own(drive: DriveLayout) -> None:
    lab = {"kind": "eval_complete", "filename": ".eval_complete", "model_config": {}}
    sf = read_signal(put_training(drive, training_doc(drive, **lab)), drive)
    assert (sf.kind, sf.signal.filename) == ("training_complete", ".training_complete")
    assert sf.signal.checkpoint_paths() == [str(drive.experiment("exp1").final_dir)]
    assert sf.signal.extra_fields() == lab
