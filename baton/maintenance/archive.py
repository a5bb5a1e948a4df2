"""``baton db archive``: settled history (see baton/ledger/settled.py) moved out of the
ledger into Parquet at ``{state_dir}/archive/{table}/{YYYYMMDD-HHMMSS}.parquet`` (one file
per table per run, the table's columns), which ``baton sql`` shows with the ledger's rows.

Nothing is ever in both places, whenever the process dies:
1. the files are written as ``{stamp}.parquet.pending`` (not read by ``baton sql``);
2. one transaction deletes the rows and records the run with its stamp;
3. the pending files are renamed to ``.parquet``; then VACUUM.
A run finds the pending files an earlier one left: their stamp recorded (the delete
committed) -> renamed into the archive; not recorded -> removed (the rows never left)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from baton.config import Config
from baton.errors import BatonError
from baton.ledger import Ledger, open_ledger
from baton.ledger.settled import ARCHIVED
from baton.maintenance.vacuum import vacuum as vacuum_ledger

PENDING = ".parquet.pending"
STAMP = "%Y%m%d-%H%M%S"
TYPES = {"timestamp": pa.timestamp("us", tz="UTC"), "integer": pa.int64(),
         "float": pa.float64(), "boolean": pa.bool_(), "text": pa.string()}


@dataclass
class ArchiveResult:
    stamp: str
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # what earlier runs left, settled

    def lines(self) -> list[str]:
        moved = ", ".join(f"{n} {t}" for t, n in self.rows.items() if n) or "nothing"
        return [*self.recovered, f"archived {moved} ({len(self.files)} Parquet file(s))"]


def archive_dir(config: Config) -> Path:
    return config.state_dir / "archive"


def archive(config: Config, older_than: timedelta, now: datetime | None = None,
            vacuum: bool = True) -> ArchiveResult:
    """Move the history settled before ``now - older_than`` to Parquet, then VACUUM."""
    now = now or datetime.now(UTC)
    root = archive_dir(config)
    ledger = open_ledger(config.ledger_url)
    try:
        with _lock(root):
            result = ArchiveResult(now.strftime(STAMP))
            result.recovered = settle_pending(ledger, root)
            _archive(config, ledger, root, now, older_than, result)
    finally:
        ledger.close()
    if vacuum and result.files:
        vacuum_ledger(config)
    return result


def _archive(config: Config, ledger: Ledger, root: Path, now: datetime,
             older_than: timedelta, result: ArchiveResult) -> None:
    drive = config.drive.root
    plan = ledger.settled(now - older_than, lambda p: _gone(drive, p))
    if any((root / t / f"{result.stamp}.parquet").exists() for t in ARCHIVED):
        raise BatonError(f"an archive stamped {result.stamp} exists already: one per second")
    pending: list[Path] = []
    try:
        for table in ARCHIVED:
            if plan.get(table):
                pending.append(_write(ledger, root, table, plan[table], result.stamp))
        if not pending:  # recorded all the same: the schedule ran, and found nothing
            ledger.record_run("archive", True, now, detail={"stamp": result.stamp, "rows": {}})
            return
        result.rows = {t: len(ids) for t, ids in plan.items() if ids}
        ledger.delete_settled(plan, now, {"stamp": result.stamp, "rows": result.rows,
                                          "older_than_days": older_than.total_seconds() / 86400})
    except BaseException:
        for path in pending:  # the rows never left: no file may claim them
            path.unlink(missing_ok=True)
        raise
    result.files = [_promote(p) for p in pending]


def _gone(drive: Path, path: str) -> bool:
    """A signal's file is gone from the drive (a drive that is not there proves nothing)."""
    return drive.is_dir() and not os.path.lexists(path)


def _write(ledger: Ledger, root: Path, table: str, ids: list[int], stamp: str) -> Path:
    columns = ledger.table_columns(table)
    schema = pa.schema([(name, TYPES[kind]) for name, kind in columns])
    folder = root / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}{PENDING}"
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, object]] = []
        for row in ledger.rows_of(table, ids):
            batch.append(row)
            if len(batch) >= 50_000:
                writer.write_table(pa.Table.from_pylist(batch, schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema))
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return path


def _promote(pending: Path) -> Path:
    final = pending.with_name(pending.name.removesuffix(PENDING) + ".parquet")
    os.replace(pending, final)
    return final


def settle_pending(ledger: Ledger, root: Path) -> list[str]:
    """Finish what an earlier run left half done (see the module); returns what it did."""
    done: list[str] = []
    for path in sorted(root.glob(f"*/*{PENDING}")) if root.is_dir() else []:
        stamp = path.name.removesuffix(PENDING)
        if ledger.archive_committed(stamp):
            _promote(path)
            done.append(f"completed {path.parent.name}/{stamp}.parquet (its rows had left "
                        "the ledger)")
        else:
            path.unlink()
            done.append(f"removed {path} (its rows never left the ledger)")
    return done


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatonError(f"another `baton db archive` is running ({root}/.lock)") from None
        yield
