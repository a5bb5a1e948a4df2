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

from baton.ledger import Ledger
from tests.e2e.harness import InProcess

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


def submissions(site: InProcess) -> int:
    return len(list((site.config.state_dir / "local-slurm" / "submissions").glob("*.json")))


def test_rebuild_releases_the_hold_and_gives_back_the_history(tmp_path: Path,
                                                             ledger_url: str) -> None:
    with InProcess(tmp_path) as site:
        site.train("past", checkpoints=[site.checkpoint("past", 100)])  # an array of two
        [req] = requests(site.tick("training_sensor"))
        assert site.run(req, "training_sensor").success
        assert site.run(next_run(site, "evaluation_sensor", "past"), "evaluation_sensor").success
        assert site.run(next_run(site, "analysis_sensor", "past"), "analysis_sensor").success
        site.wait_for("every job's figures", lambda: all(j.figures for j in site.ledger.jobs()),
                      between=lambda: site.tick("slurm_tracker"))
        before = snapshot(site.ledger, "past")
        submitted = submissions(site)
        assert submitted == 2 and len(before["jobs"]) == 3

    # the ledger and the Dagster instance are lost; the drive and Slurm remember
    # (rebuilt into SQLite or PostgreSQL)
    new = ledger_url if not ledger_url.startswith("sqlite") else \
        f"sqlite:///{tmp_path / 'state' / 'new-ledger.db'}"
    lost = {"BATON_DATABASE_URL": new}
    with InProcess(tmp_path, extra_env=lost) as site:
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


def test_a_retrained_experiment_rebuilds_its_latest_generation_and_names_the_rest(
        tmp_path: Path) -> None:
    """The drive keeps only the latest training signal of an experiment: its jobs come
    back (as generation 1), the earlier generation's are named as not rebuilt, and
    nothing is submitted again."""

    def through_analysis(site: InProcess) -> None:
        [req] = requests(site.tick("training_sensor"))
        assert site.run(req, "training_sensor").success
        assert site.run(next_run(site, "evaluation_sensor", "re"), "evaluation_sensor").success
        assert site.run(next_run(site, "analysis_sensor", "re"), "analysis_sensor").success

    with InProcess(tmp_path) as site:
        site.train("re")
        through_analysis(site)
        site.train("re")  # retrained: a new signal in the same place
        through_analysis(site)
        latest = [j.job_id for j in site.ledger.jobs()][2:]
        submitted = submissions(site)
    lost = {"BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'new-ledger.db'}"}
    with InProcess(tmp_path, extra_env=lost) as site:
        proc = subprocess.run([sys.executable, "-m", "baton", "db", "rebuild"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        not_rebuilt = [line for line in proc.stdout.splitlines()
                       if line.startswith("not rebuilt:")]
        assert len(not_rebuilt) == 2, proc.stdout
        assert "no training signal of re before it" in not_rebuilt[0]
        assert "no evaluation of re before it" in not_rebuilt[1]
        assert [j.job_id for j in site.ledger.jobs()] == latest
        assert [t.generation for t in site.ledger.evaluation_tasks("re")] == [1]
        assert requests(site.tick("training_sensor")) == []
        assert site.run(next_run(site, "evaluation_sensor", "re"), "evaluation_sensor").success
        assert submissions(site) == submitted
