"""Schema versions (Alembic revisions shipped in the package) and integrity checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from baton.ledger.engine import one_line
from baton.ledger.schema import metadata

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(connection: object) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Apply every migration up to ``revision``; returns (before, after)."""
    before = current_revision(engine)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)
    return before, current_revision(engine) or ""


@dataclass
class CheckReport:
    ok: bool
    revision: str | None
    head: str
    problems: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        state = "ok" if self.ok else "FAILED"
        out = [f"ledger integrity: {state}", f"schema revision: {self.revision} "
               f"(head {self.head})"]
        out += [f"  {d}" for d in self.details]
        out += [f"  problem: {p}" for p in self.problems]
        return out


def check(engine: Engine) -> CheckReport:
    """Schema at head and matching the code, plus the database's own integrity check."""
    head = head_revision()
    try:
        return _check(engine, head)
    except DBAPIError as exc:
        return CheckReport(ok=False, revision=None, head=head,
                           problems=[f"cannot read the ledger: {one_line(exc)}"])


def _check(engine: Engine, head: str) -> CheckReport:
    rev = current_revision(engine)
    report = CheckReport(ok=True, revision=rev, head=head)
    if rev is None:
        report.problems.append("the ledger is not initialised: run `baton db init`")
    elif rev != head:
        report.problems.append(f"schema is at {rev}, code expects {head}: run "
                               "`baton db upgrade`")
    else:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        report.problems += [f"schema drift: {d}" for d in diff]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
            report.details.append(f"PRAGMA integrity_check: {', '.join(rows)}")
            if rows != ["ok"]:
                report.problems += [f"integrity_check: {r}" for r in rows]
            fks = list(conn.exec_driver_sql("PRAGMA foreign_key_check"))
            report.details.append(f"PRAGMA foreign_key_check: {len(fks)} violation(s)")
            report.problems += [f"foreign key violation in {r[0]} row {r[1]} -> {r[2]}"
                                for r in fks]
        else:
            conn.execute(text("SELECT 1"))
            report.details.append(f"{engine.dialect.name}: connection and catalog readable")
    report.ok = not report.problems
    return report
