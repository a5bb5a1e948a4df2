"""Status reports from any script: the spool on the shared drive goes into the ledger every
tick, each event once (``baton.jobstatus.ingest``); a spool file that cannot be ingested is
set aside and named in the tick's reason, and the sensor keeps beating."""


from dagster import (
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from baton.config import Config
from baton.jobstatus.ingest import ingest, set_aside_files
from baton.jobstatus.report import rejected_folder
from baton.logs import forwarded
from resources import LedgerResource, SharedDriveResource


def build_status_sensor(config: Config) -> SensorDefinition:
    """The status-report sensor, ticking every ``sensors.interval_seconds`` of ``config``."""

    @sensor(name="status_reports", minimum_interval_seconds=config.sensors.interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Ingests the status reports scripts spool on the shared drive "
                        "(`baton status report`) into the ledger, each event exactly once.")
    def status_reports(context: SensorEvaluationContext, drive: SharedDriveResource,
                       ledger: LedgerResource) -> SkipReason:
        with forwarded(context.log, sensor="status_reports"):
            return ingest_reports(context, drive, ledger)

    return status_reports


def ingest_reports(context: SensorEvaluationContext, drive: SharedDriveResource,
                   ledger: LedgerResource) -> SkipReason:
    """One tick of the status-report sensor."""
    led = ledger.ledger()
    root = drive.layout().root
    new = ingest(root, led)  # a file it cannot take is set aside; the others go in
    detail = f"{new} status report(s) ingested"
    waiting = set_aside_files(root)
    if waiting:
        detail += (f"; {waiting} file(s) set aside in {rejected_folder(root)}, each with its "
                   ".reason")
    led.heartbeat("status_reports", detail)
    if new or waiting:
        context.log.info(detail)
    return SkipReason(detail)
