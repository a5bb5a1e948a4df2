"""The supervision sensor: each tick detects failed and late jobs, decides by the stage's
policy, dispatches the repair and follows it (baton.supervision.actions). A resubmission shows in
Dagster as a new attempt of the job asset: a materialization of ``evaluation_job`` (or
``analysis_job``) for the experiment, with the attempt and why."""


from typing import Any

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.partitions import experiments
from baton.config import Config
from baton.errors import BatonError
from baton.ledger import Ledger
from baton.logs import forwarded
from baton.supervision.actions import tick
from baton.units import format_memory, format_time
from resources import LedgerResource, SlurmResource

NAME = "supervisor"


def _event(sup: Any, backend: str) -> AssetMaterialization:
    return AssetMaterialization(
        asset_key=f"{sup.stage}_job", partition=sup.experiment,
        description=f"attempt {sup.attempt + 1}: {sup.note}",
        metadata={
            "slurm_job_ids": sup.repair_job_id or "", "backend": backend, "tasks": 1,
            "submitted_now": True, "attempt": sup.attempt + 1, "supervision_id": sup.id,
            "reason": sup.reason, "repairs_job": sup.job_id or "",
            "mem": format_memory(sup.new_mem_mb), "time": format_time(sup.new_time_s),
            "checkpoints": MetadataValue.json([sup.checkpoint] if sup.checkpoint else []),
        })


def _reported(context: SensorEvaluationContext, sup: Any) -> bool:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(f"{sup.stage}_job"),
                           asset_partitions=[sup.experiment]), limit=20).records
    for record in records:
        value = record.asset_materialization.metadata.get("supervision_id") \
            if record.asset_materialization else None
        if value is not None and getattr(value, "value", value) == sup.id:
            return True
    return False


def repair_events(context: SensorEvaluationContext, ledger: Ledger, backend: str
                  ) -> list[AssetMaterialization]:
    """An event for each dispatched repair Dagster does not hold yet; a repair whose event
    Dagster holds (or whose experiment is no partition) is confirmed once, as a fact."""
    events = []
    for sup in ledger.unreported_repairs():
        known = context.instance.has_dynamic_partition(experiments.name, sup.experiment)
        if not known or _reported(context, sup):
            ledger.record_fact(f"supervision:{sup.id}", "repair_reported", sup.experiment)
        else:
            events.append(_event(sup, backend))
    return events


def build_supervisor(config: Config) -> SensorDefinition:
    """The supervisor, ticking every ``sensors.interval_seconds``, deciding by the stages'
    policies (``stages.*.supervision``) of ``config``."""

    @sensor(name=NAME, minimum_interval_seconds=config.sensors.interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Supervises Slurm jobs: resubmits those that ran out of memory or time "
                        "(more of it, up to a cap), failed nodes and preemptions, cancels or "
                        "flags late jobs, gives up after the policy's attempts; every step is "
                        "recorded (`baton supervise list`).")
    def supervisor(context: SensorEvaluationContext, slurm: SlurmResource,
                   ledger: LedgerResource):
        with forwarded(context.log, sensor=NAME):
            return supervise(context, slurm, ledger, config)

    return supervisor


def supervise(context: SensorEvaluationContext, slurm: SlurmResource, ledger: LedgerResource,
              config: Config) -> SensorResult | SkipReason:
    """One tick of the supervisor."""
    led = ledger.ledger()
    backend = slurm.client()
    try:
        report = tick(config, led, backend)
    except BatonError as exc:
        led.heartbeat(NAME, f"failed: {exc}")
        raise
    events = repair_events(context, led, backend.name)
    led.heartbeat(NAME, report.summary())
    if not events:
        return SkipReason(report.summary())
    return SensorResult(asset_events=events)
