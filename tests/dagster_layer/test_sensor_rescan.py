"""The training sensor's full-rescan schedule, through Dagster's sensor API: a signal
written without an inbox marker (by a tool that is not baton's) is not looked for on an
ordinary tick, and is found by the first tick after ``sensors.full_rescan_seconds``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import SensorResult, SkipReason

from baton.inbox import pending
from tests.e2e.harness import PER_SIGNAL, InProcess

RESCAN_S = 600
training_sensor = "training_sensor"  # InProcess builds it from its baton.yaml


@pytest.fixture
def site(tmp_path: Path) -> Iterator[InProcess]:
    with InProcess(tmp_path, sensors={"full_rescan_seconds": RESCAN_S, **PER_SIGNAL}) as s:
        yield s


def cursor(last_full_rescan: float) -> str:
    return json.dumps({"last_full_rescan": last_full_rescan})


def test_an_unannounced_signal_waits_for_the_full_rescan(site: InProcess) -> None:
    path = site.train("quiet", announce=False)
    old = time.time() - 60  # long past the debounce window
    os.utime(path, (old, old))
    assert pending(site.drive, "training_complete") == []  # no marker: nothing announced

    # within the rescan interval: an ordinary tick reads the inbox only
    recent = time.time() - RESCAN_S / 2
    result = site.tick(training_sensor, cursor=cursor(recent))
    assert isinstance(result, SensorResult) and not result.run_requests
    assert isinstance(result.skip_reason, SkipReason)
    assert "0 checked" in (result.skip_reason.skip_message or "")
    assert json.loads(result.cursor or "{}")["last_full_rescan"] == recent
    assert site.ledger.training_run("quiet") is None
    assert not site.instance.has_dynamic_partition("experiments", "quiet")

    # the interval has passed: this tick walks the drive and finds it
    stale = time.time() - RESCAN_S - 1
    before = time.time()
    result = site.tick(training_sensor, cursor=cursor(stale))
    assert isinstance(result, SensorResult)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("quiet", f"evaluation_job:{site.ledger.training_run('quiet').signal_key}")]
    assert json.loads(result.cursor or "{}")["last_full_rescan"] >= before
    assert site.instance.has_dynamic_partition("experiments", "quiet")
    assert site.ledger.training_run("quiet").checkpoint_path == str(
        site.drive.experiment("quiet").final_dir)

    # the next tick is inside the new interval: no walk of the drive; until Dagster holds
    # the run it asks again, under the same run key (the daemon launches one run)
    again = site.tick(training_sensor)
    assert isinstance(again, SensorResult)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in result.run_requests]
    assert json.loads(again.cursor or "{}")["last_full_rescan"] == \
        json.loads(result.cursor or "{}")["last_full_rescan"]


def test_an_announced_signal_is_found_without_a_rescan(site: InProcess) -> None:
    site.train("loud")
    result = site.tick(training_sensor, cursor=cursor(time.time()))
    assert isinstance(result, SensorResult)
    assert [r.partition_key for r in result.run_requests] == ["loud"]
    assert pending(site.drive, "training_complete") == []
