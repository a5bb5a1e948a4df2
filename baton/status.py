"""Status reports from any script: one call that never fails and never blocks.

``report()`` writes one small event file into the spool on the shared drive
(``status/spool/``) and returns; no lock, no database. If the drive is missing, read-only
or hangs, the event goes to a local spool (``$XDG_STATE_HOME/baton/status-spool``) and is
forwarded by a later call. The orchestrator ingests the spool into the ledger, each event
exactly once (by its id), keeping the history."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATUSES = ("started", "running", "completed", "failed")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEADLINE = 0.8  # seconds the call may spend on the shared drive


def local_spool() -> Path:
    base = os.environ.get("BATON_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "baton")
    return Path(base) / "status-spool"


def drive_spool(drive: str | os.PathLike[str]) -> Path:
    return Path(drive) / "status" / "spool"


def make_event(project: str, job: str, status: str, progress: float | None = None,
               message: str | None = None) -> dict[str, Any]:
    """A validated event; ValueError says what is wrong."""
    for what, value in (("project", project), ("job", job)):
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not allowed: use 1-128 characters from "
                             "A-Z a-z 0-9 . _ -, starting with a letter or digit")
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if progress is not None and not 0 <= float(progress) <= 100:
        raise ValueError(f"progress {progress!r} is not between 0 and 100")
    return {"id": uuid.uuid4().hex, "project": project, "job": job, "status": status,
            "progress": None if progress is None else float(progress),
            "message": (message or "")[:2000] or None,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "host": socket.gethostname()}


def _write(folder: Path, event: dict[str, Any]) -> Path:
    """Temp file + rename: the ingester never sees half an event."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{event['id']}.json"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(event))
    tmp.replace(folder / name)
    return folder / name


def _within(deadline: float, fn: Any) -> bool:
    """Run ``fn`` in a daemon thread; False if it raised or did not finish in time (a hung
    network mount must not hang the caller)."""
    outcome: list[bool] = []

    def go() -> None:
        try:
            fn()
            outcome.append(True)
        except Exception:
            outcome.append(False)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(deadline)
    return bool(outcome and outcome[0])


def _forward(drive: Path) -> None:
    """Move events kept locally to the drive's spool (oldest first)."""
    spool = local_spool()
    if not spool.is_dir():
        return
    target = drive_spool(drive)
    for path in sorted(spool.glob("*.json"))[:500]:
        event = json.loads(path.read_text())
        _write(target, event)  # same id: ingestion keeps it once even if sent twice
        path.unlink()


def report(project: str, job: str, status: str, progress: float | None = None,
           message: str | None = None, drive: str | os.PathLike[str] | None = None) -> bool:
    """Report a status. Never raises; returns False only for invalid arguments (the reason
    goes to stderr). The event lands on the drive, or locally until a later call."""
    try:
        event = make_event(project, job, status, progress, message)
    except (ValueError, TypeError) as exc:
        print(f"baton status: not reported: {exc}", file=sys.stderr)
        return False
    root = drive or os.environ.get("SHARED_DRIVE")
    start = time.monotonic()

    def to_drive() -> None:
        if not root or not Path(root).is_dir():  # unmounted: never create it locally
            raise FileNotFoundError(f"shared drive {root!r} is not there")
        _write(drive_spool(root), event)

    if _within(DEADLINE, to_drive):
        left = DEADLINE - (time.monotonic() - start)
        if left > 0.1:
            _within(left, lambda: _forward(Path(str(root))))
        return True
    try:
        _write(local_spool(), event)
    except OSError as exc:
        print(f"baton status: could not keep the event anywhere: {exc}", file=sys.stderr)
    return True


def main(argv: list[str]) -> int:
    """``baton status report``: always exits 0 unless ``--strict`` and the report was
    refused; a status report must not break the script that sends it."""
    import argparse

    p = argparse.ArgumentParser(prog="baton status report")
    p.add_argument("--project", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--progress", type=float)
    p.add_argument("--message")
    p.add_argument("--drive", help="the shared drive (default: $SHARED_DRIVE)")
    p.add_argument("--strict", action="store_true", help="exit 2 when the report is refused")
    try:
        args = p.parse_args(argv)
    except SystemExit:
        return 0
    ok = report(args.project, args.job, args.status, args.progress, args.message, args.drive)
    return 0 if ok or not args.strict else 2


# --- the orchestrator's side -----------------------------------------------------------------
def ingest(drive: str | os.PathLike[str], ledger: Any, limit: int = 5000) -> int:
    """Move spooled events into the ledger, each once; returns how many were new. A file
    that is not a valid event is moved to ``status/rejected/`` with the reason beside it."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from baton.ledger.engine import with_retry
    from baton.ledger.schema import status_events

    spool = drive_spool(drive)
    if not spool.is_dir():
        return 0
    new = 0
    for path in sorted(p for p in spool.iterdir() if p.suffix == ".json")[:limit]:
        try:
            raw = json.loads(path.read_text())
            event = make_event(raw["project"], raw["job"], raw["status"], raw.get("progress"),
                               raw.get("message"))
            event_id = str(raw["id"])
            if not re.fullmatch(r"[0-9a-f]{32}", event_id):
                raise ValueError(f"event id {event_id!r} is not 32 hex digits")
            reported = datetime.fromisoformat(raw["time"])
            if reported.tzinfo is None:
                raise ValueError("time has no time zone")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            rejected = Path(drive) / "status" / "rejected"
            rejected.mkdir(parents=True, exist_ok=True)
            path.replace(rejected / path.name)
            (rejected / f"{path.name}.reason").write_text(f"{type(exc).__name__}: {exc}\n")
            continue
        row = dict(event_id=event_id, project=event["project"], job=event["job"],
                   status=event["status"], progress=event["progress"],
                   message=event["message"], reported_at=reported,
                   host=str(raw.get("host", ""))[:255], ingested_at=datetime.now(UTC))

        def once(row: dict[str, Any] = row) -> bool:
            try:
                with ledger.write() as conn:
                    conn.execute(insert(status_events).values(**row))
                return True
            except IntegrityError:
                return False  # seen before (a forwarded copy): once is enough

        new += with_retry(once)
        path.unlink()
    return new


def last_reports(ledger: Any) -> list[Any]:
    """Each (project, job)'s latest report by the time it was made (a forwarded event can
    arrive after a newer one)."""
    from sqlalchemy import func, select

    from baton.ledger.schema import status_events as ev

    ranked = select(ev, func.row_number().over(
        partition_by=(ev.c.project, ev.c.job),
        order_by=(ev.c.reported_at.desc(), ev.c.id.desc())).label("n")).subquery()
    with ledger.read() as conn:
        return list(conn.execute(select(ranked).where(ranked.c.n == 1).order_by(
            ranked.c.project, ranked.c.job)).all())
