"""A lost ledger (issue 14, point 3), on the real Slurm through the real daemon: five
experiments complete, one is retrained and completes again; the ledger and the Dagster
home are deleted; `baton db rebuild`
gives back the jobs, evaluations and analyses as they were (Slurm ids, states, times) from
the drive and Slurm's accounting, both generations of the retrained one (the earlier
one's signals written over: its state and end from accounting); the daemon restarted on
the rebuilt ledger and a new Dagster home replays Dagster's view up to every report and
submits nothing."""

from __future__ import annotations

import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from baton.ledger import Ledger, open_ledger
from baton.ledger.engine import sqlite_file
from baton.ledger.schema import analysis_jobs, evaluation_jobs
from tests.e2e.harness import Pipeline

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

JOB_FIELDS = ("submission_key", "stage", "experiment", "campaign", "attempt", "backend",
              "job_id", "array_job_id", "array_task_id", "state", "submitted_at",
              "started_at", "ended_at", "exit_code", "exit_signal", "req_cpus", "req_mem_mb",
              "req_time_s", "cpu_seconds", "max_rss_mb", "figures", "node", "stdout_path",
              "stderr_path", "script_path")
# the stage rows' submitted_at is the moment baton recorded the submission (after sbatch
# returned), the rebuilt one Slurm's Submit time: equal to the second, not the microsecond
CLOSE = timedelta(seconds=2)


def snapshot(ledger: Ledger, experiments: list[str]) -> dict[str, Any]:
    jobs = sorted((tuple(getattr(j, f) for f in JOB_FIELDS) for j in ledger.jobs()),
                  key=lambda j: j[0])  # by submission key
    evals, analyses = [], []
    for exp in experiments:
        evals += [(t.experiment_name, t.slurm_job_id, t.status, t.checkpoint_path,
                   t.trigger_key, t.generation, t.completed_at, t.mlflow_run_id,
                   t.submitted_at)
                  for t in ledger.evaluation_tasks(exp)]
        a = ledger.current_analysis(exp)
        analyses.append((a.experiment_name, a.slurm_job_id, a.status, a.trigger_key,
                         a.generation, a.completed_at, a.targets_manifest_path,
                         a.submitted_at))
    return {"jobs": jobs, "evaluations": evals, "analyses": analyses}


def generations(ledger: Ledger, exp: str) -> tuple[list[tuple], list[tuple]]:
    """Every generation's stage rows (job, status, trigger, completed_at, generation) and
    training generations of ``exp``."""
    with ledger.read() as conn:
        rows = [(r.slurm_job_id, r.status, r.trigger_key, r.completed_at, r.generation)
                for table in (evaluation_jobs, analysis_jobs) for r in conn.execute(
                    select(table).where(table.c.experiment_name == exp).order_by(table.c.id))]
    return rows, [(g.generation, g.signal_key, g.signal_time, g.checkpoint_path)
                  for g in ledger.training_generations(exp)]


def same(before: list[tuple], after: list[tuple]) -> None:
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        assert b[:-1] == a[:-1]
        assert abs(b[-1] - a[-1]) < CLOSE, (b, a)


def baton(p: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], env=p.env,
                          capture_output=True, text=True, timeout=300, check=False)


def fresh_dagster_home(p: Pipeline) -> None:
    """A new, empty Dagster home where the old one was (moved aside, not removed: a run's
    process may still be closing its logs there)."""
    p.home.rename(p.home.with_name("dagster_home.lost"))
    p.home.mkdir()
    (p.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
                   env=p.env, check=True, capture_output=True, timeout=300)


def accounted(tokens: set[str]) -> int:
    """Jobs (array tasks each) Slurm's accounting holds with one of ``tokens`` as comment."""
    out = subprocess.run(["sacct", "--noheader", "--parsable2", "--starttime=now-2hours",
                          "--format=JobID,Comment"], capture_output=True, text=True,
                         check=True).stdout
    return sum(1 for line in out.splitlines()
               if "." not in line.split("|")[0] and line.split("|", 1)[1] in tokens)


@pytest.mark.usefixtures("slurm")
def test_rebuild_gives_back_the_history_and_the_daemon_submits_nothing(tmp_path: Path) -> None:
    token = secrets.token_hex(3)
    exps = [f"lost{i}-{token}" for i in range(5)]
    p = Pipeline(tmp_path, "sbatch")
    p.start()
    try:
        for exp in exps:
            p.train(exp, campaign=f"sweep-{token}")
        for exp in exps:
            p.wait_for(f"analysis_report of {exp}",
                       lambda e=exp: p.materialized("analysis_report", e))
        p.train(exps[0], campaign=f"sweep-{token}")  # retrained: generation 2
        p.wait_for(f"the second analysis of {exps[0]}", lambda: (
            (a := p.ledger.current_analysis(exps[0])) is not None and a.generation == 2
            and a.status == "completed"))
        # at rest: the tracker has every job's final figures from accounting
        p.wait_for("every job's figures", lambda: all(j.figures for j in p.ledger.jobs()))
    finally:
        p.stop()
    before = snapshot(p.ledger, exps)
    retrained = generations(p.ledger, exps[0])
    assert [g[0] for g in retrained[1]] == [1, 2]
    campaigns = [(c.tag, c.type, c.active) for c in p.ledger.list_campaigns()]
    assert campaigns == [(f"sweep-{token}", "default", False)]
    assert all(j[JOB_FIELDS.index("state")] == "COMPLETED" for j in before["jobs"])
    tokens = {(j.metadata or {})["token"] for j in p.ledger.jobs()}
    submitted = accounted(tokens)
    scripts = sorted((p.drive.logs / "scripts").rglob("*.sh"))
    assert submitted == len(before["jobs"]) == 12

    # the ledger and the Dagster home are lost
    p.ledger.close()
    db = sqlite_file(p.config.ledger_url)
    assert db is not None
    for path in db.parent.glob(db.name + "*"):
        path.unlink()
    fresh_dagster_home(p)

    assert "no ledger there" in baton(p, "db", "rebuild").stderr  # only db init creates one
    assert baton(p, "db", "init").returncode == 0
    proc = baton(p, "db", "rebuild")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 evaluation task(s), 6 analysis(es); submitted nothing" in proc.stdout, proc.stdout
    p.ledger = open_ledger(p.config.ledger_url)
    after = snapshot(p.ledger, exps)
    assert after["jobs"] == before["jobs"]
    same(before["evaluations"], after["evaluations"])
    same(before["analyses"], after["analyses"])
    rows, generated = generations(p.ledger, exps[0])
    assert generated == retrained[1]
    ended = {j[JOB_FIELDS.index("job_id")]: j[JOB_FIELDS.index("ended_at")]
             for j in before["jobs"]}
    for old, new in zip(retrained[0], rows, strict=True):
        if new[-1] == 2:
            assert new == old
        else:  # its signals were written over by the retrain's: accounting's end
            assert new[:-2] == old[:-2] and new[-2] == ended[new[0]], (old, new)
    assert [(c.tag, c.type, c.active) for c in p.ledger.list_campaigns()] == campaigns
    # a second rebuild refuses, and changes nothing
    again = baton(p, "db", "rebuild")
    assert again.returncode == 1 and "already holds" in again.stderr
    assert snapshot(p.ledger, exps) == after

    # the daemon, restarted on the rebuilt ledger and a new Dagster home, catches Dagster
    # up to every report and submits nothing
    p.start()
    try:
        for exp in exps:
            p.wait_for(f"analysis_report of {exp} again",
                       lambda e=exp: p.materialized("analysis_report", e))
    finally:
        p.stop()
    assert accounted(tokens | {(j.metadata or {}).get("token") for j in p.ledger.jobs()}) \
        == submitted  # no sbatch call
    assert sorted((p.drive.logs / "scripts").rglob("*.sh")) == scripts
    assert snapshot(p.ledger, exps)["jobs"] == before["jobs"]
    assert p.ledger.held_experiments() == []
