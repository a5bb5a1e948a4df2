"""A ledger of a lab that has run for a while: ``n`` Slurm job rows (evaluation and
analysis, mostly finished, some failed, pending, held or running) with the training runs,
signals and stage rows they answer. Written in bulk: setting up is not what is measured."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from baton.ledger import Ledger
from baton.ledger.schema import (
    analysis_jobs,
    evaluation_jobs,
    signals,
    slurm_jobs,
    training_runs,
)

STATES = [("COMPLETED", 85), ("FAILED", 4), ("OUT_OF_MEMORY", 1), ("TIMEOUT", 1),
          ("CANCELLED", 1), ("RUNNING", 3), ("PENDING", 5)]
CHUNK = 20_000


def _job(i: int, rnd: random.Random, now: datetime) -> dict[str, Any]:
    stage = "analysis" if i % 5 == 4 else "evaluation"
    exp = f"exp-{i // 5 * 4 + i % 5 if stage == 'evaluation' else i // 5 * 4:07d}"
    state = rnd.choices([s for s, _ in STATES], [w for _, w in STATES])[0]
    submitted = now - timedelta(seconds=rnd.uniform(60, 180 * 86400))
    started = ended = None
    if state != "PENDING":
        started = submitted + timedelta(seconds=rnd.expovariate(1 / 600))
        if state != "RUNNING":
            ended = started + timedelta(seconds=rnd.expovariate(1 / 1800))
    return dict(
        submission_key=f"{stage}:{exp}:attempt-1:{i}", stage=stage, experiment=exp,
        campaign=f"camp-{i % 40}" if i % 3 else None, attempt=1, backend="sbatch",
        job_id=str(100_000 + i), state=state,
        reason="JobHeldUser" if state == "PENDING" and i % 4 == 0 else None,
        submitted_at=submitted, started_at=started, ended_at=ended,
        exit_code=0 if state == "COMPLETED" else 1, exit_signal=9 if i % 7 == 0 else None,
        req_cpus=8, req_mem_mb=32768.0, req_time_s=7200,
        max_rss_mb=rnd.uniform(1000, 40000) if ended else None,
        cpu_seconds=rnd.uniform(10, 5000) if ended else None, restarts=int(i % 50 == 0),
        created_at=submitted, updated_at=ended or submitted)


def fill_range(ledger: Ledger, start: int, stop: int) -> None:
    """Add job rows ``start..stop`` (and, per evaluation job, its training run, signal and
    evaluation row; per analysis job, its analysis row)."""
    rnd = random.Random(start)
    now = datetime.now(UTC)
    for lo in range(start, stop, CHUNK):
        jobs = [_job(i, rnd, now) for i in range(lo, min(stop, lo + CHUNK))]
        trains, sigs, evals, anas = [], [], [], []
        for j in jobs:
            key = f"training_complete:{j['experiment']}:x"
            done = j["ended_at"] if j["state"] == "COMPLETED" else None
            if j["stage"] == "evaluation":
                trained = j["submitted_at"] - timedelta(seconds=rnd.uniform(1, 30))
                trains.append(dict(experiment_name=j["experiment"], status="completed",
                                   completed_at=trained, signal_key=key,
                                   campaign=j["campaign"]))
                sigs.append(dict(idempotency_key=key, kind="training_complete",
                                 path=f"/drive/models/{j['experiment']}/.training_complete",
                                 status="accepted", experiment=j["experiment"],
                                 file_mtime=trained.timestamp(), seen_at=trained))
                evals.append(dict(experiment_name=j["experiment"], trigger_key=key,
                                  status="completed" if done else "queued",
                                  submitted_at=j["submitted_at"], completed_at=done))
            else:
                anas.append(dict(experiment_name=j["experiment"], trigger_key=key,
                                 status="completed" if done else "queued",
                                 submitted_at=j["submitted_at"], completed_at=done))
        with ledger.write() as conn:
            for table, rows in ((slurm_jobs, jobs), (training_runs, trains),
                                (signals, sigs), (evaluation_jobs, evals),
                                (analysis_jobs, anas)):
                if rows:
                    conn.execute(insert(table), rows)
