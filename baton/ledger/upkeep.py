"""The ledger's own upkeep: each backup, archive, vacuum and log pruning recorded with its
outcome (``maintenance_runs``, which the exporter reads), the database's size, and VACUUM."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, text

from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.engine import STREAM_ROWS, sqlite_file
from baton.ledger.schema import maintenance_runs, metadata, slurm_jobs

KINDS = ("backup", "archive", "vacuum", "prune")


def insert_run(conn: Connection, kind: str, ok: bool, started_at: datetime, *,
               path: str | None = None, size: int | None = None,
               detail: dict[str, Any] | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown maintenance kind {kind!r}")
    conn.execute(insert(maintenance_runs).values(
        kind=kind, ok=ok, started_at=started_at, finished_at=utcnow(), path=path,
        bytes=size, detail=detail))


class Upkeep(LedgerBase):
    @transaction()
    def record_run(self, conn: Connection, kind: str, ok: bool, started_at: datetime, *,
                   path: str | None = None, size: int | None = None,
                   detail: dict[str, Any] | None = None) -> None:
        """One backup, archive, vacuum or pruning, as it ended."""
        insert_run(conn, kind, ok, started_at, path=path, size=size, detail=detail)

    def last_run(self, kind: str, *, ok: bool | None = True) -> Any:
        """The latest run of ``kind`` (that succeeded, failed, or either with None)."""
        query = select(maintenance_runs).where(maintenance_runs.c.kind == kind)
        if ok is not None:
            query = query.where(maintenance_runs.c.ok == ok)
        with self.read() as conn:
            return conn.execute(query.order_by(maintenance_runs.c.finished_at.desc(),
                                               maintenance_runs.c.id.desc()).limit(1)).first()

    def run_counts(self, kind: str) -> tuple[int, int]:
        """(succeeded, failed) runs of ``kind`` the ledger holds."""
        with self.read() as conn:
            counts = dict(conn.execute(select(maintenance_runs.c.ok, func.count()).where(
                maintenance_runs.c.kind == kind).group_by(maintenance_runs.c.ok)).all())
        return int(counts.get(True, 0)), int(counts.get(False, 0))

    def archive_committed(self, stamp: str) -> bool:
        """Whether the archive run ``stamp`` deleted its rows (its record commits with the
        delete: the Parquet files it left pending belong in the archive)."""
        with self.read() as conn:
            rows = conn.execute(select(maintenance_runs.c.detail).where(
                maintenance_runs.c.kind == "archive", maintenance_runs.c.ok.is_(True)))
            return any((d or {}).get("stamp") == stamp for (d,) in rows)

    def succeeded_logs(self, since: datetime | None, until: datetime
                       ) -> Iterator[tuple[datetime, list[str]]]:
        """(ended_at, its log paths) of every job that completed with exit code 0 and
        ended in (``since``, ``until``], oldest first, streamed."""
        query = select(slurm_jobs.c.ended_at, slurm_jobs.c.stdout_path,
                       slurm_jobs.c.stderr_path).where(
            slurm_jobs.c.state == "COMPLETED",
            func.coalesce(slurm_jobs.c.exit_code, 0) == 0,
            slurm_jobs.c.ended_at <= until)
        if since is not None:
            query = query.where(slurm_jobs.c.ended_at > since)
        with self.read() as conn:
            for r in conn.execute(query.order_by(slurm_jobs.c.ended_at).execution_options(
                    yield_per=STREAM_ROWS)):
                yield r.ended_at, sorted({p for p in (r.stdout_path, r.stderr_path) if p})

    def scripts_in_use(self, paths: list[str]) -> set[str]:
        """Of these rendered scripts, those a job still in the ledger names."""
        found: set[str] = set()
        with self.read() as conn:
            for i in range(0, len(paths), 5_000):
                found |= {r[0] for r in conn.execute(select(slurm_jobs.c.script_path).where(
                    slurm_jobs.c.script_path.in_(paths[i:i + 5_000])).distinct())}
        return found

    def size_bytes(self) -> int:
        """The database's size on disk: the SQLite file and its WAL, or the PostgreSQL
        relations (tables, indexes, TOAST) of the ledger's schema."""
        path = sqlite_file(self.url)
        if path is not None:
            return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
                       if p.exists())
        with self.read() as conn:
            return int(conn.execute(text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'")).scalar_one())

    def vacuum(self) -> None:
        """Give the space of deleted rows back: VACUUM (and a WAL checkpoint) on SQLite,
        VACUUM ANALYZE of the ledger's tables on PostgreSQL. Neither runs in a transaction."""
        if self.engine.dialect.name == "sqlite":
            raw = self.engine.raw_connection()  # no BEGIN: VACUUM refuses a transaction
            try:
                cur = raw.cursor()
                cur.execute("VACUUM")
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                cur.close()
            finally:
                raw.close()
            return
        names = ", ".join(f'"{t}"' for t in [*metadata.tables, "alembic_version"])
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {names}"))
