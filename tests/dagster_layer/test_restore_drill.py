"""The restore drill (issue 16), in process on the local backend, on SQLite and
PostgreSQL: experiments run to completion, the ledger is backed up while in use, the
daemon stops, the ledger is destroyed and restored from the backup, the daemon starts
again (Dagster's own storage kept), and the pipeline carries on: every job, evaluation
and analysis is there as before, nothing is asked or submitted again, and a new
experiment goes through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from baton.ledger import open_ledger
from baton.ledger.engine import normalize_url, sqlite_file
from baton.maintenance.backups import backups
from tests.dagster_layer.test_rebuild_after_hold import next_run, requests, snapshot, submissions
from tests.e2e.harness import PER_SIGNAL, InProcess


def _through_analysis(site: InProcess, experiments: list[str]) -> None:
    for exp in experiments:
        site.train(exp)
    for req in requests(site.tick("training_sensor")):
        assert site.run(req, "training_sensor").success
    for exp in experiments:
        assert site.run(next_run(site, "evaluation_sensor", exp), "evaluation_sensor").success
    for exp in experiments:
        assert site.run(next_run(site, "analysis_sensor", exp), "analysis_sensor").success
    site.wait_for("every job's figures", lambda: all(j.figures for j in site.ledger.jobs()),
                  between=lambda: site.tick("slurm_tracker"))


def _stop(site: InProcess) -> None:
    """The daemon stops: its ledger connections close (the restore needs no --force)."""
    from resources import _ledger

    site.ledger.close()
    _ledger(site.config.ledger_url).close()
    _ledger.cache_clear()


def _destroy(url: str) -> None:
    path = sqlite_file(url)
    if path is not None:
        for p in path.parent.glob(path.name + "*"):
            p.unlink()
        return
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def _baton(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=300, check=False)


def test_back_up_destroy_restore_and_carry_on(tmp_path: Path, ledger_url: str) -> None:
    env = {"BATON_DATABASE_URL": ledger_url}
    experiments = ["drill-a", "drill-b", "drill-c"]
    with InProcess(tmp_path, extra_env=env, sensors=PER_SIGNAL) as site:
        _through_analysis(site, experiments)
        before = {e: snapshot(site.ledger, e) for e in experiments}
        submitted = submissions(site)
        assert submitted == 6 and len(site.ledger.jobs()) == 6
        proc = _baton("db", "backup")  # online: the daemon's ledger is open
        assert proc.returncode == 0, proc.stderr
        _stop(site)
        _destroy(ledger_url)
        assert "no ledger" in _baton("db", "check").stdout + _baton("db", "check").stderr
        [(_, copy)] = backups(site.config.backup_dir)
        proc = _baton("db", "restore", str(copy))
        assert proc.returncode == 0, proc.stdout + proc.stderr

        site.ledger = open_ledger(site.config.ledger_url)  # the daemon starts again
        assert {e: snapshot(site.ledger, e) for e in experiments} == before
        for sensor in ("training_sensor", "evaluation_sensor", "analysis_sensor"):
            assert requests(site.tick(sensor)) == []  # nothing is asked again
        _through_analysis(site, ["drill-d"])
        assert submissions(site) == submitted + 2  # the new one's two jobs, nothing else
        after = {e: snapshot(site.ledger, e) for e in experiments}
        for e in experiments:
            assert after[e]["jobs"][:6] == before[e]["jobs"]  # then drill-d's two
            assert after[e]["evaluations"] == before[e]["evaluations"]
            assert after[e]["analysis"] == before[e]["analysis"]
        _stop(site)
