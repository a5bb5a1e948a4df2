"""``baton config show`` prints the configuration in effect: the ledger URL baton will use
(the default SQLite one when none is set), never its password, and creates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def show(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "baton", "config", "show"], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout
    return yaml.safe_load(proc.stdout)


def test_shows_the_default_ledger_url(tmp_path: Path) -> None:
    env = {"SHARED_DRIVE": str(tmp_path / "drive"), "BATON_STATE_DIR": str(tmp_path / "state"),
           "BATON_CONFIG": "", "BATON_DATABASE_URL": ""}
    doc = show(env)
    assert doc["database_url"] == f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"
    assert not (tmp_path / "state").exists()


def test_shows_a_postgres_url_without_its_password(tmp_path: Path) -> None:
    env = {"SHARED_DRIVE": str(tmp_path / "drive"), "BATON_STATE_DIR": str(tmp_path / "state"),
           "BATON_CONFIG": "",
           "BATON_DATABASE_URL": "postgresql://baton:s3cret@db.example:5432/baton"}
    assert show(env)["database_url"] == "postgresql://baton:***@db.example:5432/baton"
