"""Status reports from any script: quick, never failing, never lost, ingested once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from baton.jobstatus.ingest import ingest
from baton.jobstatus.report import drive_spool, local_spool, report
from baton.ledger import open_ledger
from baton.ledger.schema import status_events
from tests.conftest import require

REPORTER = """
import sys
from baton.jobstatus.report import report
for i in range(100):
    assert report("proj", f"job{sys.argv[1]}", "running", progress=i, message=f"step {i}")
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("BATON_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "drive").mkdir()
    return {**os.environ, "SHARED_DRIVE": str(tmp_path / "drive"),
            "BATON_STATE_DIR": str(tmp_path / "state"), "BATON_CONFIG": ""}


def test_64_concurrent_reporters_exactly_once(tmp_path: Path, env: dict[str, str]) -> None:
    """Under load a report may miss its drive deadline and be kept locally (and, when the
    late drive write lands too, sent twice): neither may lose or double an event."""
    def one(n: int) -> int:
        return subprocess.run([sys.executable, "-c", REPORTER, str(n)], env=env,
                              timeout=300, check=False).returncode

    with ThreadPoolExecutor(max_workers=64) as pool:
        codes = list(pool.map(one, range(64)))
    assert codes == [0] * 64
    # a reporter's last events may still be in the local spool: the next call (of any
    # script on this machine) forwards them
    assert report("later", "call", "completed", drive=tmp_path / "drive")
    assert list(local_spool().glob("*.json")) == []
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)
    while ingest(tmp_path / "drive", ledger):  # bounded work per call: 5000 at most
        pass
    assert list(drive_spool(tmp_path / "drive").glob("*.json")) == []  # nothing left
    ev = status_events
    with ledger.read() as conn:
        rows, ids = conn.execute(select(func.count(), func.count(ev.c.event_id.distinct()))
                                 .where(ev.c.project == "proj")).one()
        per_job = conn.execute(select(ev.c.job, func.count(), func.count(
            ev.c.progress.distinct())).where(ev.c.project == "proj").group_by(ev.c.job)).all()
    assert (rows, ids) == (6400, 6400)
    assert len(per_job) == 64 and {(n, steps) for _, n, steps in per_job} == {(100, 100)}


HEAVY = {"sqlalchemy", "pydantic", "yaml", "dagster", "duckdb", "pyarrow", "mlflow", "numpy"}


def test_cli_is_quick_and_exits_0_without_a_drive(tmp_path: Path, env: dict[str, str]) -> None:
    bad = {**env, "SHARED_DRIVE": str(tmp_path / "not-mounted")}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "baton", "status",
                           "report", "--project", "p", "--job", "j", "--status", "started"],
                          env=bad, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0
    # quick whatever the machine's load: it loads no configuration, database or framework
    # (the import log of -X importtime: "import time: self | cumulative | module")
    loaded = {line.rsplit("|", 1)[1].strip().split(".")[0]
              for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "baton" in loaded and not loaded & HEAVY, sorted(loaded & HEAVY)
    assert not (tmp_path / "not-mounted").exists()  # never creates the missing drive
    assert len(list((tmp_path / "state" / "status-spool").glob("*.json"))) == 1
    refused = subprocess.run([sys.executable, "-m", "baton", "status", "report", "--project",
                              "x; rm", "--job", "j", "--status", "started"], env=env,
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 0 and "not allowed" in refused.stderr


def test_read_only_drive_loses_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    """A drive mounted read-only (a real read-only bind mount, in a private mount namespace
    of the reporting process): the call returns at once, exit 0, and the event is kept
    locally, then forwarded by the next call once the drive is writable."""
    drive = tmp_path / "drive"
    (drive / "status" / "spool").mkdir(parents=True)  # the write itself must fail
    probe = read_only(drive, "import sys; sys.exit(0)")
    require(probe.returncode == 0, "cannot make a read-only bind mount here (needs root and "
            f"unshare -m): {probe.stderr.strip()}")
    proc = read_only(drive, READ_ONLY_REPORTER, env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["write_error"] == "EROFS"  # the drive really was read-only
    assert out["returned"] is True and out["elapsed"] < 2  # within a second, with margin
    assert list(drive_spool(drive).glob("*.json")) == []
    assert len(list(local_spool().glob("*.json"))) == 2
    assert report("p", "j", "completed", progress=100, drive=drive)  # writable again
    assert list(local_spool().glob("*.json")) == []  # forwarded
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)
    assert ingest(drive, ledger) == 3
    with ledger.read() as conn:
        statuses = [r.status for r in conn.execute(select(status_events).order_by(
            status_events.c.reported_at))]
    assert statuses == ["started", "running", "completed"]


READ_ONLY_REPORTER = """
import errno, json, sys, time
from pathlib import Path
from baton.jobstatus.report import report
drive = Path(sys.argv[1])
try:
    (drive / "status" / "spool" / "probe").write_text("x")
    write_error = None
except OSError as exc:
    write_error = errno.errorcode.get(exc.errno)
returned, elapsed = [], []
for status, progress in (("started", None), ("running", 50)):
    start = time.monotonic()
    returned.append(report("p", "j", status, progress=progress, drive=drive))
    elapsed.append(time.monotonic() - start)
print(json.dumps({"write_error": write_error, "returned": all(returned),
                  "elapsed": max(elapsed)}))
"""


def read_only(drive: Path, code: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code drive`` with ``drive`` bind-mounted read-only over itself in a
    private mount namespace (the rest of the system keeps it writable)."""
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
              'exec "$2" -c "$3" "$1"')
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script, "sh", str(drive), sys.executable, code], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess([], 127, "", str(exc))


def test_bad_spool_files_are_set_aside(tmp_path: Path, env: dict[str, str]) -> None:
    spool = tmp_path / "drive" / "status" / "spool"
    spool.mkdir(parents=True)
    (spool / "1-bad.json").write_text('{"project": "p"}')
    report("p", "j", "started", drive=tmp_path / "drive")
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)
    assert ingest(tmp_path / "drive", ledger) == 1
    rejected = tmp_path / "drive" / "status" / "rejected"
    assert "KeyError" in (rejected / "1-bad.json.reason").read_text()
