"""The call budget's own promises, without Slurm: a long wait is logged once, a state
folder that cannot be written never stops a call, a damaged count starts afresh, and a
bad setting is one line naming it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from baton.alert_rules import slurm_calls_rule
from baton.config import load_config
from baton.errors import ConfigError
from baton.slurm import budget
from baton.slurm.budget import CallBudget, read_calls


@pytest.fixture(autouse=True)
def _fresh_log_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "_last_logged", {})


def test_over_budget_calls_wait_their_turn_and_a_long_wait_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    waits: list[float] = []
    now = [1000.0]
    bucket = CallBudget(tmp_path, per_second=0.05, burst=2, process="daemon",
                        clock=lambda: now[0], sleep=waits.append)  # the waits, not slept
    with caplog.at_level(logging.INFO, logger="baton.slurm.budget"):
        for _ in range(4):
            bucket.acquire("sacct")
    assert waits == pytest.approx([20.0, 40.0])  # the burst, then one per 20 s
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "sacct waits 20s" in logged[0], logged
    now[0] += 100  # the queue has drained and two tokens came back
    assert bucket.acquire("squeue") == 0.0
    assert read_calls(tmp_path) == {("sacct", "daemon"): 4, ("squeue", "daemon"): 1}


def test_an_unwritable_state_folder_never_stops_a_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the state folder should be (root writes anywhere else)")
    bucket = CallBudget(state, 0.5, 10, "command")
    assert bucket.acquire("squeue") == 0.0
    assert bucket.acquire("squeue") == 0.0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "neither paced nor counted" in warned[0], warned


def test_a_damaged_count_starts_afresh_and_the_reader_says_so(tmp_path: Path) -> None:
    (tmp_path / budget.CALLS_FILE).write_text('{"calls": [1]}')
    with pytest.raises(ValueError, match="is not baton's Slurm call count"):
        read_calls(tmp_path)
    CallBudget(tmp_path, 0.5, 10, "run").acquire("sbatch")
    assert read_calls(tmp_path) == {("sbatch", "run"): 1}
    assert json.loads((tmp_path / budget.CALLS_FILE).read_text())["tokens"] == 9


@pytest.mark.parametrize(("text", "key"), [
    ("slurm:\n  calls_per_second: 0\n", "slurm.calls_per_second"),
    ("slurm:\n  calls_burst: 0\n", "slurm.calls_burst"),
    ("alerts:\n  slurm_calls_fraction: 1\n", "alerts.slurm_calls_fraction")])
def test_a_bad_budget_setting_names_its_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert key in str(err.value) and "\n" not in str(err.value)


def test_the_default_budget_is_well_under_slurms_rate_limit() -> None:
    config = load_config(path=None, env={})
    assert (config.slurm.calls_per_second, config.slurm.calls_burst) == (0.5, 10)
    assert config.alerts.slurm_calls_fraction == 0.8


def test_the_alert_follows_the_budget_and_its_fraction(tmp_path: Path) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text("slurm:\n  calls_per_second: 2\nalerts:\n  slurm_calls_fraction: 0.3\n")
    rule = slurm_calls_rule(load_config(path, env={}))
    assert rule["expr"].endswith("[10m]))) > 0.6"), rule["expr"]
    assert "over 30% of its budget (slurm.calls_per_second 2)" in rule["annotations"]["summary"]
