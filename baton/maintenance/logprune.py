"""``baton db prune``: Slurm's logs of successful jobs on the drive, compressed (gzip)
after ``retention.logs_compress_after_days`` and deleted after
``retention.logs_delete_after_days``; a failure's logs are kept for people to read.

The jobs come from the ledger (their state, exit code and log paths), from where the last
pruning stopped: a job that ended before ``now - logs_delete_after_days`` at the last run
is done with, so a run reads only the jobs of the retention window, not the whole history.
The rendered scripts under ``logs/scripts/`` are kept while a job in the ledger names
one (``baton db rebuild`` reads them to give a lost ledger its jobs back). Once every job
of a script has left for the archive (``baton db archive``), having succeeded, the script
follows the same two ages; the archive's ``slurm_jobs`` files are each read once (the
last stamp read is recorded with the run). The size of ``logs/`` is measured here (one
walk a day) and recorded with the run, for the exporter's ``baton_drive_logs_bytes``."""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from baton.config import Config
from baton.errors import BatonError
from baton.fsio import atomic_path
from baton.ledger import open_ledger
from baton.maintenance.archive import archive_dir


@dataclass
class PruneResult:
    compressed: int = 0
    deleted: int = 0
    logs_bytes: int = 0

    def line(self) -> str:
        return (f"compressed {self.compressed} and deleted {self.deleted} log(s) of "
                f"successful jobs; logs/ now holds {self.logs_bytes} bytes")


def prune(config: Config, now: datetime | None = None) -> PruneResult:
    now = now or datetime.now(UTC)
    ret = config.retention
    logs = config.drive.logs
    if not logs.is_dir():
        raise BatonError(f"{logs} does not exist (is the shared drive mounted?)")
    compress_before = now - timedelta(days=ret.logs_compress_after_days)
    delete_before = (None if ret.logs_delete_after_days is None
                     else now - timedelta(days=ret.logs_delete_after_days))
    ledger = open_ledger(config.ledger_url)
    try:
        last = ledger.last_run("prune")
        since = (datetime.fromisoformat(last.detail["done_through"])
                 if last is not None and (last.detail or {}).get("done_through") else None)
        result = PruneResult()

        def age_out(path: Path, ended: datetime) -> None:
            if ended > compress_before:
                return
            if delete_before is not None and ended < delete_before:
                result.deleted += _delete(path)
            else:
                result.compressed += _compress(path)

        for ended, paths in ledger.succeeded_logs(since, compress_before):
            for path in paths:
                age_out(Path(path), ended)
        read_through = (last.detail or {}).get("archive_read_through", "") if last else ""
        scripts, read_through = archived_scripts(archive_dir(config), read_through)
        for path in sorted(set(scripts) - ledger.scripts_in_use(sorted(scripts))):
            if scripts[path] is not None:
                age_out(Path(path), scripts[path])
        result.logs_bytes = tree_bytes(logs)
        done = delete_before if delete_before is not None else compress_before
        ledger.record_run("prune", True, now, path=str(logs), size=result.logs_bytes,
                          detail={"done_through": done.isoformat(),
                                  "archive_read_through": read_through,
                                  "compressed": result.compressed, "deleted": result.deleted})
        return result
    finally:
        ledger.close()


def archived_scripts(root: Path, after: str) -> tuple[dict[str, datetime | None], str]:
    """The scripts named by the jobs of the archive's ``slurm_jobs`` files stamped after
    ``after``: script -> the latest end of its jobs, None if one of them did not succeed
    (kept, as a failure's logs are); and the last stamp read."""
    scripts: dict[str, datetime | None] = {}
    last = after
    for file in sorted((root / "slurm_jobs").glob("*.parquet")):
        stamp = file.name.removesuffix(".parquet")
        if stamp <= after:
            continue
        last = max(last, stamp)
        table = pq.read_table(file, columns=["script_path", "state", "exit_code", "ended_at"])
        for row in table.to_pylist():
            path = row["script_path"]
            if not path:
                continue
            ok = row["state"] == "COMPLETED" and not row["exit_code"] and row["ended_at"]
            if not ok or (path in scripts and scripts[path] is None):
                scripts[path] = None
            else:
                scripts[path] = max(row["ended_at"], scripts.get(path) or row["ended_at"])
    return scripts, last


def _compress(path: Path) -> int:
    """``path`` -> ``path.gz`` (written whole, then the original removed); 1 if done."""
    if not path.is_file():
        return 0
    with open(path, "rb") as src, atomic_path(path.with_name(path.name + ".gz")) as tmp, \
            gzip.open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return 1


def _delete(path: Path) -> int:
    gone = 0
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            p.unlink()
            gone = 1
    return gone


def tree_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (one scandir walk, no symlinks followed)."""
    total, stack = 0, [str(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
