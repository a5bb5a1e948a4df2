"""``baton status``: ``report`` in every form the command line allows never fails and loads
neither Dagster nor SQLAlchemy; ``list`` and ``history`` show what was ingested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from baton.cli import main
from baton.jobstatus.report import _write, drive_spool, local_spool, make_event


@pytest.fixture
def drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    drive = tmp_path / "drive"
    drive.mkdir()
    monkeypatch.setenv("SHARED_DRIVE", str(drive))
    monkeypatch.setenv("BATON_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BATON_CONFIG", "")
    from baton.ledger import open_ledger

    open_ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.db'}", init=True).close()
    return drive


def spooled(drive: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(drive_spool(drive).glob("*.json"))]


REPORT = ["status", "report", "--project", "p", "--job", "j", "--status", "running"]


@pytest.mark.parametrize("prefix", [
    [], ["-v"], ["--verbose"], ["--config", "/nonexistent/baton.yaml"],
    ["--config=/nonexistent/baton.yaml", "-v"], ["-v", "--config", "/nonexistent/baton.yaml"],
    ["--conf", "/nonexistent/baton.yaml"],
])
def test_report_after_global_options(drive: Path, prefix: list[str]) -> None:
    """Global options before ``status report`` take the same never-failing path (the
    report reads no configuration: a config that does not exist changes nothing)."""
    assert main([*prefix, *REPORT, "--progress", "40"]) == 0
    [event] = spooled(drive)
    assert (event["project"], event["job"], event["status"], event["progress"]) == (
        "p", "j", "running", 40.0)


@pytest.mark.parametrize("args", [
    ["status", "report"],  # nothing given
    ["status", "report", "--project", "p", "--job", "j"],  # no --status
    [*REPORT, "--progress", "forty"],
    [*REPORT, "--progress", "140"],
    ["--config", "x.yaml", "status", "report", "--project", "x; rm -rf", "--job", "j",
     "--status", "running"],
    ["-v", "status", "report", "--project", "p", "--job", "j", "--status", "sleeping"],
])
def test_bad_arguments_exit_0_and_say_why(drive: Path, args: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 0
    assert capsys.readouterr().err.strip()  # the reason is on stderr
    assert spooled(drive) == [] and not local_spool().exists()  # nothing reported
    assert main([*args, "--strict"]) == 2


def test_unknown_options_are_ignored_with_a_warning(drive: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REPORT, "--colour", "red"]) == 0
    assert "ignoring unrecognized arguments: --colour red" in capsys.readouterr().err
    assert len(spooled(drive)) == 1
    assert main([*REPORT, "--colour", "red", "--strict"]) == 2


def test_help_exits_0(drive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "status", "report", "--help"]) == 0
    assert "--project" in capsys.readouterr().out


# what the real entry point (``python -m baton``) loaded, printed when the process ends
LOADED = """
import atexit, json, runpy, sys
atexit.register(lambda: print(json.dumps(sorted(
    m for m in sys.modules if m.split(".")[0] in ("dagster", "sqlalchemy", "pydantic")))))
sys.argv = ["baton", *sys.argv[1:]]
runpy.run_module("baton", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("prefix", [[], ["--config", "/nonexistent/baton.yaml", "-v"]])
def test_report_loads_no_dagster_and_no_sqlalchemy(drive: Path, prefix: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", LOADED, *prefix, *REPORT], env=os.environ,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []
    assert len(spooled(drive)) == 1  # it did report


def test_the_loaded_check_sees_what_other_commands_load(drive: Path) -> None:
    """The check above would see a heavy import: ``baton status list`` opens the ledger."""
    proc = subprocess.run([sys.executable, "-c", LOADED, "status", "list"], env=os.environ,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "sqlalchemy" in json.loads(proc.stdout.splitlines()[-1])


# --- list and history -------------------------------------------------------------------
T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


def spool(drive: Path, project: str, job: str, status: str, minutes: int,
          progress: float | None = None, message: str | None = None) -> None:
    event = make_event(project, job, status, progress, message)
    event["time"] = (T0 + timedelta(minutes=minutes)).isoformat()
    _write(drive_spool(drive), event)


def lines(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """Each printed line as (time, project, job, status, ...)."""
    return [line.split() for line in capsys.readouterr().out.splitlines()]


def test_list_and_history(drive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "list"]) == 0
    assert capsys.readouterr().out == "no status reports\n"
    # written out of order: the time each report was made decides, not the ingest order
    spool(drive, "mosquito", "prep", "running", 10, 40, "week 12")
    spool(drive, "mosquito", "prep", "started", 0)
    spool(drive, "mosquito", "train", "started", 5)
    spool(drive, "mosquito", "prep", "completed", 20, 100)
    spool(drive, "nightly", "fetch", "failed", 3, message="no network")
    spool(drive, "mosquito", "train", "running", 30, 10)

    assert main(["status", "list"]) == 0  # ingests first, then each job's last report
    assert lines(capsys) == [
        ["2026-03-01T08:20:00Z", "mosquito", "prep", "completed", "100.0%"],
        ["2026-03-01T08:30:00Z", "mosquito", "train", "running", "10.0%"],
        ["2026-03-01T08:03:00Z", "nightly", "fetch", "failed", "no", "network"],
    ]
    assert list(drive_spool(drive).glob("*.json")) == []

    assert main(["status", "history", "--project", "mosquito"]) == 0  # oldest first
    assert [(r[0][11:16], r[2], r[3]) for r in lines(capsys)] == [
        ("08:00", "prep", "started"), ("08:05", "train", "started"),
        ("08:10", "prep", "running"), ("08:20", "prep", "completed"),
        ("08:30", "train", "running")]
    assert main(["status", "history", "--project", "mosquito", "--job", "prep"]) == 0
    assert [(r[2], r[3]) for r in lines(capsys)] == [
        ("prep", "started"), ("prep", "running"), ("prep", "completed")]
    assert main(["status", "history", "--project", "mosquito", "--limit", "2"]) == 0
    assert [(r[0][11:16], r[2]) for r in lines(capsys)] == [  # the latest two
        ("08:20", "prep"), ("08:30", "train")]
    assert main(["status", "history", "--project", "mosquito", "--job", "prep",
                 "--limit", "1"]) == 0
    assert [(r[2], r[3]) for r in lines(capsys)] == [("prep", "completed")]
    assert main(["status", "history", "--project", "nobody"]) == 0
    assert capsys.readouterr().out == "no status reports\n"
