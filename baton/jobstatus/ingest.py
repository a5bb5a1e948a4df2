"""Ingestion of status reports: the spool on the shared drive into the ledger, each event
exactly once (by its id), keeping the history. Runs in the orchestrator only."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.fsio import atomic_write
from baton.jobstatus.report import (
    NotAnEvent,
    drive_spool,
    make_event,
    read_spool_file,
    rejected_folder,
)
from baton.ledger import Ledger
from baton.textsafe import printable, storable

log = logging.getLogger(__name__)


def ingest(drive: str | os.PathLike[str], ledger: Ledger, limit: int = 5000) -> int:
    """Move spooled events into the ledger, each once; returns how many were new.

    Several ingesters may run at once (the sensor, ``baton status list``): a file another
    one took is skipped, and the event id keeps each event once. A file that is not a valid
    event, or that the ledger cannot store, is moved to ``status/rejected/`` with the
    reason beside it and the next file goes in (one bad file must never stop the others);
    a file that cannot be read now (a transient network filesystem error) stays for the
    next call. Only a ledger that cannot be written at all stops the call."""
    spool = drive_spool(drive)
    if not spool.is_dir():
        return 0
    new = 0
    for path in sorted(p for p in spool.iterdir() if p.suffix == ".json")[:limit]:
        try:
            data = read_spool_file(path)
        except FileNotFoundError:
            continue  # taken by another ingester
        except NotAnEvent as exc:
            _reject(Path(drive), path, exc)
            continue
        except OSError as exc:
            log.warning("status event %s is not readable now, left for the next ingest: %s",
                        printable(path), printable(exc))
            continue
        try:
            row = _event_row(data)
        except Exception as exc:  # pure parsing: whatever fails, the file is to blame
            _reject(Path(drive), path, exc)
            continue
        try:
            new += ledger.add_status_event(row)  # seen before (a copy, another ingester)
        except ValueError as exc:  # this row, not the ledger (baton.ledger.status_events)
            _reject(Path(drive), path, exc)
            continue
        path.unlink(missing_ok=True)  # another ingester may have removed it already
    return new


def set_aside_files(drive: str | os.PathLike[str]) -> int:
    """How many spool files wait in ``status/rejected/`` for an operator (their reasons
    not counted); 0 while the folder does not exist."""
    try:
        with os.scandir(rejected_folder(drive)) as entries:
            return sum(not e.name.endswith(".reason") for e in entries)
    except FileNotFoundError:
        return 0


def _event_row(data: bytes) -> dict[str, Any]:
    """A spooled event as a ``status_events`` row, its text made storable; an exception
    says why it is not one."""
    raw = json.loads(data.decode("utf-8"))
    if not isinstance(raw, dict):
        raise TypeError(f"an event is a JSON object, not {type(raw).__name__}")
    event = make_event(raw["project"], raw["job"], raw["status"], raw.get("progress"),
                       raw.get("message"))
    event_id = str(raw["id"])
    if not re.fullmatch(r"[0-9a-f]{32}", event_id):
        raise ValueError(f"event id {event_id!r} is not 32 hex digits")
    reported = datetime.fromisoformat(raw["time"])
    if reported.tzinfo is None:
        raise ValueError("time has no time zone")
    host = raw.get("host") or ""
    if not isinstance(host, str):
        raise TypeError(f"host must be text, not {type(host).__name__}")
    return dict(event_id=event_id, project=event["project"], job=event["job"],
                status=event["status"], progress=event["progress"], message=event["message"],
                reported_at=reported.astimezone(UTC), host=storable(host)[:255],
                ingested_at=datetime.now(UTC))


def _reject(drive: Path, path: Path, exc: BaseException) -> None:
    """Move ``path`` to ``status/rejected/`` with one line saying why beside it (counted by
    the exporter: ``baton_status_rejected_files``)."""
    reason = f"{type(exc).__name__}: {printable(exc)}"
    rejected, name = rejected_folder(drive), printable(path.name)  # names go to a terminal
    try:
        rejected.mkdir(parents=True, exist_ok=True)
        path.replace(rejected / path.name)
    except FileNotFoundError:
        return  # another ingester set it aside
    except OSError as err:
        log.warning("could not set aside the bad status event %s (%s): %s", name, reason,
                    printable(err))
        return
    log.warning("status event %s set aside in %s: %s", name, rejected, reason)
    try:
        atomic_write(rejected / f"{path.name}.reason", f"{reason}\n".encode(), attempts=1)
    except OSError as err:
        log.warning("could not write why %s was rejected: %s", name, printable(err))
