"""``analysis_report`` recorded by the analysis sensor's own tick, without a run (issue 15).

A run is a process of Dagster and baton (150-250 MB, seconds of CPU) started to write a
few events; recording a report reads the ledger and looks for a file. So the sensor emits
the events itself in the common case: the first report of an experiment, its analysis
completed and its report in place. The rest keep a run: a failure (its partition ends
FAILED only through a failed run), a later report of the same experiment (Dagster 1.13
stores one runless check evaluation per check and partition), a request a run was
already asked for, and whatever does not fit in this tick's share of the sensor's time.

Every event is a fact. Dagster stores a tick's events after the sensor returns, so the
request is not confirmed when its events are emitted: the next tick finds the stored
materialization (it carries the request's key) and confirms it then. A daemon that dies
in between leaves the request due with its runless check spent, so a run records it."""

import time
from collections.abc import Sequence

from dagster import AssetKey, AssetRecordsFilter, RunRequest, SensorEvaluationContext

from assets.batches import OP_OF, REQUEST_KEY, partition_events, record_analyses_job
from assets.experiment import Recording, report_of
from baton.ledger import Ledger
from resources import LedgerResource, MLflowResource, SharedDriveResource
from sensors.once import in_flight, runs_of

ASSET = "analysis_report"
CHECK = "report_exists"
BUDGET_S = 20.0  # of Dagster's 60 s sensor timeout; the rest waits for the next tick


def check_once(led: Ledger, asset: str, check: str, experiment: str) -> bool:
    """Whether a sensor may report ``asset``'s ``check`` for ``experiment`` (a runless
    check evaluation): only once. Dagster 1.13 stores one runless evaluation per check and
    partition (a second breaks its unique index and fails the whole tick), so a retrain, a
    signal after a quarantined one, or a second bad signal is told by the materialization,
    the observation or the ledger alone; the checks of runs are not limited."""
    return led.record_fact(f"check:{asset}:{check}:{experiment}", "check_reported",
                           experiment)


def record_reports(context: SensorEvaluationContext, ledger: LedgerResource,
                   drive: SharedDriveResource, mlflow: MLflowResource,
                   requests: Sequence[RunRequest], alone: set[str]
                   ) -> tuple[list, list[RunRequest]]:
    """This tick's report requests, split: the events the sensor emits itself, and the
    requests left to a run. A request whose runless events Dagster stored is confirmed
    and in neither; one past the tick's time budget is in neither (it stays due)."""
    led = ledger.ledger()
    asked = in_flight(context, record_analyses_job.name, OP_OF[record_analyses_job.name])
    deadline = time.monotonic() + BUDGET_S
    events: list = []
    left: list[RunRequest] = []
    for request in requests:
        key, exp = str(request.run_key), str(request.partition_key)
        if stored(context, ASSET, exp, key):
            led.record_fact(f"run:{key}", "run_requested",
                            detail={"partition": exp, "runless": True})
            continue
        if key in alone or key in asked or runs_of(context, key):
            left.append(request)
            continue
        if time.monotonic() > deadline:
            continue
        rec = report_of(exp, ledger, drive, mlflow)
        if rec.failure is not None or rec.metadata is None or \
                not check_once(led, ASSET, CHECK, exp):
            left.append(request)
            continue
        events += partition_events(ASSET, exp, Recording(
            rec.checks, {**rec.metadata, REQUEST_KEY: key}))
    return events, left


def stored(context: SensorEvaluationContext, asset: str, exp: str, key: str) -> bool:
    """Whether Dagster holds the runless materialization of ``asset`` for ``exp`` that
    answers ``key``, among the partition's latest few."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[exp]),
        limit=5).records
    for record in records:
        mat = record.asset_materialization
        value = mat.metadata.get(REQUEST_KEY) if mat else None
        if value is not None and getattr(value, "value", value) == key:
            return True
    return False
