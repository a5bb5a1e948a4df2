"""``baton db backup`` and ``baton db restore``: verified copies of the ledger, rotated,
and put back only while no daemon uses it."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from baton.config import Config, on_drive
from baton.errors import BatonError
from baton.fsio import atomic_path
from baton.ledger import Ledger, LedgerUnavailable, display_url, open_ledger
from baton.ledger.dump import put_back, suffix, write_copy

log = logging.getLogger(__name__)
NAME = re.compile(r"^ledger-(\d{8}-\d{6})\.(sqlite|pgdump)$")
STAMP = "%Y%m%d-%H%M%S"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    removed: list[Path]


def backup(config: Config, to: Path | None = None, now: datetime | None = None
           ) -> BackupResult:
    """Copy the ledger (online) to ``to`` (default: ``backup.dir``), verify the copy, and
    rotate the folder; the outcome, success or failure, is recorded in the ledger."""
    started = now or datetime.now(UTC)
    folder = to or config.backup_dir
    if to is None and on_drive(config, folder):
        problem = (f"the default backup folder {folder} is on the shared drive (the state "
                   "folder is): set backup.dir to a folder elsewhere")
        _record_refusal(config.ledger_url, started, problem)
        raise BatonError(problem)
    try:
        ledger = open_ledger(config.ledger_url)
    except LedgerUnavailable as exc:
        _record_refusal(config.ledger_url, started, str(exc))
        raise
    try:
        try:
            result = _backup(config, folder, started)
        except BatonError as exc:
            _record(ledger, False, started, None, None, str(exc))
            raise
        except OSError as exc:
            problem = f"cannot write a backup in {folder}: {exc.strerror or exc}"
            _record(ledger, False, started, None, None, problem)
            raise BatonError(problem) from None
        _record(ledger, True, started, result.path, result.size, None)
        return result
    finally:
        ledger.close()


def _backup(config: Config, folder: Path, started: datetime) -> BackupResult:
    if not folder.is_dir():
        folder.mkdir(parents=True)  # the backup folder is the command's own state
    final = folder / f"ledger-{started.strftime(STAMP)}{suffix(config.ledger_url)}"
    if final.exists():
        raise BatonError(f"{final} exists already: one backup per second")
    with atomic_path(final) as tmp:
        write_copy(config.ledger_url, tmp)
    removed = rotate(folder, config.backup.keep_daily, config.backup.keep_weekly)
    return BackupResult(final, final.stat().st_size, removed)


def _record(ledger: Ledger, ok: bool, started: datetime, path: Path | None,
            size: int | None, error: str | None) -> None:
    try:
        ledger.record_run("backup", ok, started, path=str(path) if path else None, size=size,
                          detail={"error": error} if error else None)
    except Exception as exc:  # the ledger itself failing: the backup's own error says more
        log.error("could not record the backup's outcome in the ledger: %s", exc)


def _record_refusal(url: str, started: datetime, error: str) -> None:
    """A backup refused before it ran is a failed backup too, recorded in the ledger if
    it can take the record (one at another schema may); a missing or unreachable one
    cannot (then the missing-backup alert fires, and the exporter reports its ledger
    down). The refusal's own line says what happened: nothing more is logged here."""
    ledger = None
    try:
        ledger = Ledger(url)
        ledger.revision()  # refuses a missing or unreachable ledger, and creates nothing
        ledger.record_run("backup", False, started, detail={"error": error})
    except Exception:  # nowhere to record it
        pass
    finally:
        if ledger is not None:
            ledger.close()


def backups(folder: Path) -> list[tuple[datetime, Path]]:
    """The backups in ``folder`` (by their names), oldest first."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        m = NAME.match(path.name)
        if m:
            found.append((datetime.strptime(m.group(1), STAMP).replace(tzinfo=UTC), path))
    return sorted(found)


def keep(stamps: list[datetime], daily: int, weekly: int) -> set[datetime]:
    """Which backups rotation keeps: the newest of each of the last ``daily`` days that
    have one, and the newest of each of the last ``weekly`` ISO weeks that have one."""
    kept: set[datetime] = set()
    for n, period in ((daily, lambda d: d.date()), (weekly, lambda d: _week(d.date()))):
        newest: dict[object, datetime] = {}
        for when in sorted(stamps):
            newest[period(when)] = when
        kept |= {newest[p] for p in sorted(newest, reverse=True)[:n]}
    return kept


def _week(day: date) -> tuple[int, int]:
    year, week, _ = day.isocalendar()
    return year, week


def rotate(folder: Path, daily: int, weekly: int) -> list[Path]:
    """Remove the backups rotation does not keep; returns them."""
    found = backups(folder)
    kept = keep([w for w, _ in found], daily, weekly)
    removed = [p for w, p in found if w not in kept]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def daemon_beats(config: Config, now: datetime | None = None) -> list[tuple[str, float]]:
    """The sensors that ticked lately (name, seconds ago): a daemon is using the ledger.
    Lately: three sensor intervals, and at least two minutes. A ledger that cannot be read
    has no daemon using it."""
    window = max(3 * config.sensors.interval_seconds, 120)
    now = now or datetime.now(UTC)
    try:
        ledger = Ledger(config.ledger_url)
        try:
            ledger.revision()
            beats = ledger.heartbeats()
        finally:
            ledger.close()
    except Exception:  # missing, unreachable, half a schema
        return []
    ago = [(name, (now - at).total_seconds()) for name, at in beats.items()]
    return sorted((n, s) for n, s in ago if s < window)


def restore(config: Config, copy: Path, force: bool = False) -> tuple[str, str | None]:
    """Put the backup ``copy`` back as the ledger, all or nothing; refuses while a daemon's
    sensors are ticking on it unless ``force``. Returns the restored schema revision, and
    what to do when it is not this baton's (``baton db upgrade``)."""
    busy = daemon_beats(config)
    if busy and not force:
        name, ago = busy[0]
        raise BatonError(f"a daemon is using the ledger {display_url(config.ledger_url)} "
                         f"(sensor {name} ticked {ago:.0f} s ago): stop it first, or "
                         "restore with --force")
    if not os.access(copy, os.R_OK):
        raise BatonError(f"{copy}: no such backup file (or not readable)")
    put_back(config.ledger_url, copy)
    ledger = Ledger(config.ledger_url)
    try:
        revision = ledger.revision()
        try:
            ledger.require_current()
        except LedgerUnavailable as exc:
            return revision, exc.problem
        return revision, None
    finally:
        ledger.close()

