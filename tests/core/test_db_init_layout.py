"""``baton db init`` sets up the whole site: the ledger and the drive's layout, so the
first job finds its log folder. When the layout cannot be made, no ledger is made either."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from baton.layout import DriveLayout


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120, check=False)


def site(tmp_path: Path, drive: Path) -> dict[str, str]:
    return {"BATON_CONFIG": "", "SHARED_DRIVE": str(drive),
            "BATON_STATE_DIR": str(tmp_path / "state")}


def test_db_init_creates_the_drive_layout(tmp_path: Path) -> None:
    drive = DriveLayout(tmp_path / "drive")
    proc = baton("db", "init", env=site(tmp_path, drive.root))
    assert proc.returncode == 0, proc.stderr
    assert all(folder.is_dir() for folder in drive.top_level())
    assert (drive.logs / "evaluation").is_dir() and (drive.logs / "analysis").is_dir()
    assert f"drive {drive.root}" in proc.stdout
    again = baton("db", "init", env=site(tmp_path, drive.root))  # idempotent
    assert again.returncode == 0 and "already at head" in again.stdout


def test_db_init_refuses_a_drive_it_cannot_lay_out(tmp_path: Path) -> None:
    blocker = tmp_path / "drive"
    blocker.write_text("a file where the drive belongs")
    proc = baton("db", "init", env=site(tmp_path, blocker))
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert "Traceback" not in line and len(line.splitlines()) == 1
    assert line.startswith("baton: error: ") and str(blocker) in line
    assert not (tmp_path / "state" / "ledger.db").exists()
