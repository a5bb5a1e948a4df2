"""Bad input never loses, blocks or fakes a status report: a message that is not text is
kept sanitised (the reporter is told), a spool file that cannot be ingested is set aside
with its reason while the next ones go in, the terminal never obeys what a reporter wrote,
and a report kept locally says so."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from baton.cli import main
from baton.jobstatus.ingest import ingest
from baton.jobstatus.report import (
    drive_spool,
    local_spool,
    make_event,
    rejected_folder,
    report,
)
from baton.ledger import Ledger, open_ledger
from tests.conftest import require
from tests.jobstatus.test_status import read_only


@pytest.fixture
def drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    drive = tmp_path / "drive"
    drive.mkdir()
    monkeypatch.setenv("SHARED_DRIVE", str(drive))
    monkeypatch.setenv("BATON_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BATON_CONFIG", "")
    return drive


@pytest.fixture
def ledger(ledger_url: str, monkeypatch: pytest.MonkeyPatch, drive: Path) -> Ledger:
    """The ledger on SQLite and on PostgreSQL; ``baton status list`` uses it too."""
    monkeypatch.setenv("BATON_DATABASE_URL", ledger_url)
    led = open_ledger(ledger_url, init=True)
    yield led
    led.close()


def rejected(drive: Path) -> dict[str, str]:
    """What was set aside: file name -> its reason."""
    folder = drive / "status" / "rejected"
    if not folder.is_dir():
        return {}
    return {p.name: (folder / f"{p.name}.reason").read_text()
            for p in folder.iterdir() if p.suffix != ".reason"}


def shown(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


# --- a message that is not text, at the door --------------------------------------------
def report_in_a_subprocess(drive: Path, message: bytes) -> subprocess.CompletedProcess[bytes]:
    """``baton status report`` as a shell runs it: argv holds the raw bytes."""
    return subprocess.run([sys.executable, "-m", "baton", "status", "report", "--project",
                           "p", "--job", "j", "--status", "running", "--message", message],
                          env={**os.environ, "SHARED_DRIVE": str(drive)},
                          capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("how", ["argv bytes", "lone surrogate", "NUL"])
def test_a_message_that_is_not_text_is_kept_sanitised(
        drive: Path, ledger: Ledger, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    if how == "argv bytes":  # --message "$(head -c 300 /dev/urandom)", without the NULs
        proc = report_in_a_subprocess(drive, b"week \xff\xfe\x80 12 " + bytes(range(1, 256)))
        assert proc.returncode == 0
        said = proc.stderr.decode()
    else:
        assert report("p", "j", "running", message="week \ud800 12" if how == "lone surrogate"
                      else "week \x00 12")
        said = capsys.readouterr().err
    assert said.count("\n") == 1 and "U+FFFD" in said  # one line: the message was changed
    assert report("q", "k", "completed", progress=100)  # another project, later
    assert ingest(drive, ledger) == 2  # both kept: nothing blocks
    assert list(drive_spool(drive).iterdir()) == [] and rejected(drive) == {}
    [p, q] = ledger.last_reports()
    assert p.message.startswith("week \ufffd") and "12" in p.message
    assert (q.project, q.status) == ("q", "completed")
    out = shown(capsys, "status", "list")
    assert [line.split()[1] for line in out.splitlines()] == ["p", "q"]
    assert "week \ufffd" in shown(capsys, "status", "history", "--project", "p")


def test_the_api_takes_bytes_and_refuses_what_is_not_a_message(
        drive: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    assert report("p", "j", "running", message=b"bytes \xff ok")  # type: ignore[arg-type]
    assert "U+FFFD" in capsys.readouterr().err
    for bad in (["a", "list"], {"a": 1}, 3.5):
        assert report("p", "j", "running", message=bad) is False  # type: ignore[arg-type]
        assert "message" in capsys.readouterr().err
    assert ingest(drive, ledger) == 1
    assert [r.message for r in ledger.last_reports()] == ["bytes \ufffd ok"]


@pytest.mark.parametrize("progress", [10**400, float("nan"), "forty", [40], 10**5000],
                         ids=["huge", "nan", "text", "list", "too-many-digits"])
def test_the_api_refuses_a_progress_that_is_not_a_percentage_without_raising(
        drive: Path, progress: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert report("p", "j", "running", progress=progress) is False  # type: ignore[arg-type]
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("baton status: not reported:") and "progress" in line
    assert not drive_spool(drive).exists()


def test_a_long_message_is_cut_and_the_reporter_told(
        drive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report("p", "j", "running", message="x" * 2500)
    assert "2000" in capsys.readouterr().err
    [path] = drive_spool(drive).glob("*.json")
    assert len(json.loads(path.read_text())["message"]) == 2000


# --- spool files that cannot be ingested ------------------------------------------------
def event_json(**changes: object) -> bytes:
    event = make_event("p", "j", "running", 10, "ok")
    event.update(changes)
    return json.dumps(event).encode()


BAD_FILES = {
    "not-utf8": b'{"project": "p", "job": "j", "message": "\xff\xfe"}',
    "message-a-list": event_json(message=["a", "list"]),
    "message-an-object": event_json(message={"a": 1}),
    "progress-a-list": event_json(progress=[1]),
    "host-a-list": event_json(host=["h"]),
    "time-not-a-time": event_json(time="yesterday"),
    "time-out-of-range": event_json(time="0001-01-01T00:00:00+05:00"),
    "deeply-nested": b"[" * 20_000 + b"]" * 20_000,
    "too-large": event_json(message="x" * 300_000),
    "empty": b"",
}


def test_a_spool_file_that_cannot_be_ingested_is_set_aside_and_the_next_goes_in(
        drive: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    spool = drive_spool(drive)
    spool.mkdir(parents=True)
    for i, (name, data) in enumerate(BAD_FILES.items()):
        (spool / f"0{i}-{name}.json").write_bytes(data)
    os.mkfifo(spool / "090-a-fifo.json")  # a reader of it would wait forever
    (spool / "091-a-link.json").symlink_to("/dev/zero")  # ... or read forever
    assert report("p", "j", "completed", progress=100)  # sorts after every bad file (0...)
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(ingest(drive, ledger)), daemon=True)
    worker.start()
    worker.join(120)
    if worker.is_alive():  # unblock it before failing
        with open(spool / "090-a-fifo.json", "wb"):
            pass
        pytest.fail("ingestion blocked on a spool file")
    assert done == [1]
    assert [r.status for r in ledger.last_reports()] == ["completed"]
    assert list(spool.iterdir()) == []
    aside = rejected(drive)
    assert sorted(aside) == sorted([f"0{i}-{n}.json" for i, n in enumerate(BAD_FILES)]
                                   + ["090-a-fifo.json", "091-a-link.json"])
    assert all(reason.count("\n") == 1 for reason in aside.values())  # one line each
    assert "UnicodeDecodeError" in aside["00-not-utf8.json"]
    assert "message" in aside["01-message-a-list.json"]
    assert "host" in aside["04-host-a-list.json"]
    assert "not a regular file" in aside["090-a-fifo.json"]
    assert "not a regular file" in aside["091-a-link.json"]
    assert "OverflowError" in aside["06-time-out-of-range.json"]
    assert "larger than" in aside["08-too-large.json"]
    capsys.readouterr()  # ingestion logged each file it set aside
    assert main(["status", "list"]) == 0  # nothing left to set aside: only the summary
    out, err = capsys.readouterr()
    assert [line.split()[3] for line in out.splitlines()] == ["completed"]
    assert err.count("\n") == 1 and f"{len(aside)} status report file(s)" in err
    assert str(rejected_folder(drive)) in err


def test_a_spool_file_name_is_shown_escaped(drive: Path, ledger: Ledger,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The name of a file set aside goes to the log (stderr for ``baton status list``)."""
    spool = drive_spool(drive)
    spool.mkdir(parents=True)
    (spool / "0-\x1b[2J\rforged.json").write_bytes(b"[]")
    assert main(["status", "list"]) == 0
    err = capsys.readouterr().err
    assert "0-\\x1b[2J\\rforged.json" in err and "\x1b" not in err and "\r" not in err
    assert list(rejected_folder(drive).iterdir())  # set aside all the same


def test_list_shows_the_ledger_when_the_spool_cannot_be_listed(
        drive: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An I/O error of the network filesystem listing the spool (EIO, the one call that
    cannot be made to fail for real here) is said in one line; what the ledger holds is
    still shown."""
    assert report("p", "j", "running")
    assert ingest(drive, ledger) == 1
    assert report("p", "j", "completed")
    real_iterdir = Path.iterdir

    def iterdir(self: Path):
        if self == drive_spool(drive):
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert main(["status", "list"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[3] for line in out.splitlines()] == ["running"]
    assert err.count("\n") == 1 and "Input/output error" in err and "not ingested" in err


@pytest.mark.parametrize("field", ["message", "host"])
@pytest.mark.parametrize("bad", ["\ud800", "\x00", "\udcff\udcfe"])
def test_a_spooled_event_with_text_no_database_keeps_is_ingested_sanitised(
        drive: Path, ledger: Ledger, field: str, bad: str) -> None:
    """What an older reporter (or another writer) spooled: JSON may spell a lone surrogate
    or NUL (``"\\ud800"``, ``"\\u0000"``)."""
    spool = drive_spool(drive)
    spool.mkdir(parents=True)
    (spool / "1-old.json").write_bytes(event_json(**{field: f"a{bad}b"}))
    assert report("q", "k", "started")
    assert ingest(drive, ledger) == 2
    assert rejected(drive) == {}
    [p, _] = ledger.last_reports()
    if field == "message":
        assert p.message == "a" + "\ufffd" * len(bad) + "b"


@pytest.mark.parametrize("message", ["a\ud800", "a\x00", "out-of-range time"])
def test_a_row_the_database_refuses_is_a_value_error(ledger: Ledger, message: str) -> None:
    """The ledger's own guard, under the door's: a row it cannot store raises ValueError
    (which ingestion sets aside), never a driver error that would stop every tick. (SQLite
    keeps NUL; PostgreSQL does not.)"""
    from datetime import UTC, datetime, timedelta, timezone

    row = dict(event_id="0" * 32, project="p", job="j", status="running", progress=None,
               message=message, reported_at=datetime.now(UTC), host="h",
               ingested_at=datetime.now(UTC))
    if message == "out-of-range time":
        row["reported_at"] = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    if message == "a\x00" and ledger.engine.dialect.name == "sqlite":
        assert ledger.add_status_event(row) is True
        return
    with pytest.raises(ValueError, match="cannot be stored"):
        ledger.add_status_event(row)
    assert ledger.add_status_event({**row, "message": "fine", "reported_at": datetime.now(UTC)})


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"no": "id"}', b"\xff", b"[" * 20_000])
def test_a_bad_file_in_the_local_spool_does_not_stop_forwarding(
        tmp_path: Path, drive: Path, ledger: Ledger, content: bytes) -> None:
    """The local spool is ingested too, into the drive's: a file there that is no event is
    set aside (``.bad``) and the events kept behind it are forwarded."""
    assert report("p", "j", "started", drive=tmp_path / "not-mounted")  # kept locally
    (local_spool() / "0-bad.json").write_bytes(content)  # sorts first
    assert report("p", "j", "completed")  # the drive answers: forwards what was kept
    assert [p.name for p in local_spool().iterdir()] == ["0-bad.bad"]
    assert ingest(drive, ledger) == 2
    assert [r.status for r in ledger.status_history("p")] == ["started", "completed"]


# --- the terminal ------------------------------------------------------------------------
FORGED = "done\x1b[2K\rFORGED 100%\n2026-01-01T00:00:00Z  other  job  failed\x1b]0;t\x07\x9b"


def test_list_and_history_show_control_characters_escaped(
        drive: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    assert report("p", "j", "running", progress=5, message=FORGED)
    capsys.readouterr()
    for argv in (("status", "list"), ("status", "history", "--project", "p")):
        out = shown(capsys, *argv)
        assert out.count("\n") == 1  # one report, one line
        assert "\\x1b[2K\\rFORGED 100%\\n2026" in out and "\\x07\\x9b" in out
        assert not any(ch in out for ch in "\x1b\r\x07\x9b")


def test_ignored_arguments_are_echoed_escaped(drive: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "report", "--project", "p", "--job", "j", "--status", "running",
                 "--colour\x1b[31m", "red\rX"]) == 0
    err = capsys.readouterr().err
    assert "\\x1b[31m" in err and "red\\rX" in err and "\x1b" not in err and "\r" not in err


@pytest.mark.parametrize("option", ["--project", "--job"])
@pytest.mark.parametrize("value", ["p\udcff", "p\x1b[2J", "x; rm"])
def test_history_refuses_a_name_no_report_can_have(
        drive: Path, ledger: Ledger, option: str, value: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["status", "history", "--project", "p", option, value]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2  # a usage error, argparse's convention
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\x1b" not in err and "is not allowed" in err


@pytest.mark.parametrize("limit", ["99999999999999999999", "-1", "0", "ten"])
def test_history_refuses_a_limit_that_is_not_a_count(
        drive: Path, ledger: Ledger, limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", "history", "--project", "p", "--limit", limit])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--limit" in err.splitlines()[-1]


# --- what the reporter is told ----------------------------------------------------------
def test_help_lists_the_statuses(drive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "report", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "started, running, completed, failed" in help_text


def test_a_report_kept_locally_says_so(tmp_path: Path, drive: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "not-mounted"
    assert main(["status", "report", "--project", "p", "--job", "j", "--status", "started",
                 "--drive", str(missing)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kept locally" in err and str(local_spool()) in err
    assert str(missing) in err
    assert len(list(local_spool().glob("*.json"))) == 1
    assert report("p", "j", "running")  # the drive answers: forwarded, nothing to say
    assert capsys.readouterr().err == ""
    assert list(local_spool().glob("*.json")) == []


def test_a_report_with_no_drive_says_it_was_kept_locally(
        drive: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SHARED_DRIVE")
    assert report("p", "j", "started")
    err = capsys.readouterr().err
    assert "kept locally" in err and "SHARED_DRIVE" in err


def test_a_report_to_a_hanging_drive_says_it_was_kept_locally(
        drive: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The drive's write blocks (a hung network mount: the one call that cannot be made to
    hang for real here) until the test releases it."""
    import baton.jobstatus.report as status

    release = threading.Event()
    real_write = status._write

    def write(folder: Path, event: dict) -> Path:
        if folder == drive_spool(drive):
            release.wait(30)
            raise OSError("the drive hung")
        return real_write(folder, event)

    monkeypatch.setattr(status, "_write", write)
    try:
        assert report("p", "j", "started", drive=drive)
    finally:
        release.set()
    err = capsys.readouterr().err
    assert "kept locally" in err and f"no answer within {status.DEADLINE:g} s" in err
    assert len(list(local_spool().glob("*.json"))) == 1


READ_ONLY_CLI = """
import sys
from baton.cli import main
sys.exit(main(["status", "report", "--project", "p", "--job", "j", "--status", "started",
               "--drive", sys.argv[1]]))
"""


def test_a_report_to_a_read_only_drive_says_it_was_kept_locally(
        drive: Path, tmp_path: Path) -> None:
    (drive / "status" / "spool").mkdir(parents=True)
    probe = read_only(drive, "import sys; sys.exit(0)")
    require(probe.returncode == 0, "cannot make a read-only bind mount here (needs root and "
            f"unshare -m): {probe.stderr.strip()}")
    proc = read_only(drive, READ_ONLY_CLI, dict(os.environ))
    assert proc.returncode == 0
    assert proc.stderr.count("\n") == 1 and "kept locally" in proc.stderr
    assert "Read-only file system" in proc.stderr
    assert len(list(local_spool().glob("*.json"))) == 1


BROKEN_STDERR = """
import os, sys
read, write = os.pipe()
os.close(read)
os.dup2(write, 2)  # stderr is a pipe nobody reads any more
from baton.jobstatus.report import report
print(report("p", "j", "started", drive=sys.argv[1], message="a\\udcff"))
"""


def test_a_report_never_fails_for_want_of_a_stderr(tmp_path: Path, drive: Path) -> None:
    """What the reporter is told goes to stderr if there is one: closed (``2>&-``), the
    command still exits 0 and says nothing on stdout; a broken pipe does not raise into the
    calling script."""
    missing = str(tmp_path / "not-mounted")
    closed = subprocess.run(["sh", "-c", 'exec 2>&-; exec "$@"', "sh", sys.executable, "-m",
                             "baton", "status", "report", "--project", "p", "--job", "j",
                             "--status", "started", "--drive", missing], env=os.environ,
                            capture_output=True, text=True, timeout=60, check=False)
    assert (closed.returncode, closed.stdout) == (0, "")
    broken = subprocess.run([sys.executable, "-c", BROKEN_STDERR, missing], env=os.environ,
                            capture_output=True, text=True, timeout=60, check=False)
    assert (broken.returncode, broken.stdout) == (0, "True\n")
    assert len(list(local_spool().glob("*.json"))) == 2  # both kept

