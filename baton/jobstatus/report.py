"""Status reports from any script: one call that never fails and never blocks.

``report()`` writes one small event file into the spool on the shared drive
(``status/spool/``) and returns; no lock, no database. If the drive is missing, read-only
or hangs, the event goes to a local spool (``$XDG_STATE_HOME/baton/status-spool``) and is
forwarded by a later call. The orchestrator ingests the spool into the ledger, each event
exactly once (by its id), keeping the history."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import stat
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.fsio import atomic_write
from baton.textsafe import printable, storable

STATUSES = ("started", "running", "completed", "failed")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEADLINE = 0.8  # seconds the call may spend on the shared drive
MESSAGE_LIMIT = 2000  # characters of a message kept
FILE_LIMIT = 64 * 1024  # bytes of a spool file: an event is a few KB at most
log = logging.getLogger(__name__)


class NotAnEvent(ValueError):
    """A spool file that is no event whatever is in it (not a regular file, too large)."""


def _say(line: str) -> None:
    """One line to stderr if there is one: closed (``2>&-``, where print would fall back to
    stdout) or a broken pipe, the report has still gone through and must not fail."""
    if sys.stderr is None:
        return
    with contextlib.suppress(OSError, ValueError):
        print(f"baton status: {line}", file=sys.stderr, flush=True)


def local_spool() -> Path:
    base = os.environ.get("BATON_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "baton")
    return Path(base) / "status-spool"


def drive_spool(drive: str | os.PathLike[str]) -> Path:
    return Path(drive) / "status" / "spool"


def rejected_folder(drive: str | os.PathLike[str]) -> Path:
    """Where ingestion sets aside the spool files it cannot take, each with a ``.reason``."""
    return Path(drive) / "status" / "rejected"


def clean_message(message: object) -> tuple[str | None, str | None]:
    """The message as it is kept, and what was changed to keep it (None: nothing). What no
    database can store (bytes that are not UTF-8, lone surrogates, NUL) becomes U+FFFD
    rather than stopping the report; bytes are decoded as UTF-8; the rest is cut at
    ``MESSAGE_LIMIT`` characters. TypeError for anything that is not text."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "surrogateescape")
    if message is None or message == "":
        return None, None
    if not isinstance(message, str):
        raise TypeError(f"message must be text, not {type(message).__name__}")
    changed = []
    if len(message) > MESSAGE_LIMIT:  # cut first: the call stays quick for any length
        changed.append(f"cut from {len(message)} to {MESSAGE_LIMIT} characters")
        message = message[:MESSAGE_LIMIT]
    kept = storable(message)
    replaced = sum(a != b for a, b in zip(message, kept, strict=True))
    if replaced:
        changed.insert(0, f"{replaced} character(s) that are not valid text (bytes that are "
                       "not UTF-8, lone surrogates, NUL) replaced by U+FFFD")
    return kept, "; ".join(changed) or None


def make_event(project: str, job: str, status: str, progress: float | None = None,
               message: str | None = None) -> dict[str, Any]:
    """A validated event, its message made storable (:func:`clean_message`); ValueError or
    TypeError says what is wrong."""
    for what, value in (("project", project), ("job", job)):
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not allowed: use 1-128 characters from "
                             "A-Z a-z 0-9 . _ -, starting with a letter or digit")
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    percent = None if progress is None else _percent(progress)
    return {"id": uuid.uuid4().hex, "project": project, "job": job, "status": status,
            "progress": percent,
            "message": clean_message(message)[0],
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "host": storable(socket.gethostname())[:255]}


def _percent(progress: object) -> float:
    """``progress`` as a number from 0 to 100; ValueError naming it otherwise."""
    small = isinstance(progress, float | str) or (isinstance(progress, int)
                                                   and progress.bit_length() < 64)
    shown = (repr(progress)[:40] if small else f"(a {progress.bit_length()}-bit int)"
             if isinstance(progress, int) else f"(a {type(progress).__name__})")
    try:
        value = float(progress)  # type: ignore[arg-type]
    except OverflowError:
        value = math.inf
    except (TypeError, ValueError):
        raise ValueError(f"progress {shown} is not a number") from None
    if not 0 <= value <= 100:  # NaN is not either
        raise ValueError(f"progress {shown} is not between 0 and 100")
    return value


def read_spool_file(path: Path) -> bytes:
    """The bytes of one spool file, without following a link or waiting on a FIFO or a
    device (a reader of one would block every later event). NotAnEvent for what is not a
    regular file of at most ``FILE_LIMIT`` bytes; OSError for what cannot be read now."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise NotAnEvent("not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the lstat
            raise NotAnEvent("not a regular file")
        data = f.read(FILE_LIMIT + 1)
    if len(data) > FILE_LIMIT:
        raise NotAnEvent(f"larger than {FILE_LIMIT} bytes")
    return data


def _write(folder: Path, event: dict[str, Any]) -> Path:
    """Atomically (the ingester never sees half an event), tried once: the caller has its
    own deadline and its local fallback."""
    name = f"{time.time_ns()}-{event['id']}.json"
    return atomic_write(folder / name, json.dumps(event).encode(), attempts=1)


def _within(deadline: float, fn: Any) -> str | None:
    """Run ``fn`` in a daemon thread (a hung network mount must not hang the caller); None
    if it finished in time, else why not."""
    outcome: list[str | None] = []

    def go() -> None:
        try:
            fn()
            outcome.append(None)
        except Exception as exc:
            outcome.append(str(exc) or type(exc).__name__)

    thread = threading.Thread(target=go, daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to spare: do not risk hanging on the drive
        return "no thread to spare for the drive"
    thread.join(deadline)
    return outcome[0] if outcome else f"no answer within {deadline:g} s"


def _forward(drive: Path) -> None:
    """Move events kept locally to the drive's spool (oldest first). Another call may be
    forwarding the same files: a file gone is theirs, a copy sent twice is kept once."""
    spool = local_spool()
    if not spool.is_dir():
        return
    target = drive_spool(drive)
    for path in sorted(spool.glob("*.json"))[:500]:
        try:
            event = json.loads(read_spool_file(path).decode())
            if not isinstance(event, dict) or not re.fullmatch(r"[0-9a-f]{32}",
                                                                str(event.get("id"))):
                raise NotAnEvent("not an event")
        except FileNotFoundError:
            continue  # forwarded by another call
        except (ValueError, RecursionError):  # never written by report(): set aside, go on
            path.replace(path.with_suffix(".bad"))
            continue
        except OSError:  # not readable now: the next call tries again, the others go on
            continue
        _write(target, event)  # same id: ingestion keeps it once even if sent twice
        path.unlink(missing_ok=True)


class _Handoff:
    """Who has the event: the drive write may finish after the caller gave up on it and
    kept the event locally; then the late drive write takes the local copy back, so that
    the event is not sent twice."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on_drive = False
        self.kept: Path | None = None

    def drive_written(self) -> None:
        with self.lock:
            self.on_drive = True
            kept, self.kept = self.kept, None
        if kept is not None:
            kept.unlink(missing_ok=True)  # may be forwarded already: same id, kept once

    def keep_locally(self, event: dict[str, Any]) -> bool:
        """Keep the event in the local spool; False if the drive write landed after all."""
        with self.lock:
            if not self.on_drive:
                self.kept = _write(local_spool(), event)
            return self.kept is not None


def report(project: str, job: str, status: str, progress: float | None = None,
           message: str | None = None, drive: str | os.PathLike[str] | None = None) -> bool:
    """Report a status. Never raises; returns False only for invalid arguments (the reason
    goes to stderr). The event lands on the drive, or locally until a later call; one line
    on stderr says so when it was kept locally or its message had to be changed."""
    try:
        message, changed = clean_message(message)
        event = make_event(project, job, status, progress, message)
    except Exception as exc:  # a refusal, whatever the arguments are
        _say(f"not reported: {printable(exc)}")
        return False
    said = [f"message: {changed}"] if changed else []
    try:
        kept = _deliver(event, drive or os.environ.get("SHARED_DRIVE"))
        if kept:
            said.insert(0, kept)
    except Exception as exc:  # a status report never breaks its caller
        said.insert(0, f"could not keep the event anywhere: {exc}")
    if said:
        _say(printable("; ".join(said)))
    return True


def _deliver(event: dict[str, Any], root: str | os.PathLike[str] | None) -> str | None:
    """To the drive within DEADLINE, else to the local spool; then forward what was kept
    locally if there is time left. Returns what to tell the reporter when the event was
    kept locally (None: it is on the drive)."""
    start = time.monotonic()
    handoff = _Handoff()

    def to_drive() -> None:
        if not root:
            raise FileNotFoundError("no shared drive given (--drive or $SHARED_DRIVE)")
        if not Path(root).is_dir():  # unmounted: never create it locally
            raise FileNotFoundError(f"the shared drive {str(root)!r} is not there")
        _write(drive_spool(root), event)
        handoff.drive_written()

    problem = _within(DEADLINE, to_drive)
    if problem is None:
        left = DEADLINE - (time.monotonic() - start)
        if left > 0.1:
            _within(left, lambda: _forward(Path(str(root))))
        return None
    if not handoff.keep_locally(event):
        return None  # the drive write landed just now after all
    return (f"kept locally in {local_spool()} ({problem}); a later report from this "
            "machine sends it on")


def main(argv: list[str]) -> int:
    """``baton status report``: exits 0 whatever happens, so that a status report never
    breaks the script that sends it; a refused report (bad arguments, a bad name) is
    explained on stderr. ``--strict`` makes a refusal exit 2."""
    strict = "--strict" in argv
    try:
        return _main(argv, strict)
    except SystemExit as exc:  # argparse: --help (0) or an argument error (2, said on stderr)
        return 2 if strict and exc.code not in (0, None) else 0
    except Exception as exc:  # never fails
        _say(f"not reported: {printable(exc)}")
        return 2 if strict else 0


def _main(argv: list[str], strict: bool) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="baton status report")
    p.add_argument("--project", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--status", required=True, help=f"one of {', '.join(STATUSES)}")
    p.add_argument("--progress", type=float)
    p.add_argument("--message", help=f"free text, at most {MESSAGE_LIMIT} characters kept")
    p.add_argument("--drive", help="the shared drive (default: $SHARED_DRIVE)")
    p.add_argument("--strict", action="store_true", help="exit 2 when the report is refused")
    args, unknown = p.parse_known_args(argv)
    if unknown:
        if strict:
            p.error(f"unrecognized arguments: {printable(' '.join(unknown))}")
        _say(f"ignoring unrecognized arguments: {printable(' '.join(unknown))}")
    ok = report(args.project, args.job, args.status, args.progress, args.message, args.drive)
    return 0 if ok or not strict else 2
