"""The SIGKILL drill on the real Slurm: the dagster-daemon's whole process group (its code
server and every run it launched) is killed while evaluations are being submitted, and
restarted 2 s later each time; every experiment still ends with exactly one evaluation,
in the ledger and in Slurm, and its `evaluation_job` event in Dagster.

By default the training sensor's tick submits (``sensors.submit_in_tick``): an sbatch
wrapper (tests/e2e/sbatch_killer.py) kills the group just before the tick's real sbatch
(claims, no job) and just after another tick's (a job whose reply baton never read, its
events never stored). With the submission in runs, the kills are placed inside the runs:
first while a `submit_evaluation` run is STARTING (nothing claimed: the run is orphaned
before its submission, the issue's case), then just before the real sbatch of one run
and just after another's."""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from dagster import DagsterRunStatus, RunsFilter

from baton.dagster_instance import RunMonitoring
from tests.e2e.harness import Pipeline
from tests.e2e.sbatch_killer import evaluation_tasks_in_slurm, install

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

SIGNALS = 5
JOB = "submit_evaluations"  # one run submits the evaluations a tick found due
# orphaned runs fail within seconds here, so the drill fits in a few minutes
MONITORING = RunMonitoring(start_timeout_seconds=20, max_runtime_seconds=40,
                           poll_interval_seconds=2)


def restart_after_crash(p: Pipeline, timeout: float = 300) -> None:
    """Wait for the wrapper to kill the daemon's group, then start it again 2 s later."""
    assert p.daemon is not None
    try:
        p.daemon.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the sbatch wrapper never killed the daemon\n"
                             + p.log_tail()) from None
    p.daemon = None
    time.sleep(2)
    p.start()


def kill_while_starting(p: Pipeline, timeout: float = 180) -> list[str]:
    """SIGKILL the daemon's group the moment a submit_evaluations run (the tick's due
    evaluations, sensors.batch) is STARTING; returns that run's experiments."""
    instance = p.instance()
    deadline = time.monotonic() + timeout
    while True:
        runs = instance.get_run_records(RunsFilter(job_name=JOB,
                                                   statuses=[DagsterRunStatus.STARTING]),
                                         limit=1)
        if runs:
            p.kill(signal.SIGKILL, group=True)
            [config] = runs[0].dagster_run.run_config["ops"].values()
            return config["config"]["experiments"]
        assert time.monotonic() < deadline, f"no {JOB} run started\n" + p.log_tail()
        time.sleep(0.05)


def test_daemon_killed_inside_submitting_runs_evaluates_each_experiment_once(
        tmp_path: Path) -> None:
    p, exps, release = _drill(tmp_path, "kill", "  submit_in_tick: false\n")
    started = time.monotonic()
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")  # sacct's local time
    p.start()
    try:
        for exp in exps:
            p.train(exp)
        orphans = kill_while_starting(p)
        # the case: a run orphaned before it claimed anything
        assert not any(p.ledger.jobs(experiment=e, stage="evaluation") for e in orphans)
        time.sleep(2)
        p.start()
        restart_after_crash(p)  # sbatch call 1: killed before the real sbatch
        restart_after_crash(p)  # sbatch call 2: killed after it (Slurm has the job)
        _evaluated(p, exps, release)
    finally:
        release.touch()
        p.stop()
    _once_each(p, tmp_path, exps, since)
    # the orphaned runs were asked for again, under new run keys
    instance = p.instance()
    keys = [r.dagster_run.tags.get("dagster/run_key", "") for r in instance.get_run_records(
        RunsFilter(job_name=JOB))]
    assert any("#" in k for k in keys), keys
    print(f"drill of {SIGNALS} signals, 3 kills: {time.monotonic() - started:.0f} s")


def test_daemon_killed_inside_the_ticks_submission_evaluates_each_experiment_once(
        tmp_path: Path) -> None:
    p, exps, release = _drill(tmp_path, "tick")
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    for exp in exps[:2]:  # written before the daemon starts: its first tick takes both
        p.train(exp)
    p.start()
    try:
        restart_after_crash(p)  # sbatch call 1, the tick's: killed before the real sbatch
        assert p.instance().get_runs() == []  # so it was the tick's, not a run's
        assert all(p.ledger.jobs(experiment=e, stage="evaluation") for e in exps[:2])
        for exp in exps[2:]:
            p.train(exp)
        restart_after_crash(p)  # sbatch call 2, the next tick's: killed after it
        _evaluated(p, exps, release)
    finally:
        release.touch()
        p.stop()
    _once_each(p, tmp_path, exps, since)
    # the claims of call 1 failed (no job carries their token): a run submitted them
    assert p.instance().get_runs(RunsFilter(job_name=JOB))


def _drill(tmp_path: Path, prefix: str, sensors_config: str = ""
           ) -> tuple[Pipeline, list[str], Path]:
    """The drill's pipeline on the real Slurm, its experiments, and the file that releases
    their held evaluations: the sbatch wrapper kills at call 1 (before the real sbatch) and
    call 2 (after it); a claim whose submitter died is settled after 15 s."""
    token = secrets.token_hex(3)
    exps = [f"{prefix}{i}-{token}" for i in range(SIGNALS)]
    release = tmp_path / "release"
    env = {**install(tmp_path, "1:before,2:after"),
           "FAKE_EVAL_HOLD": ",".join(exps), "FAKE_EVAL_RELEASE": str(release)}
    return Pipeline(tmp_path, "sbatch", env, slurm_config="  stale_claim_seconds: 15\n",
                    monitoring=MONITORING, sensors_config=sensors_config), exps, release


def _evaluated(p: Pipeline, exps: list[str], release: Path) -> None:
    """Every experiment's evaluation through to its metrics. The jobs are held until the
    tracker has adopted the job whose reply was lost (by its token) and every task has its
    job id, so the kills land while all are queued (a job ending before its adoption is
    tests/pipeline/test_crash_after_sbatch.py's)."""
    p.wait_for("every experiment's evaluation task in the ledger", lambda: all(
        any(t.slurm_job_id for t in p.ledger.evaluation_tasks(e)) for e in exps),
        timeout=420)
    release.touch()
    for exp in exps:
        p.wait_for(f"evaluation_metrics of {exp}",
                   lambda e=exp: p.materialized("evaluation_metrics", e), timeout=300)
        # the event of a submission whose submitter died: emitted by a later tick, once
        # run monitoring has failed the run that made it (it waits for a run in flight)
        p.wait_for(f"evaluation_job of {exp}",
                   lambda e=exp: p.materialized("evaluation_job", e), timeout=300)


def _once_each(p: Pipeline, tmp_path: Path, exps: list[str], since: str) -> None:
    """The kills came as placed; one evaluation per experiment in the ledger and in
    Slurm (one task of an array, the one the ledger holds)."""
    calls = (tmp_path / "sbatch-calls.log").read_text().splitlines()
    assert calls[:2] == ["1 killed before", "2 killed after"], calls
    rows = {e: p.ledger.jobs(experiment=e, stage="evaluation") for e in exps}
    assert {e: len(r) for e, r in rows.items()} == dict.fromkeys(exps, 1), rows
    in_slurm = evaluation_tasks_in_slurm(tmp_path, since)
    ledger_jobs = sorted((r[0].job_id, (r[0].metadata or {}).get("token"))
                         for r in rows.values())
    assert in_slurm == ledger_jobs, (in_slurm, ledger_jobs)
