"""Headless Chromium (Debian's package) for tests that look at a web UI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000", "--virtual-time-budget=20000"]


def chromium() -> str:
    path = shutil.which("chromium")
    require(path is not None, "chromium is not installed (apt-get install chromium)")
    assert path is not None
    return path


def dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran."""
    proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(url: str, name: str, profile: Path) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                           f"--screenshot={out}", url], capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0 and out.stat().st_size > 10_000, proc.stderr[-2000:]
    return out
