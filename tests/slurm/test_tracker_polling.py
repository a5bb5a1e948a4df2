"""The tracker on a shared Slurm: it backs off when Slurm answers slowly, skips its poll
(never waits) while the installation's call budget is spent, and a job id Slurm reused
cannot end our job. The real sensor (Dagster's public API), the real ledger (SQLite and
PostgreSQL), the real single-node Slurm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import build_sensor_context
from sqlalchemy import update

from baton.config import Config, load_config
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import slurm_jobs
from baton.pipeline.polling import PollClock
from baton.slurm.budget import read_calls
from baton.slurm.sbatch import SbatchBackend
from tests.slurm.test_slurm_real import submit, wait_done

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def test_the_poll_interval_is_the_setting_or_five_times_the_last_poll() -> None:
    assert PollClock().due(1000.0, 15)  # never polled: now
    quick = PollClock(at=1000.0, duration=0.2)
    assert quick.wait(15) == 15 and not quick.due(1014.0, 15) and quick.due(1015.0, 15)
    slow = PollClock(at=1000.0, duration=12.0)  # a loaded controller: asked 5x less often
    assert slow.wait(15) == 60 and not slow.due(1059.0, 15) and slow.due(1060.0, 15)
    assert PollClock.parse(slow.dump()) == slow
    assert PollClock.parse("an older tracker's cursor") == PollClock()


def site(tmp_path: Path, **slurm: float) -> Config:
    settings = "".join(f"  {k}: {v}\n" for k, v in slurm.items())
    path = tmp_path / "baton.yaml"
    path.write_text(f"shared_drive: {tmp_path / 'drive'}\nstate_dir: {tmp_path / 'state'}\n"
                    f"slurm:\n  backend: sbatch\n{settings}"
                    "sensors:\n  interval_seconds: 1\n")
    config = load_config(path, env={})
    config.drive.create()
    return config


def tracked(ledger: Ledger, job_id: str) -> int:
    claim = ledger.claim_submission(f"script:{job_id}", stage="script", experiment="e",
                                    backend="sbatch")
    ledger.mark_submitted(claim.row_id, job_id)
    return claim.row_id


def tick(config: Config, ledger_url: str, cursor: str | None = None) -> tuple[str, str | None]:
    import resources
    from sensors.tracker import build_tracker

    res = {"slurm": resources.SlurmResource(settings=config, backend="sbatch"),
           "ledger": resources.LedgerResource(settings=config, url=ledger_url)}
    with build_sensor_context(resources=res, cursor=cursor) as ctx:
        reason = str(build_tracker(config)(ctx).skip_message)
        return reason, ctx.cursor


def test_the_tracker_backs_off_and_skips_its_poll_when_the_budget_is_spent(
        tmp_path: Path, ledger_url: str) -> None:
    config = site(tmp_path, calls_per_second=0.01, calls_burst=2, poll_wait_seconds=0)
    ledger = open_ledger(ledger_url, init=True)
    plain = SbatchBackend()  # submits outside the budget: the tracker's calls are counted
    job = submit(plain, tmp_path, "held", "true", extra=("--hold",))
    try:
        tracked(ledger, job)
        reason, cursor = tick(config, ledger_url)
        assert "1 answered" in reason, reason
        assert read_calls(config.state_dir) == {("squeue", "daemon"): 1}  # queued: squeue
        assert PollClock.parse(cursor).at is not None
        # the last poll took 30 s (a loaded controller): the next one waits 150 s
        reason, _ = tick(config, ledger_url, PollClock(datetime.now(UTC).timestamp(),
                                                       30).dump())
        assert "polled every 150s" in reason, reason
        assert read_calls(config.state_dir) == {("squeue", "daemon"): 1}  # nothing asked
        tick(config, ledger_url)  # the burst's second token
        started = datetime.now(UTC)
        reason, cursor = tick(config, ledger_url)  # none left: skipped, not waited for
        assert "budget is spent" in reason, reason
        assert datetime.now(UTC) - started < timedelta(seconds=30)
        assert read_calls(config.state_dir) == {("squeue", "daemon"): 2}  # not counted
    finally:
        plain.cancel([job])
        ledger.close()


def test_a_reused_job_id_does_not_report_its_old_job_on_ours(
        tmp_path: Path, ledger_url: str) -> None:
    config = site(tmp_path)
    ledger = open_ledger(ledger_url, init=True)
    plain = SbatchBackend()
    old = submit(plain, tmp_path, "old", "exit 3")
    assert wait_done(plain, [old])[old].state == "FAILED"
    # Slurm hands the same id to our job an hour later (MaxJobId wrapped, or the
    # controller's state was reset): sacct --jobs=<id> answers with the old job
    row_id = tracked(ledger, old)
    later = datetime.now(UTC) + timedelta(hours=1)
    with ledger.engine.begin() as conn:
        conn.execute(update(slurm_jobs).where(slurm_jobs.c.id == row_id).values(
            created_at=later, submitted_at=later))
    reason, _ = tick(config, ledger_url)
    assert "0 answered" in reason, reason
    row = ledger.job(row_id)
    assert row.state == "PENDING" and row.exit_code is None  # not the old job's FAILED
    assert ("sacct", "daemon") in read_calls(config.state_dir)  # left the queue: sacct
    ledger.close()


def test_a_job_no_source_knows_ends_only_by_its_own_word(tmp_path: Path,
                                                         ledger_url: str) -> None:
    """Ids no Slurm source knows (the queue, accounting and the controller are all asked,
    for real): slurmdbd down and the controller past MinJobAge look like this. The job
    whose output ends with the template's last line ends with that exit code; the one
    without it keeps its state: absence alone fails nothing."""
    config = site(tmp_path)
    ledger = open_ledger(ledger_url, init=True)
    said, silent = tmp_path / "said.out", tmp_path / "silent.out"
    said.write_text("[baton] 2026-12-07T05:00:00Z evaluation of e on vm as job 66999991\n"
                    "[baton] 2026-12-07T05:03:00Z evaluation of e ended with exit code 3\n")
    silent.write_text("[baton] 2026-12-07T05:00:00Z evaluation of e on vm as job 66999992\n")
    rows = {}
    for job, out in (("66999991", said), ("66999992", silent)):
        claim = ledger.claim_submission(f"script:{job}", stage="script", experiment="e",
                                        backend="sbatch")
        ledger.mark_submitted(claim.row_id, job, stdout_path=str(out))
        rows[job] = claim.row_id
    reason, _ = tick(config, ledger_url)
    assert "1 answered, 1 changed" in reason, reason
    ended = ledger.job(rows["66999991"])
    assert (ended.state, ended.exit_code) == ("FAILED", 3)
    assert ended.ended_at.replace(tzinfo=UTC) == datetime(2026, 12, 7, 5, 3, tzinfo=UTC)
    assert ended.figures is None  # accounting is still asked for its figures
    assert ledger.job(rows["66999992"]).state == "PENDING"
    calls = {c for c, _ in read_calls(config.state_dir)}
    assert {"squeue", "sacct", "scontrol"} <= calls  # every source was asked first
    ledger.close()
