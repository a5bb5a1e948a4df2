"""Migration 0008 (slurm_jobs.figures) on a ledger with history, SQLite and PostgreSQL:
what earlier versions recorded for finished jobs stands, a finished job without CPU time
is awaited again (within the tracker's bound), a submission that never reached Slurm
awaits nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import column, insert, select, table

from baton.ledger import Ledger, migrate
from baton.ledger.migrate import head_revision
from baton.ledger.schema import slurm_jobs


def test_upgrade_sets_the_figures_of_the_history(ledger_url: str) -> None:
    led = Ledger(ledger_url, create=True)
    assert migrate.upgrade(led.engine, "0007") == (None, "0007")
    now = datetime.now(UTC)
    # the table as revision 0007 has it (without figures)
    old = table("slurm_jobs", *[column(c.name, c.type) for c in slurm_jobs.c
                                if c.name != "figures"])
    rows = {"done": ("COMPLETED", "1", 2.5), "no-cpu": ("COMPLETED", "2", None),
            "never": ("SUBMIT_FAILED", None, None), "open": ("RUNNING", "4", None)}
    with led.engine.begin() as conn:
        for key, (state, job_id, cpu) in rows.items():
            conn.execute(insert(old).values(
                submission_key=key, stage="evaluation", experiment="e", attempt=1,
                backend="sbatch", job_id=job_id, state=state, cpu_seconds=cpu, restarts=0,
                ended_at=now - timedelta(minutes=5), created_at=now, updated_at=now))
    assert led.init() == ("0007", head_revision())
    with led.engine.connect() as conn:
        figures = dict(conn.execute(select(slurm_jobs.c.submission_key,
                                           slurm_jobs.c.figures)).all())
    assert figures == {"done": "final", "no-cpu": None, "never": "unavailable", "open": None}
    assert [r.submission_key for r in led.unfinished_jobs()] == ["no-cpu", "open"]
    assert led.check().ok, led.check().problems
    led.close()


def test_the_awaited_figures_are_found_through_their_index(tmp_path) -> None:
    """The tracker asks every tick for finished jobs still awaiting figures: a partial
    index holds only those (and the open jobs), however long the history."""
    from baton.ledger import open_ledger
    from baton.ledger.schema import FIGURES_AWAITED, FINAL_JOB

    led = open_ledger(f"sqlite:///{tmp_path / 'l.db'}", init=True)
    query = select(slurm_jobs).where(FIGURES_AWAITED, FINAL_JOB)
    with led.read() as conn:
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(query.compile(conn.engine, compile_kwargs={
                "literal_binds": True}))).all())
    assert "ix_slurm_jobs_figures_awaited" in plan, plan
    led.close()
