"""`baton signal analysis-complete` writes only what the analysis sensor will accept: a
report or output off the shared drive is refused in one line (exit 1), nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from baton.config import Config
from baton.inbox import pending
from baton.signals import read_signal


def analysis_cmd(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHARED_DRIVE": str(config.drive.root),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": ""}
    for var in ("MLFLOW_TRACKING_URI", "BATON_SIGNAL_DIR", "SLURM_JOB_ID",
                "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "baton", "signal", "analysis-complete",
                           *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_a_report_off_the_drive_is_refused(config: Config, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "report.html"
    outside.parent.mkdir()
    outside.write_text("<html></html>")
    reports = config.drive.experiment("exp1").reports_dir
    for args in (["--report", str(outside)],
                 ["--report", str(reports / "report.html"), "--output", str(outside)]):
        run = analysis_cmd(config, "--experiment", "exp1", *args)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("baton: error: "), run.stderr
        assert "outside the shared drive" in lines[0] and str(outside) in lines[0]
        assert run.stdout == ""
    assert not (reports / ".analysis_complete").exists()
    assert pending(config.drive, "analysis_complete") == []


def test_a_signal_folder_off_the_drive_is_refused(config: Config, tmp_path: Path) -> None:
    """BATON_SIGNAL_DIR off the drive: the sensors would never see the signal."""
    reports = config.drive.experiment("exp1").reports_dir
    reports.mkdir(parents=True)
    (reports / "report.html").write_text("<html></html>")
    env = {**os.environ, "SHARED_DRIVE": str(config.drive.root),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "",
           "BATON_SIGNAL_DIR": str(tmp_path / "elsewhere")}
    run = subprocess.run([sys.executable, "-m", "baton", "signal", "analysis-complete",
                          "--experiment", "exp1", "--report", str(reports / "report.html")],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert run.returncode == 1, run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "outside the shared drive" in lines[0], run.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_report_on_the_drive_is_announced(config: Config) -> None:
    reports = config.drive.experiment("exp1").reports_dir
    reports.mkdir(parents=True)
    (reports / "report.html").write_text("<html></html>")
    run = analysis_cmd(config, "--experiment", "exp1", "--report",
                       str(reports / "report.html"))
    assert run.returncode == 0, run.stderr
    path = Path(run.stdout.strip())
    assert path == reports / ".analysis_complete"
    assert read_signal(path, config.drive).signal.report_path == str(reports / "report.html")
