"""``baton campaign`` with text that is not what it should be: a byte that is not UTF-8, a
control character or an over-long display name is a usage error in one line (exit 2),
never a traceback; what the ledger holds is shown with its control characters escaped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from baton.config import CampaignConfig
from baton.ledger import Ledger, open_ledger


@pytest.fixture
def env(tmp_path: Path, ledger_url: str) -> dict[str, str]:
    return {**os.environ, "SHARED_DRIVE": str(tmp_path / "drive"), "BATON_CONFIG": "",
            "BATON_STATE_DIR": str(tmp_path / "state"), "BATON_DATABASE_URL": ledger_url}


@pytest.fixture
def ledger(ledger_url: str, env: dict[str, str]) -> Ledger:
    led = open_ledger(ledger_url, init=True)
    assert led.note_campaign("lr-sweep", None, "test", CampaignConfig()) == "registered"
    yield led
    led.close()


def baton(env: dict[str, str], *args: str | bytes) -> subprocess.CompletedProcess[str]:
    """The real command; ``args`` may hold raw bytes, as a shell passes them."""
    proc = subprocess.run([sys.executable, "-m", "baton", *args], env=env,
                          capture_output=True, timeout=120, check=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       proc.stdout.decode(errors="backslashreplace"),
                                       proc.stderr.decode(errors="backslashreplace"))


BAD = [
    (["--display-name", b"LR \xff sweep"], "--display-name", "not valid UTF-8"),
    (["--note", b"node \xe9 drained"], "--note", "not valid UTF-8"),
    (["--display-name", "LR\x1b[31m sweep"], "--display-name", "control character"),
    (["--note", "done\rFAKE"], "--note", "control character"),
    (["--display-name", "x" * 256], "--display-name", "at most 255"),
    (["--type", b"sw\xffeep", "--priority", "1"], "--type", "not allowed"),
    (["--priority", "99999999999999999999"], "--priority", "out of range"),
    (["--expected-jobs", "2147483648"], "--expected-jobs", "out of range"),
    (["--started", "0001-01-01T00:00+05:00"], "--started", "out of range"),
    (["--expected-end", "9999-12-31T23:00-05:00"], "--expected-end", "out of range"),
]


@pytest.mark.parametrize(("args", "option", "problem"), BAD,
                         ids=[f"{o}-{p}" for _, o, p in BAD])
def test_set_refuses_text_it_cannot_keep_in_one_line(
        env: dict[str, str], ledger: Ledger, args: list[str | bytes], option: str,
        problem: str) -> None:
    proc = baton(env, "campaign", "set", "lr-sweep", *args)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()[-1:]
    assert "Traceback" not in proc.stderr
    assert option in line and problem in line
    assert not any(ch in proc.stderr for ch in "\x1b\r")
    [row] = ledger.list_campaigns()
    assert (row.display_name, row.notes, row.priority, row.started_at, row.expected_end,
            row.expected_jobs) == (None, None, 0, None, None, None)  # nothing written


@pytest.mark.parametrize("command", ["activate", "deactivate", "set"])
def test_a_tag_that_is_not_a_name_is_a_usage_error(env: dict[str, str], ledger: Ledger,
                                                   command: str) -> None:
    extra = ["--priority", "1"] if command == "set" else []
    for tag in (b"lr\xff", "lr\x1b[2J"):
        proc = baton(env, "campaign", command, tag, *extra)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "\x1b" not in proc.stderr
        assert "campaign" in proc.stderr and "is not allowed" in proc.stderr


def test_list_shows_control_characters_escaped(env: dict[str, str], ledger: Ledger) -> None:
    """Text already in the ledger (written before these checks, or by hand) cannot forge
    a line of the table."""
    ledger.update_campaign("lr-sweep", active=True, display_name="LR\x1b]0;t\x07",
                           notes="ok\r 9999  fake-campaign  yes\nnext\x9b")
    proc = baton(env, "campaign", "list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2  # the header and one campaign
    assert lines[1].endswith("LR\\x1b]0;t\\x07 / ok\\r 9999  fake-campaign  yes\\nnext\\x9b")
    done = baton(env, "campaign", "set", "lr-sweep", "--priority", "2")
    assert done.returncode == 0 and "\x1b" not in done.stdout and "\\x1b" in done.stdout


def test_good_text_is_kept(env: dict[str, str], ledger: Ledger) -> None:
    proc = baton(env, "campaign", "set", "lr-sweep", "--display-name", "LR sweep \u2013 pass 1 ✓",
                 "--note", "gpu07 drained (日本)")
    assert proc.returncode == 0, proc.stderr
    [row] = ledger.list_campaigns()
    assert (row.display_name, row.notes) == ("LR sweep \u2013 pass 1 ✓", "gpu07 drained (日本)")
    assert baton(env, "campaign", "set", "lr-sweep", "--note", "").returncode == 0
    assert ledger.list_campaigns()[0].notes is None  # '' clears it
