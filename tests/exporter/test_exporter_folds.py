"""The exporter's running totals (baton/exporter/folds.py) give every metric the value a
pass over the whole history gives, on the same ledger (SQLite and PostgreSQL), as rows
settle between computations and a transaction commits a lower id after higher ones; the
settled rows are read once; the periodic full recomputation catches what no id tells."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, update

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import (
    analysis_jobs,
    campaigns,
    checkpoints,
    evaluation_jobs,
    slurm_jobs,
    training_generations,
    training_runs,
)
from baton.maintenance.archive import archive

# recent: a timeline trained more than a week ago counts as settled whatever its state
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
# computed from "now" by each scrape, a few milliseconds apart (and the drive's free space,
# which other processes change)
AGES = {"baton_oldest_waiting_job_seconds", "baton_longest_running_job_seconds",
        "baton_oldest_unanswered_training_seconds", "baton_oldest_unanswered_evaluation_seconds",
        "baton_exporter_scrape_duration_seconds",
        "baton_exporter_ledger_age_seconds"}


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def job(conn: Any, row: int, state: str, *, stage: str = "evaluation",
        figures: str | None = "final", ended: float | None = 30) -> None:
    """Job row ``row`` (its id given: the test decides the order of commits)."""
    running = state not in ("PENDING", "SUBMITTING")
    conn.execute(insert(slurm_jobs).values(
        id=row, submission_key=f"k{row}", stage=stage, experiment=f"exp-{row % 3}",
        campaign="camp" if row % 2 else None, attempt=1, backend="sbatch",
        job_id=str(1000 + row), state=state, submitted_at=minutes(row),
        started_at=minutes(row + 2) if running else None,
        ended_at=minutes(row + ended) if ended is not None and running else None,
        exit_code=0 if state == "COMPLETED" else 1, req_mem_mb=1000.0,
        max_rss_mb=250.0 * (row % 5) if figures else None,
        cpu_seconds=60.0 * row if figures else None, restarts=row % 2, figures=figures,
        created_at=minutes(row), updated_at=minutes(row)))


def settle(conn: Any, row: int, state: str = "COMPLETED") -> None:
    conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row).values(
        state=state, ended_at=minutes(row + 40), figures="final", max_rss_mb=500.0,
        cpu_seconds=120.0))


def run(conn: Any, row: int, *, evaluated: float | None, analysed: float | None) -> None:
    """Training run ``row`` and its evaluation and analysis (done at those minutes)."""
    key = f"sig-{row}"
    conn.execute(insert(training_runs).values(
        id=row, experiment_name=f"run-{row}", status="completed", completed_at=minutes(row),
        signal_key=key, campaign="camp"))
    conn.execute(insert(evaluation_jobs).values(
        experiment_name=f"run-{row}", trigger_key=key, checkpoint_path="final",
        status="completed" if evaluated is not None else "running",
        submitted_at=minutes(row + 1),
        completed_at=minutes(evaluated) if evaluated is not None else None))
    if analysed is not None:
        conn.execute(insert(analysis_jobs).values(
            experiment_name=f"run-{row}", trigger_key=key, status="completed",
            submitted_at=minutes(analysed - 1), completed_at=minutes(analysed)))


def finish(conn: Any, row: int, evaluated: float, analysed: float) -> None:
    key = f"sig-{row}"
    conn.execute(update(evaluation_jobs).where(evaluation_jobs.c.trigger_key == key).values(
        status="completed", completed_at=minutes(evaluated)))
    conn.execute(insert(analysis_jobs).values(
        experiment_name=f"run-{row}", trigger_key=key, status="completed",
        submitted_at=minutes(analysed - 1), completed_at=minutes(analysed)))


def scrape(collector: BatonCollector) -> dict[tuple[str, tuple[Any, ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    body = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples
            if s.name not in AGES and not s.name.startswith("baton_shared_drive_free")}


@pytest.fixture
def site(ledger_url: str, config: Config) -> tuple[Ledger, Config]:
    ledger = open_ledger(ledger_url, init=True)
    yield ledger, config
    ledger.close()


def collectors(ledger: Ledger, config: Config, **folded: Any
               ) -> tuple[BatonCollector, BatonCollector]:
    queue = QueueSnapshot(lambda: Counter({"PENDING": 1}), 30)
    return (BatonCollector(config, ledger, queue, ledger_wait=60, **folded),
            BatonCollector(config, ledger, queue, ledger_wait=60, full_every=None))


def same(folded: BatonCollector, whole: BatonCollector) -> None:
    ours, theirs = scrape(folded), scrape(whole)
    assert ours == theirs
    assert ours[("baton_jobs_finished_total", (("stage", "evaluation"),))] > 0


def test_running_totals_equal_a_pass_over_the_history(site: tuple[Ledger, Config]) -> None:
    ledger, config = site
    with ledger.write() as conn:
        job(conn, 1, "COMPLETED")
        job(conn, 2, "RUNNING", figures=None)
        job(conn, 3, "PENDING", figures=None)
        job(conn, 4, "FAILED", figures=None)  # ended, its figures still awaited
        job(conn, 5, "SUBMIT_FAILED", figures="unavailable")  # may be tried again
        job(conn, 6, "OUT_OF_MEMORY", stage="analysis")
        job(conn, 9, "COMPLETED", stage="analysis")  # 7 and 8 not committed yet
        run(conn, 1, evaluated=20, analysed=30)
        run(conn, 2, evaluated=None, analysed=None)
        run(conn, 4, evaluated=25, analysed=None)  # 3 not committed yet
    folded, whole = collectors(ledger, config)
    same(folded, whole)
    assert folded.totals is not None
    jobs, timelines = folded.totals.folds.jobs, folded.totals.folds.timelines
    assert (jobs.high, jobs.open, set(jobs.gaps)) == (9, {2, 3, 4, 5}, {7, 8})
    assert (timelines.high, timelines.open, set(timelines.gaps)) == (4, {2, 4}, {3})

    with ledger.write() as conn:  # rows settle, new ones come
        settle(conn, 2)
        settle(conn, 4, "FAILED")
        job(conn, 10, "RUNNING", figures=None)
        job(conn, 11, "COMPLETED", stage="script")  # a plain script's: no tally's, no gap
        finish(conn, 2, evaluated=50, analysed=70)
        run(conn, 5, evaluated=40, analysed=45)
    same(folded, whole)
    assert (jobs.high, jobs.open, set(jobs.gaps)) == (11, {3, 5, 10}, {7, 8})
    assert (timelines.high, timelines.open) == (5, {4})

    with ledger.write() as conn:  # late commits of lower ids
        job(conn, 7, "COMPLETED", stage="analysis")
        job(conn, 8, "RUNNING", figures=None)
        run(conn, 3, evaluated=12, analysed=18)
    same(folded, whole)
    assert (jobs.high, jobs.open, set(jobs.gaps)) == (11, {3, 5, 8, 10}, set())
    assert (timelines.high, timelines.open, set(timelines.gaps)) == (5, {4}, set())


def test_the_full_recomputation_catches_a_settled_row_changed_by_hand(
        site: tuple[Ledger, Config]) -> None:
    ledger, config = site
    with ledger.write() as conn:
        for row in (1, 2, 3):
            job(conn, row, "COMPLETED")
        run(conn, 1, evaluated=20, analysed=30)
    folded, whole = collectors(ledger, config, full_every=3600)
    same(folded, whole)
    with ledger.write() as conn:  # what no id tells: a settled row rewritten
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == 2).values(state="FAILED"))
    key = ("baton_jobs_finished_total", (("stage", "evaluation"),))
    assert scrape(folded)[key] == 3 and scrape(whole)[key] == 2  # folded: not yet
    assert folded.totals is not None
    old = folded.totals.folds
    folded.totals.full_every = 0  # the period is over: the next computation starts one
    folded.compute_ledger()  # ... in a thread, from scratch, and swaps the folds in
    deadline = time.monotonic() + 60
    while folded.totals.folds is old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert folded.totals.folds is not old
    same(folded, whole)


# --- the campaign progress, folded per experiment (baton/exporter/progress_fold.py) --------

def trained(conn: Any, run_id: int, exp: str, ckpts: int, generation: int = 1) -> None:
    """Training run ``run_id`` of ``exp`` (campaign camp), its first generation and
    ``ckpts`` checkpoints."""
    conn.execute(insert(training_runs).values(
        id=run_id, experiment_name=exp, status="completed", completed_at=minutes(run_id),
        signal_key=f"sig-{exp}-1", campaign="camp", generation=generation))
    conn.execute(insert(training_generations).values(
        experiment_name=exp, generation=1, signal_key=f"sig-{exp}-1"))
    for n in range(1, ckpts + 1):
        checkpoint(conn, run_id, n)


def checkpoint(conn: Any, run_id: int, n: int) -> None:
    conn.execute(insert(checkpoints).values(training_run_id=run_id,
                                            checkpoint_path=f"/ckpt/{run_id}/c{n}"))


def task(conn: Any, row: int, exp: str, state: str, *, stage: str = "evaluation",
         ckpt: str | None = "c1", attempt: int = 1, campaign: str | None = None) -> None:
    """Job row ``row``: one attempt at ``exp``'s task (its checkpoint ``ckpt``)."""
    ended = state in ("COMPLETED", "FAILED")
    conn.execute(insert(slurm_jobs).values(
        id=row, submission_key=f"k{row}", stage=stage, experiment=exp, campaign=campaign,
        attempt=attempt, backend="sbatch", job_id=str(1000 + row), state=state,
        submitted_at=minutes(row), started_at=minutes(row + 1) if state != "PENDING" else None,
        ended_at=minutes(row + 5) if ended else None, exit_code=0 if state == "COMPLETED"
        else 1, restarts=0, figures="final" if ended else None,
        metadata={"checkpoint": ckpt} if ckpt else None,
        created_at=minutes(row), updated_at=minutes(row)))


def test_campaign_progress_folded_per_experiment_equals_a_pass_over_the_history(
        site: tuple[Ledger, Config]) -> None:
    ledger, config = site
    with ledger.write() as conn:
        for tag, active in (("camp", True), ("other", False)):
            conn.execute(insert(campaigns).values(tag=tag, type="default", active=active,
                                                  priority=0, registered_at=minutes(0)))
        trained(conn, 1, "alpha", ckpts=2)
        trained(conn, 2, "beta", ckpts=1)  # trained, nothing submitted yet
        task(conn, 1, "alpha", "COMPLETED", ckpt="c1")
        task(conn, 2, "alpha", "FAILED", ckpt="c2")
        task(conn, 3, "alpha", "COMPLETED", stage="analysis", ckpt=None)
        task(conn, 4, "gamma", "RUNNING", campaign="other")  # no training run
        task(conn, 5, "delta", "COMPLETED", campaign="other")
    folded, whole = collectors(ledger, config)
    same(folded, whole)
    assert folded.totals is not None
    progress = folded.totals.folds.progress
    assert progress.redone == 4  # the first computation: every experiment

    same(folded, whole)  # nothing changed (gamma's running job is read again, unchanged)
    assert progress.redone == 0

    with ledger.write() as conn:
        task(conn, 6, "alpha", "PENDING", ckpt="c2", attempt=2)  # a repair of c2
        conn.execute(update(training_runs).where(training_runs.c.id == 2).values(
            generation=2))  # a retrain of beta: a new generation and a new checkpoint
        conn.execute(insert(training_generations).values(
            experiment_name="beta", generation=2, signal_key="sig-beta-2"))
        checkpoint(conn, 2, 2)
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == 4).values(
            state="COMPLETED", ended_at=minutes(30), figures="final"))  # gamma settles
    same(folded, whole)
    assert progress.redone == 3  # alpha, beta, gamma; delta's part kept as it was

    with ledger.write() as conn:  # other activated: its experiments show in the table
        conn.execute(update(campaigns).where(campaigns.c.tag == "other").values(active=True))
        task(conn, 7, "alpha", "COMPLETED", ckpt="c2", attempt=3)
    same(folded, whole)
    assert progress.redone == 3  # alpha, and other's gamma and delta

    with ledger.write() as conn:  # what no id tells: a settled row rewritten
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == 5).values(state="FAILED"))
    key = ("baton_campaign_completion_ratio", (("campaign", "other"), ("type", "default")))
    assert scrape(folded)[key] != scrape(whole)[key]  # folded: not yet
    old = folded.totals.folds
    folded.totals.full_every = 0
    folded.compute_ledger()  # starts the full recomputation, which swaps the folds in
    deadline = time.monotonic() + 60
    while folded.totals.folds is old and time.monotonic() < deadline:
        time.sleep(0.05)
    same(folded, whole)


# --- counters after `baton db archive` ------------------------------------------------------

COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def counters(samples: dict[tuple[str, tuple[Any, ...]], float]
             ) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {k: v for k, v in samples.items() if k[0].endswith(COUNTER_SUFFIXES)}


def not_lower(before: dict[tuple[str, tuple[Any, ...]], float],
              after: dict[tuple[str, tuple[Any, ...]], float]) -> None:
    lower = {k: (v, after.get(k)) for k, v in counters(before).items()
             if after.get(k, -1) < v}
    assert not lower  # Prometheus would read a counter reset


def test_counters_never_decrease_when_history_is_archived(site: tuple[Ledger, Config]
                                                          ) -> None:
    ledger, config = site
    config = config.model_copy(update={"database_url": ledger.url})
    with ledger.write() as conn:
        job(conn, 1, "COMPLETED")
        job(conn, 2, "FAILED", stage="analysis")
        job(conn, 3, "OUT_OF_MEMORY")
        job(conn, 4, "COMPLETED")
        job(conn, 5, "RUNNING", figures=None)
    folded, whole = collectors(ledger, config, full_every=3600)
    before = scrape(folded)
    assert before == scrape(whole)
    result = archive(config, timedelta(hours=1), vacuum=False)  # rows ended 5 h ago
    assert result.rows["slurm_jobs"] == 4
    with ledger.write() as conn:
        job(conn, 6, "COMPLETED")  # history goes on
    moved = scrape(folded)
    not_lower(before, moved)
    assert folded.totals is not None
    old = folded.totals.folds
    folded.totals.full_every = 0
    folded.compute_ledger()  # the full recomputation: the archived rows are gone from it
    deadline = time.monotonic() + 60
    while folded.totals.folds is old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert folded.totals.folds is not old
    rebuilt = scrape(folded)
    not_lower(moved, rebuilt)
    key = ("baton_jobs_finished_total", (("stage", "evaluation"),))
    assert rebuilt[key] == before[key] + 1 == 3
    assert counters(rebuilt) == counters(scrape(whole))  # a pass adds the archive too
