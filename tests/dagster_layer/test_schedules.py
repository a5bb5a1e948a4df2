"""The ledger's upkeep runs by itself: the code location carries the four schedules
(running by default, in UTC), and each schedule's job, run in process by Dagster, does
what its command does (a backup written and recorded; a vacuum, an archive and a
pruning recorded)."""

from __future__ import annotations

from pathlib import Path

from dagster import DefaultScheduleStatus, build_schedule_context

from baton.config import Config
from baton.ledger import open_ledger
from baton.maintenance.backups import backups
from definitions import build_definitions
from resources import build_resources

EXPECTED = {"ledger_backup_daily": ("15 2 * * *", "ledger_backup_job", "backup"),
            "ledger_vacuum_weekly": ("45 3 * * 0", "ledger_vacuum_job", "vacuum"),
            "ledger_archive_monthly": ("30 4 1 * *", "ledger_archive_job", "archive"),
            "log_retention_daily": ("0 5 * * *", "log_retention_job", "prune")}


def test_each_schedule_runs_its_command(config: Config, tmp_path: Path) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    defs = build_definitions(config)
    schedules = {s.name: s for s in defs.schedules or []}
    assert set(schedules) == set(EXPECTED)
    for name, (cron, job_name, kind) in EXPECTED.items():
        schedule = schedules[name]
        assert (schedule.cron_schedule, schedule.job_name) == (cron, job_name)
        assert schedule.execution_timezone == "UTC"
        assert schedule.default_status == DefaultScheduleStatus.RUNNING
        with build_schedule_context() as context:
            [request] = list(schedule.evaluate_tick(context).run_requests or [])
        assert request.job_name in (None, job_name)
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(resources=build_resources(config))
        assert result.success
        assert ledger.last_run(kind) is not None, kind
    [(_, copy)] = backups(config.backup_dir)
    assert copy.is_file()
    ledger.close()
