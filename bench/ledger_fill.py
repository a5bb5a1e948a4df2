"""A ledger of a lab that has run for a while: ``n`` Slurm job rows (evaluation and
analysis) with the training runs (one checkpoint each), signals and stage rows they
answer, a repair decided for each job that ran out of memory or time (and an alert for
some that run late), scripts' status reports, and the campaigns the jobs name. Row 0 is
the newest; each further row is older, at the pace of a lab that fills 10^6 rows in 180
days (5,500 jobs a day), so a bigger ledger holds more history, not more work in flight:
jobs of the last two days may still be pending, held or running, older ones have all
ended, mostly completed, some failed. A campaign is 500 consecutive jobs; the 8 newest
campaigns are active. Written in bulk: setting up is not what is measured."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from baton.ledger import Ledger
from baton.ledger.schema import (
    analysis_jobs,
    campaigns,
    checkpoints,
    evaluation_jobs,
    signals,
    slurm_jobs,
    status_events,
    supervisions,
    training_runs,
    unknown_campaign_types,
)

STATES = [("COMPLETED", 85), ("FAILED", 4), ("OUT_OF_MEMORY", 1), ("TIMEOUT", 1),
          ("CANCELLED", 1), ("RUNNING", 3), ("PENDING", 5)]
FINAL = [(s, w) for s, w in STATES if s not in ("RUNNING", "PENDING")]
IN_FLIGHT_SECONDS = 2 * 86400  # jobs submitted earlier than this have all ended
FIGURES_SECONDS = 86400  # jobs submitted earlier than this have their final figures
SPACING = 180 * 86400 / 1_000_000  # seconds between two jobs' submissions
CAMPAIGN_JOBS, ACTIVE = 500, 8
CHUNK = 20_000


def _job(i: int, rnd: random.Random, now: datetime) -> dict[str, Any]:
    stage = "analysis" if i % 5 == 4 else "evaluation"
    exp = f"exp-{i // 5 * 4 + i % 5 if stage == 'evaluation' else i // 5 * 4:07d}"
    age = 60 + (i + rnd.random()) * SPACING
    pool = STATES if age < IN_FLIGHT_SECONDS else FINAL
    state = rnd.choices([s for s, _ in pool], [w for _, w in pool])[0]
    submitted = now - timedelta(seconds=age)
    started = ended = None
    if state != "PENDING":
        started = submitted + timedelta(seconds=rnd.expovariate(1 / 600))
        if state != "RUNNING":
            ended = started + timedelta(seconds=rnd.expovariate(1 / 1800))
    return dict(
        submission_key=f"{stage}:{exp}:attempt-1:{i}", stage=stage, experiment=exp,
        campaign=_campaign(i // CAMPAIGN_JOBS) if i % 3 else None, attempt=1, backend="sbatch",
        job_id=str(100_000 + i), state=state,
        reason="JobHeldUser" if state == "PENDING" and i % 4 == 0 else None,
        submitted_at=submitted, started_at=started, ended_at=ended,
        exit_code=0 if state == "COMPLETED" else 1, exit_signal=9 if i % 7 == 0 else None,
        req_cpus=8, req_mem_mb=32768.0, req_time_s=7200,
        max_rss_mb=rnd.uniform(1000, 40000) if ended else None,
        cpu_seconds=rnd.uniform(10, 5000) if ended else None, restarts=int(i % 50 == 0),
        # accounting's figures are final a day after a job ended (the tracker's bound)
        figures="final" if ended and age > FIGURES_SECONDS else None,
        created_at=submitted, updated_at=ended or submitted)


def _campaign(c: int) -> str:
    return f"camp-{c:04d}"


def _campaigns(start: int, stop: int, now: datetime
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The campaigns first named by jobs ``start..stop`` (as the control plane registers
    them), and, with the first ones, two unknown campaign types."""
    first = -(-start // CAMPAIGN_JOBS)  # the campaigns of rows before start exist already
    camps = [dict(tag=_campaign(c), type="default", active=c < ACTIVE,
                  display_name=f"Campaign {c}" if c % 2 else None, priority=c,
                  expected_jobs=500 if c % 4 == 1 else None, registered_at=now,
                  registered_by="bench")
             for c in range(first, -(-stop // CAMPAIGN_JOBS))]
    unknown = [dict(type=t, tag=_campaign(0), occurrences=n, first_seen=now, last_seen=now,
                    source="bench") for t, n in (("sweeep", 3), ("adhoc", 1))] \
        if start == 0 else []
    return camps, unknown


def _supervision(j: dict[str, Any], row: int, i: int) -> dict[str, Any] | None:
    """The supervisor's decision about a job that ran out of memory or time (resubmitted,
    some repairs still running, some refused by sbatch, some given up), or that runs late
    (an alert)."""
    base = dict(experiment=j["experiment"], stage=j["stage"], job_row=row,
                job_id=j["job_id"], attempt=1, requested_by="supervisor",
                created_at=j["ended_at"] or j["submitted_at"], dispatched_at=None)
    if j["state"] == "RUNNING" and i % 7 == 0:
        return dict(base, key=f"job-{row}:late_running", reason="late_running",
                    action="alert", dispatch_status="none", execution_status="running")
    reason = {"OUT_OF_MEMORY": "oom", "TIMEOUT": "timeout"}.get(j["state"])
    if reason is None:
        return None
    kind = (i // 5) % 10  # every stage gets each kind
    action, dispatch, execution = {
        0: ("gave_up", "none", "open"),
        3: ("resubmit", "dispatched", "running"),
        5: ("resubmit", "failed", "none"),  # every sbatch try failed
    }.get(kind, ("resubmit", "dispatched", "completed"))
    return dict(base, key=f"job-{row}:{reason}", reason=reason, action=action,
                dispatch_status=dispatch, execution_status=execution,
                dispatched_at=j["ended_at"] if dispatch == "dispatched" else None)


def _status(j: dict[str, Any], i: int) -> dict[str, Any]:
    """A script's status report (a few hundred (project, job) pairs, many reports each)."""
    status = ("started", "running", "completed", "failed")[i % 4]
    return dict(event_id=f"ev-{i}", project=f"proj-{i % 7}", job=f"job-{i % 50}",
                status=status, progress=float(i % 101) if status == "running" else None,
                message=None, reported_at=j["submitted_at"], host="node01",
                ingested_at=j["submitted_at"])


def fill_range(ledger: Ledger, start: int, stop: int) -> None:
    """Add job rows ``start..stop`` (and, per evaluation job, its training run with one
    checkpoint, its signal and evaluation row; per analysis job, its analysis row)."""
    rnd = random.Random(start)
    now = datetime.now(UTC)
    camps, unknown = _campaigns(start, stop, now)
    with ledger.write() as conn:
        for table, rows in ((campaigns, camps), (unknown_campaign_types, unknown)):
            if rows:
                conn.execute(insert(table), rows)
    for lo in range(start, stop, CHUNK):
        jobs = [_job(i, rnd, now) for i in range(lo, min(stop, lo + CHUNK))]
        trains, sigs, evals, anas, reports = [], [], [], [], []
        for i, j in enumerate(jobs, lo):
            key = f"training_complete:{j['experiment']}:x"
            done = j["ended_at"] if j["state"] == "COMPLETED" else None
            if i % 100 == 0:
                reports.append(_status(j, i))
            if j["stage"] == "evaluation":
                trained = j["submitted_at"] - timedelta(seconds=rnd.uniform(1, 30))
                folder = f"/drive/models/{j['experiment']}"
                trains.append(dict(experiment_name=j["experiment"], status="completed",
                                   completed_at=trained, signal_key=key,
                                   checkpoint_path=f"{folder}/final", campaign=j["campaign"]))
                sigs.append(dict(idempotency_key=key, kind="training_complete",
                                 path=f"{folder}/.training_complete",
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
            first_job = (conn.execute(select(func.max(slurm_jobs.c.id))).scalar() or 0) + 1
            first_run = (conn.execute(select(func.max(training_runs.c.id))).scalar() or 0) + 1
            for table, rows in ((slurm_jobs, jobs), (training_runs, trains),
                                (signals, sigs), (evaluation_jobs, evals),
                                (analysis_jobs, anas), (status_events, reports)):
                if rows:
                    conn.execute(insert(table), rows)
            conn.execute(insert(checkpoints).from_select(
                ["training_run_id", "checkpoint_path", "created_at"],
                select(training_runs.c.id, training_runs.c.checkpoint_path,
                       training_runs.c.completed_at).where(training_runs.c.id >= first_run)))
            sups = [s for n, j in enumerate(jobs)
                    if (s := _supervision(j, first_job + n, lo + n)) is not None]
            if sups:
                conn.execute(insert(supervisions), sups)
