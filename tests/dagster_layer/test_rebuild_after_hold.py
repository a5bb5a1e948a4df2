"""A lost ledger, in process on the local backend: the daemon facing the drive with a new
ledger (and a new Dagster instance) holds the experiment it already evaluated; `baton db
rebuild` then gives back its jobs, evaluation and analysis as they were (the signals the
new ledger had already taken are applied again) and releases the hold; the sensors then
catch Dagster up and nothing is submitted again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from dagster import RunRequest, SensorResult
from sqlalchemy import select

from baton.ledger import Ledger
from baton.ledger.schema import analysis_jobs, checkpoints, evaluation_jobs
from tests.e2e.harness import PER_SIGNAL, InProcess

FIELDS = ("submission_key", "stage", "experiment", "attempt", "backend", "job_id",
          "array_job_id", "array_task_id", "state", "submitted_at", "started_at",
          "ended_at", "exit_code", "req_mem_mb", "req_time_s", "script_path", "stdout_path")


def requests(result: object) -> list[RunRequest]:
    return list(result.run_requests or []) if isinstance(result, SensorResult) else []


def snapshot(ledger: Ledger, exp: str) -> dict[str, Any]:
    analysis = ledger.current_analysis(exp)
    return {
        "jobs": [tuple(getattr(j, f) for f in FIELDS) for j in ledger.jobs()],
        "evaluations": [(t.slurm_job_id, t.status, t.checkpoint_path, t.trigger_key,
                         t.completed_at, t.generation) for t in ledger.evaluation_tasks(exp)],
        "analysis": (analysis.slurm_job_id, analysis.status, analysis.trigger_key,
                     analysis.completed_at, analysis.generation),
    }


def next_run(site: InProcess, sensor: str, exp: str) -> RunRequest:
    """Tick ``sensor`` (and the tracker) until it asks for a run of ``exp``."""
    found: list[RunRequest] = []

    def ready() -> bool:
        found.extend(r for r in requests(site.tick(sensor)) if r.partition_key == exp)
        return bool(found)

    site.wait_for(f"{sensor} to ask for {exp}", ready,
                  between=lambda: site.tick("slurm_tracker"))
    return found[0]


def through_analysis(site: InProcess, exp: str) -> None:
    """The experiment's training signal taken, evaluated and analysed, every job's
    figures in."""
    [req] = requests(site.tick("training_sensor"))
    assert site.run(req, "training_sensor").success
    assert site.run(next_run(site, "evaluation_sensor", exp), "evaluation_sensor").success
    assert site.run(next_run(site, "analysis_sensor", exp), "analysis_sensor").success
    site.wait_for("every job's figures", lambda: all(j.figures for j in site.ledger.jobs()),
                  between=lambda: site.tick("slurm_tracker"))


def submissions(site: InProcess) -> int:
    return len(list((site.config.state_dir / "local-slurm" / "submissions").glob("*.json")))


def test_rebuild_releases_the_hold_and_gives_back_the_history(tmp_path: Path,
                                                             ledger_url: str) -> None:
    with InProcess(tmp_path, sensors=PER_SIGNAL) as site:
        site.train("past", checkpoints=[site.checkpoint("past", 100)])  # an array of two
        through_analysis(site, "past")
        before = snapshot(site.ledger, "past")
        submitted = submissions(site)
        assert submitted == 2 and len(before["jobs"]) == 3

    # the ledger and the Dagster instance are lost; the drive and Slurm remember
    # (rebuilt into SQLite or PostgreSQL)
    new = ledger_url if not ledger_url.startswith("sqlite") else \
        f"sqlite:///{tmp_path / 'state' / 'new-ledger.db'}"
    lost = {"BATON_DATABASE_URL": new}
    with InProcess(tmp_path, extra_env=lost, sensors=PER_SIGNAL) as site:
        assert site.ledger.jobs() == []
        assert requests(site.tick("training_sensor")) == []  # held
        assert [e for e, _ in site.ledger.held_experiments()] == ["past"]
        site.tick("evaluation_sensor")  # takes the old signals: nothing to answer yet
        site.tick("analysis_sensor")

        # a script whose job accounting does not know (submitted where comments are not
        # kept): named, and the rest is rebuilt
        [kept] = (site.drive.logs / "scripts" / "analysis").rglob("*.sh")
        ghost = kept.with_name("slurm_analysis_past.attempt-1.20000101T000000000000Z.sh")
        ghost.write_text(kept.read_text().replace("--comment=baton-", "--comment=baton-x"))
        proc = subprocess.run([sys.executable, "-m", "baton", "db", "rebuild"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "rebuilt 2 job(s): 2 evaluation task(s), 1 analysis(es); submitted nothing" \
            in proc.stdout, proc.stdout
        assert f"not rebuilt: {ghost}: no job with comment baton-x" in proc.stdout
        assert snapshot(site.ledger, "past") == before
        assert site.ledger.held_experiments() == []

        assert requests(site.tick("training_sensor")) == []  # evaluated: nothing to submit
        assert site.run(next_run(site, "evaluation_sensor", "past"), "evaluation_sensor").success
        assert site.run(next_run(site, "analysis_sensor", "past"), "analysis_sensor").success
        assert submissions(site) == submitted  # no sbatch
        assert snapshot(site.ledger, "past")["jobs"] == before["jobs"]

        again = subprocess.run([sys.executable, "-m", "baton", "db", "rebuild"],
                               capture_output=True, text=True, check=False)
        assert again.returncode == 1 and "already holds" in again.stderr
        assert "Traceback" not in again.stderr


def stage_rows(ledger: Ledger, exp: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every generation's evaluation tasks and analyses (not only the current ones)."""
    with ledger.read() as conn:
        return {
            "evaluations": [(r.slurm_job_id, r.status, r.checkpoint_path, r.trigger_key,
                             r.completed_at, r.generation) for r in conn.execute(
                select(evaluation_jobs).where(evaluation_jobs.c.experiment_name == exp)
                .order_by(evaluation_jobs.c.id))],
            "analyses": [(r.slurm_job_id, r.status, r.trigger_key, r.completed_at,
                          r.generation) for r in conn.execute(
                select(analysis_jobs).where(analysis_jobs.c.experiment_name == exp)
                .order_by(analysis_jobs.c.id))],
        }


def generations(ledger: Ledger, exp: str) -> list[tuple[Any, ...]]:
    return [(g.generation, g.signal_key, g.signal_time, g.checkpoint_path)
            for g in ledger.training_generations(exp)]


def test_a_retrained_experiment_rebuilds_every_generation(tmp_path: Path) -> None:
    """The drive keeps only the latest training signal of an experiment (and the latest
    signal of each evaluation task and analysis): the scripts kept for audit name the
    signal and the generation each task answers, so the earlier generation's jobs,
    evaluation and analysis come back too (a task whose signal was written over: its state
    and end from accounting), the latest signal is generation 2 again, and nothing is
    submitted again. Scripts written before they named it rebuild the latest generation
    (as generation 1) and name the earlier one's jobs."""

    with InProcess(tmp_path, sensors=PER_SIGNAL) as site:
        kept = site.checkpoint("re", 100)  # its task's signal is not written over
        site.train("re", checkpoints=[kept])  # an array: final and checkpoint 100
        through_analysis(site, "re")
        site.train("re", checkpoints=[site.checkpoint("re", 200)])  # retrained
        through_analysis(site, "re")
        jobs = snapshot(site.ledger, "re")["jobs"]
        rows = stage_rows(site.ledger, "re")
        before = generations(site.ledger, "re")
        submitted = submissions(site)
    assert [g[0] for g in before] == [1, 2] and len(jobs) == 6
    assert [r[-1] for r in rows["evaluations"]] == [1, 1, 2, 2]
    assert [r[-1] for r in rows["analyses"]] == [1, 2]
    ended = {j[FIELDS.index("job_id")]: j[FIELDS.index("ended_at")] for j in jobs}

    def rebuilt_as_before(site: InProcess) -> None:
        proc = subprocess.run([sys.executable, "-m", "baton", "db", "rebuild"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "rebuilt 4 job(s): 4 evaluation task(s), 2 analysis(es)" in proc.stdout
        assert snapshot(site.ledger, "re")["jobs"] == jobs
        assert generations(site.ledger, "re") == before
        rebuilt = stage_rows(site.ledger, "re")
        for kind in ("evaluations", "analyses"):
            for old, new in zip(rows[kind], rebuilt[kind], strict=True):
                if new[-1] == 2 or kept in new:  # as their signals say
                    assert new == old
                    continue
                # the earlier generation's signal was written over: accounting's end
                end = new[-2]
                assert new[:-2] == old[:-2] and new[-1] == old[-1] == 1, (old, new)
                assert end == ended[new[0]] and abs((end - old[-2]).total_seconds()) < 60
        assert site.ledger.training_run("re").generation == 2
        with site.ledger.read() as conn:
            assert {r.checkpoint_path for r in conn.execute(select(checkpoints))} == {
                str(site.drive.experiment("re").final_dir), kept,
                site.drive.experiment("re").checkpoint(200).as_posix()}

    # straight into a new ledger
    new = {"BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'rebuilt-ledger.db'}"}
    with InProcess(tmp_path, extra_env=new, sensors=PER_SIGNAL) as site:
        rebuilt_as_before(site)
    # or after the daemon ran on the empty ledger: it took the latest signal as
    # generation 1 (and held the experiment); the rebuild numbers it 2 again
    lost = {"BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'new-ledger.db'}"}
    with InProcess(tmp_path, extra_env=lost, sensors=PER_SIGNAL) as site:
        assert requests(site.tick("training_sensor")) == []  # held
        assert [g[0] for g in generations(site.ledger, "re")] == [1]
        site.tick("evaluation_sensor")
        site.tick("analysis_sensor")
        rebuilt_as_before(site)
        assert requests(site.tick("training_sensor")) == []
        assert site.run(next_run(site, "evaluation_sensor", "re"), "evaluation_sensor").success
        assert submissions(site) == submitted

    # scripts written before the renderer named the signal: today's rebuild
    for script in (site.drive.logs / "scripts").rglob("*.sh"):
        script.write_text("".join(line for line in script.read_text().splitlines(True)
                                  if not line.startswith("# baton-trigger:")))
    older = {"BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'older-ledger.db'}"}
    with InProcess(tmp_path, extra_env=older, sensors=PER_SIGNAL) as site:
        proc = subprocess.run([sys.executable, "-m", "baton", "db", "rebuild"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        not_rebuilt = [line for line in proc.stdout.splitlines()
                       if line.startswith("not rebuilt:")]
        assert len(not_rebuilt) == 2, proc.stdout
        assert "no training signal of re before it" in not_rebuilt[0]
        assert "no evaluation of re before it" in not_rebuilt[1]
        assert snapshot(site.ledger, "re")["jobs"] == jobs[3:]
        assert [t.generation for t in site.ledger.evaluation_tasks("re")] == [1, 1]
