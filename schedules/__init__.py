"""The ledger's lifetime on Dagster schedules: a daily backup, a weekly VACUUM, a monthly
archive of settled history and a daily pruning of Slurm's logs. Each op runs the same
function as its ``baton db`` command (baton/maintenance), with the code location's
configuration; a failure fails the run (and a failed backup is recorded in the ledger, which
the exporter's ``baton_ledger_backup_failures_total`` counts)."""

from datetime import timedelta

from dagster import (
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from baton.maintenance.archive import archive
from baton.maintenance.backups import backup
from baton.maintenance.logprune import prune
from baton.maintenance.vacuum import vacuum
from resources import LedgerResource


@op(description="`baton db backup`: copy, verify and rotate the ledger's backups.")
def backup_ledger(context: OpExecutionContext, ledger: LedgerResource) -> None:
    result = backup(ledger.settings)
    context.log.info(f"backed up to {result.path} ({result.size} bytes, verified); "
                     f"rotated out {len(result.removed)}")


@op(description="`baton db vacuum`: give the space of deleted rows back.")
def vacuum_ledger(context: OpExecutionContext, ledger: LedgerResource) -> None:
    before, after = vacuum(ledger.settings)
    context.log.info(f"ledger vacuumed: {before} -> {after} bytes")


@op(description="`baton db archive`: move settled history to Parquet, then VACUUM.")
def archive_history(context: OpExecutionContext, ledger: LedgerResource) -> None:
    config = ledger.settings
    result = archive(config, timedelta(days=config.retention.archive_after_days))
    for line in result.lines():
        context.log.info(line)


@op(description="`baton db prune`: compress, then delete, successful jobs' Slurm logs.")
def prune_logs(context: OpExecutionContext, ledger: LedgerResource) -> None:
    context.log.info(prune(ledger.settings).line())


@job(description="Back up the ledger (baton db backup).")
def ledger_backup_job() -> None:
    backup_ledger()


@job(description="VACUUM the ledger (baton db vacuum).")
def ledger_vacuum_job() -> None:
    vacuum_ledger()


@job(description="Archive settled history to Parquet (baton db archive).")
def ledger_archive_job() -> None:
    archive_history()


@job(description="Compress and delete successful jobs' Slurm logs (baton db prune).")
def log_retention_job() -> None:
    prune_logs()


def _schedule(name: str, cron: str, target: object) -> ScheduleDefinition:
    return ScheduleDefinition(name=name, cron_schedule=cron, job=target,
                              execution_timezone="UTC",
                              default_status=DefaultScheduleStatus.RUNNING)


SCHEDULES = [
    _schedule("ledger_backup_daily", "15 2 * * *", ledger_backup_job),
    _schedule("ledger_vacuum_weekly", "45 3 * * 0", ledger_vacuum_job),
    _schedule("ledger_archive_monthly", "30 4 1 * *", ledger_archive_job),
    _schedule("log_retention_daily", "0 5 * * *", log_retention_job),
]
