"""``baton supervise retry --mem/--time``: resources Slurm would read as "everything" or
cannot read are refused in one line, before any supervision is recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from baton.config import Config
from baton.errors import BatonError
from baton.ledger import open_ledger
from baton.slurm.local import LocalBackend
from baton.supervision.actions import retry


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120, check=False)


@pytest.mark.parametrize(("extra", "says"), [
    (("--mem", "lots"), "invalid memory 'lots'"),
    (("--mem", "0G"), "all of a node's memory"),
    (("--time=-1",), "invalid time '-1'"),
    (("--time", "0"), "no limit"),
])
def test_bad_resources_are_one_line_with_exit_2(tmp_path: Path, extra: tuple[str, ...],
                                                says: str) -> None:
    env = {"BATON_CONFIG": "", "SHARED_DRIVE": str(tmp_path / "drive"),
           "BATON_STATE_DIR": str(tmp_path / "state"), "BATON_SLURM_BACKEND": "local"}
    assert baton("db", "init", env=env).returncode == 0
    proc = baton("supervise", "retry", "1", *extra, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and says in proc.stderr.strip().splitlines()[-1]
    ledger = open_ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.db'}", init=True)
    assert ledger.list_supervisions() == []


@pytest.mark.parametrize(("mem_mb", "time_s"), [(0, None), (-5, None), (None, 0),
                                                 (None, -60)])
def test_retry_refuses_empty_resources_before_recording(config: Config, ledger_url: str,
                                                        mem_mb: float | None,
                                                        time_s: int | None) -> None:
    ledger = open_ledger(ledger_url, init=True)
    with pytest.raises(BatonError, match="must be positive"):
        retry(config, ledger, LocalBackend(config.state_dir / "local"), 1, mem_mb=mem_mb,
              time_s=time_s)
    assert ledger.list_supervisions() == []


@pytest.mark.parametrize("argv", [("list", "--limit=-1"), ("list", "--limit", "0"),
                                  ("show", "0"), ("show", "99999999999"),
                                  ("retry", "-1"), ("cancel", "2147483648")])
def test_ids_and_limits_outside_the_ledger_range_are_usage_errors(
        tmp_path: Path, ledger_url: str, argv: tuple[str, ...]) -> None:
    """A supervision id is a positive integer the ledger can hold (PostgreSQL's int4): one
    outside that range is a usage error, not a database traceback or an empty answer."""
    env = {"BATON_CONFIG": "", "SHARED_DRIVE": str(tmp_path / "drive"),
           "BATON_STATE_DIR": str(tmp_path / "state"), "BATON_DATABASE_URL": ledger_url,
           "BATON_SLURM_BACKEND": "local"}
    assert baton("db", "init", env=env).returncode == 0
    proc = baton("supervise", *argv, env=env)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    line = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and "out of range (1..2147483647)" in line, line
