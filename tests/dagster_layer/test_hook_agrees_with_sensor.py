"""The training hook and the training sensor ask one validation: for every case the hook
refuses, the same signal written by hand (as a hook that did not check would write it) is
quarantined by the sensor with the reason the hook logged; what the hook announces, the
sensor accepts and sends to evaluation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import SensorResult

from baton.hook import training_complete
from baton.inbox import publish
from baton.signals import TrainingComplete, write_signal
from tests.core.test_hook import REFUSED, saved
from tests.e2e.harness import PER_SIGNAL, InProcess


@pytest.fixture
def site(tmp_path: Path) -> Iterator[InProcess]:
    with InProcess(tmp_path / "site", sensors=PER_SIGNAL) as s:
        yield s


def unchecked(site: InProcess, final: Path, extra: list[Path]) -> Path:
    """The signal the hook would have written had it not checked: resolved paths, the
    canonical place, an inbox marker."""
    signal = TrainingComplete(
        timestamp=datetime.now(UTC), experiment="exp1", hostname="gpu01", user="tester",
        checkpoint_path=str(final.resolve()),
        checkpoints=[str(c.resolve()) for c in extra] or None)
    path = write_signal(site.drive.experiment("exp1").training_signal, signal)
    publish(site.drive, signal, path)
    return path


@pytest.mark.parametrize("case", REFUSED)
def test_what_the_hook_refuses_the_sensor_quarantines_for_the_same_reason(
        case: str, site: InProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make, _ = REFUSED[case]
    final, extra = make(site.drive, tmp_path)
    with caplog.at_level(logging.ERROR, logger="baton.hook"):
        assert training_complete("exp1", final, checkpoints=list(extra) or None,
                                 config=site.config) is None
    logged = [r.getMessage() for r in caplog.records if r.name == "baton.hook"]
    assert len(logged) == 1, logged

    path = unchecked(site, final, extra)
    result = site.tick("training_sensor")
    assert isinstance(result, SensorResult) and not result.run_requests
    rows = site.ledger.quarantined()
    assert [r.path for r in rows] == [str(path)]
    assert logged[0].endswith(f"{path}: {rows[0].reason}"), (logged[0], rows[0].reason)


def test_what_the_hook_announces_the_sensor_accepts(site: InProcess, tmp_path: Path) -> None:
    exp = site.drive.experiment("exp1")
    final = saved(exp.final_dir)
    extra = saved(exp.checkpoint(100))
    path = training_complete("exp1", final, checkpoints=[extra], config=site.config)
    assert path == exp.training_signal
    result = site.tick("training_sensor")
    assert isinstance(result, SensorResult)
    assert [r.partition_key for r in result.run_requests] == ["exp1"]
    assert site.ledger.quarantined() == []
