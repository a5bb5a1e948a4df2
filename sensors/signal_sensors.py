"""Signal sensors: training-complete, evaluation-complete/failed, analysis-complete.

Each tick reads the inbox (cost independent of the number of experiment folders), runs a
full rescan every ``sensors.full_rescan_seconds``, records what it saw in the ledger, and
asks for the runs the ledger's state calls for."""


import json
import time
from collections.abc import Set as AbstractSet
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetRecordsFilter,
    DefaultSensorStatus,
    JobDefinition,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.batches import (
    OP_OF,
    record_analyses_job,
    record_evaluations_job,
    submit_evaluations_job,
)
from assets.checks import CHECKPOINT_CHECK
from assets.partitions import campaigns, experiments
from baton.config import Config
from baton.ledger import Ledger
from baton.ledger.window import Window
from baton.logs import forwarded
from baton.pipeline.guard import HOLD_MESSAGE, held_back
from baton.pipeline.keys import short
from baton.pipeline.scan import Scanner, TickResult
from baton.signals import SignalFile, TrainingComplete, acceptance_problem
from ops_slurm.asset_jobs import (
    campaign_report_job,
    record_analysis_job,
    record_evaluation_job,
    submit_evaluation_job,
)
from resources import LedgerResource, MLflowResource, SharedDriveResource, SlurmResource
from sensors.once import batch_once, requests_once
from sensors.runless import check_once, record_reports
from sensors.tick_submission import submit_in_tick, unconfirmed


def _tick(context: SensorEvaluationContext, ledger: Ledger, drive: SharedDriveResource,
          kinds: list[str], config: Config) -> tuple[TickResult, dict[str, Any], Window]:
    """Take new signals; the window bounds this tick's ledger queries (see Window)."""
    cfg = config.sensors
    cursor = json.loads(context.cursor) if context.cursor else {}
    now = time.time()
    full = now - cursor.get("last_full_rescan", 0) >= cfg.full_rescan_seconds
    validators = dict.fromkeys(kinds, _acceptance)
    scanner = Scanner(drive.layout(), ledger, cfg.debounce_seconds, validators,
                      campaigns=config.campaigns)
    result = scanner.tick(kinds, full=full)
    if full:
        cursor["last_full_rescan"] = now
    for q in result.quarantined:
        context.log.warning(f"quarantined {q.path}: {q.reason}",
                            extra={"experiment": q.experiment})
    window = Window() if full else Window.from_cursor(cursor.get("marks"))
    return result, cursor, window


def _acceptance(sf: SignalFile) -> str | None:
    # the training hook asks the same before it writes: what it announces is accepted here
    return acceptance_problem(sf.signal)


def _new_partitions(context: SensorEvaluationContext, names: set[str], definition: Any,
                    fresh: AbstractSet[str] = frozenset()) -> list:
    """The partitions to add: one lookup per name this tick touched, never the whole list
    (100,000 experiments). Names in ``fresh`` (a signal accepted in this very tick) are
    asked for unlooked: almost always new, and the daemon skips those that exist."""
    new = sorted(n for n in names if n in fresh
                 or not context.instance.has_dynamic_partition(definition.name, n))
    return [definition.build_add_request(new)] if new else []


def _model_event(row: Any, mlflow: MLflowResource) -> AssetMaterialization:
    meta: dict[str, Any] = {
        "signal_key": row.signal_key,
        "checkpoint": MetadataValue.path(row.checkpoint_path or ""),
        "host": row.hostname or "", "user": row.user or "",
    }
    for key in ("generation", "total_steps", "final_loss", "num_epochs", "git_commit",
                "campaign"):
        if getattr(row, key) is not None:
            meta[key] = getattr(row, key)
    if url := mlflow.run_url(row.mlflow_run_id):
        meta["mlflow"] = MetadataValue.url(url)
    if lab := TrainingComplete.extra_fields_of(row.metadata):  # the writer's own fields
        meta["lab_fields"] = MetadataValue.json(lab)
    return AssetMaterialization(asset_key="model", partition=row.experiment_name,
                                metadata=meta)


def _model_reported(context: SensorEvaluationContext, row: Any) -> bool:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("model"), asset_partitions=[row.experiment_name]),
        limit=1).records
    if not records:
        return False
    mat = records[0].asset_materialization
    value = mat.metadata.get("signal_key") if mat else None
    return value is not None and getattr(value, "value", value) == row.signal_key


def _once(context: SensorEvaluationContext, ledger: Ledger, config: Config,
          runs: list[RunRequest], batch: JobDefinition, alone: set[str] | None = None
          ) -> list[RunRequest]:
    """The tick's due runs: one run of ``batch`` for all of them (``sensors.batch``), or
    one run per signal. The requests in ``alone`` (recordings that will fail: an
    evaluation whose every task failed, a failed analysis) keep a run of their own, so
    the partition ends FAILED in Dagster as a failed run of its asset shows it."""
    if not config.sensors.batch:
        return requests_once(context, ledger, runs)
    alone = alone or set()
    return batch_once(context, ledger, [r for r in runs if r.run_key not in alone],
                      batch.name, OP_OF[batch.name]) + \
        requests_once(context, ledger, [r for r in runs if r.run_key in alone])


def _result(context: SensorEvaluationContext, ledger: Ledger, name: str, tick: TickResult,
            cursor: dict[str, Any], runs: list[RunRequest], events: list,
            partitions: list, window: Window) -> SensorResult | SkipReason:
    cursor["marks"] = window.next
    ledger.heartbeat(name, tick.summary())
    if not (runs or events or partitions):
        return SensorResult(skip_reason=SkipReason(f"nothing new: {tick.summary()}"),
                            cursor=json.dumps(cursor))
    return SensorResult(run_requests=runs, asset_events=events,
                        dynamic_partitions_requests=partitions, cursor=json.dumps(cursor))


def build_signal_sensors(config: Config) -> list[SensorDefinition]:
    """The training, evaluation and analysis sensors, ticking every
    ``sensors.interval_seconds``; their scans follow ``sensors`` and ``campaigns`` of
    ``config``."""
    interval = config.sensors.interval_seconds

    @sensor(name="training_sensor", minimum_interval_seconds=interval,
            jobs=[submit_evaluation_job, submit_evaluations_job],
            default_status=DefaultSensorStatus.RUNNING,
            description="Reports `model` when .training_complete lands and validates, "
                        "registers the experiment (and its campaign), and submits its "
                        "evaluation (or asks a run to).")
    def training_sensor(context: SensorEvaluationContext, ledger: LedgerResource,
                        drive: SharedDriveResource, mlflow: MLflowResource,
                        slurm: SlurmResource):
        with forwarded(context.log, sensor="training_sensor"):
            return training_tick(context, ledger, drive, mlflow, slurm, config)

    @sensor(name="evaluation_sensor", minimum_interval_seconds=interval,
            jobs=[record_evaluation_job, record_evaluations_job],
            default_status=DefaultSensorStatus.RUNNING,
            description="Records each .eval_complete/.eval_failed against its evaluation task "
                        "and, once every task of an evaluation has ended, records "
                        "`evaluation_metrics` and requests the analysis.")
    def evaluation_sensor(context: SensorEvaluationContext, ledger: LedgerResource,
                          drive: SharedDriveResource):
        with forwarded(context.log, sensor="evaluation_sensor"):
            return evaluation_tick(context, ledger, drive, config)

    @sensor(name="analysis_sensor", minimum_interval_seconds=interval,
            jobs=[record_analysis_job, record_analyses_job, campaign_report_job],
            default_status=DefaultSensorStatus.RUNNING,
            description="Records `analysis_report` when .analysis_complete lands, and "
                        "`campaign_report` once every experiment of a campaign has its report.")
    def analysis_sensor(context: SensorEvaluationContext, ledger: LedgerResource,
                        drive: SharedDriveResource, mlflow: MLflowResource):
        with forwarded(context.log, sensor="analysis_sensor"):
            return analysis_tick(context, ledger, drive, mlflow, config)

    return [training_sensor, evaluation_sensor, analysis_sensor]


def training_tick(context: SensorEvaluationContext, ledger: LedgerResource,
                  drive: SharedDriveResource, mlflow: MLflowResource, slurm: SlurmResource,
                  config: Config):
    started = time.monotonic()
    led = ledger.ledger()
    tick, cursor, window = _tick(context, led, drive, ["training_complete"], config)
    events: list = []
    names: set[str] = set()
    camps: set[str] = set()
    accepted = {sf.idempotency_key for sf in tick.accepted}  # no event of theirs yet
    for row in led.models_unreported(window):
        names.add(row.experiment_name)
        if row.campaign:
            camps.add(row.campaign)
        if row.signal_key not in accepted and _model_reported(context, row):
            led.record_fact(f"model:{row.signal_key}", "model_reported", row.experiment_name)
            continue
        events.append(_model_event(row, mlflow))
        if check_once(led, "model", CHECKPOINT_CHECK, row.experiment_name):
            events.append(AssetCheckEvaluation(
                asset_key=AssetKey("model"), check_name=CHECKPOINT_CHECK, passed=True,
                partition=row.experiment_name,
                metadata={"checkpoint": row.checkpoint_path or ""}))
    for q in tick.quarantined:
        if q.experiment:
            names.add(q.experiment)
            meta = {"signal": str(q.path), "quarantined": q.reason}
            if check_once(led, "model", CHECKPOINT_CHECK, q.experiment):
                events.append(AssetCheckEvaluation(
                    asset_key=AssetKey("model"), check_name=CHECKPOINT_CHECK, passed=False,
                    partition=q.experiment, metadata=meta))
            events.append(AssetObservation(asset_key="model", partition=q.experiment,
                                           metadata=meta))
    awaiting = led.training_awaiting_evaluation(window) if config.sensors.auto_evaluate \
        else []
    held = held_back(led, drive.layout(), awaiting)
    events += _holds(context, led, [r for r in awaiting if r.experiment_name in held], held)
    runs = [RunRequest(job_name=submit_evaluation_job.name,
                       run_key=f"evaluation_job:{row.signal_key}",
                       partition_key=row.experiment_name,
                       tags={"baton/experiment": row.experiment_name})
            for row in awaiting if row.experiment_name not in held]
    names |= {r.partition_key for r in runs if r.partition_key} | set(held)
    fresh = {sf.signal.experiment for sf in tick.accepted}
    partitions = _new_partitions(context, names, experiments, fresh) + \
        _new_partitions(context, camps, campaigns)
    if config.sensors.batch:
        events += unconfirmed(context, ledger, slurm, window, started)
    if config.sensors.batch and config.sensors.submit_in_tick:
        submitted, runs = submit_in_tick(context, ledger, slurm, runs, accepted, started)
        events += submitted
    runs = _once(context, led, config, runs, submit_evaluations_job)
    return _result(context, led, "training_sensor", tick, cursor, runs, events, partitions,
                   window)


def _holds(context: SensorEvaluationContext, led: Ledger, rows: list,
           held: dict[str, list[str]]) -> list:
    """Say so once per held training signal: a warning in the sensor's log, an
    observation on the model's partition (the UI); the ledger's fact is what the exporter
    counts (baton_experiments_held, alert BatonExperimentsHeld)."""
    events: list = []
    for row in rows:
        found = held[row.experiment_name]
        if led.hold(row.experiment_name, row.signal_key, found):
            context.log.warning(f"{row.experiment_name} {HOLD_MESSAGE} (found "
                                f"{', '.join(found[:3])})",
                                extra={"experiment": row.experiment_name, "stage": "training",
                                       "signal_key": row.signal_key})
            events.append(AssetObservation(
                asset_key="model", partition=row.experiment_name,
                metadata={"held": HOLD_MESSAGE, "signal_key": row.signal_key,
                          "drive_results": MetadataValue.json(found[:5])}))
    return events


def evaluation_tick(context: SensorEvaluationContext, ledger: LedgerResource,
                    drive: SharedDriveResource, config: Config):
    led = ledger.ledger()
    tick, cursor, window = _tick(context, led, drive, ["eval_complete", "eval_failed"], config)
    for sf in tick.unanswered:
        context.log.warning(f"{sf.path}: no evaluation of {sf.signal.experiment} in the "
                            "ledger answers it; recorded, nothing to join",
                            extra=_signal_fields(sf, "evaluation"))
    events = [AssetCheckEvaluation(
        asset_key=AssetKey("evaluation_metrics"), check_name="evaluation_succeeded",
        passed=False, partition=q.experiment,
        metadata={"signal": str(q.path), "reason": q.reason})
        for q in tick.quarantined if q.experiment and _known(context, q.experiment)
        and check_once(led, "evaluation_metrics", "evaluation_succeeded", q.experiment)]
    ready = led.evaluations_ready(window)
    runs = [RunRequest(job_name=record_evaluation_job.name,
                       run_key=f"evaluation_metrics:{trigger}", partition_key=exp,
                       tags={"baton/experiment": exp})
            for exp, trigger in ready]
    failed = {f"evaluation_metrics:{trigger}" for exp, trigger in ready
              if config.sensors.batch and not any(
                  t.status == "completed" for t in led.evaluation_tasks(exp, trigger))}
    # a rebuilt ledger on a new Dagster home: this sensor may tick before the training one
    known = _new_partitions(context, {r.partition_key for r in runs if r.partition_key},
                            experiments)
    runs = _once(context, led, config, runs, record_evaluations_job, failed)
    return _result(context, led, "evaluation_sensor", tick, cursor, runs, events, known,
                   window)


def analysis_tick(context: SensorEvaluationContext, ledger: LedgerResource,
                  drive: SharedDriveResource, mlflow: MLflowResource, config: Config):
    led = ledger.ledger()
    tick, cursor, window = _tick(context, led, drive, ["analysis_complete"], config)
    for sf in tick.unanswered:
        context.log.warning(f"{sf.path}: no analysis of {sf.signal.experiment} in the "
                            "ledger answers it", extra=_signal_fields(sf, "analysis"))
    ready = led.analyses_ready(window)
    runs = [RunRequest(job_name=record_analysis_job.name,
                       run_key=f"analysis_report:{row.trigger_key}",
                       partition_key=row.experiment_name,
                       tags={"baton/experiment": row.experiment_name})
            for row in ready]
    failed = {f"analysis_report:{row.trigger_key}" for row in ready if row.status != "completed"}
    known = _new_partitions(context, {r.partition_key for r in runs if r.partition_key},
                            experiments)  # see evaluation_tick
    reports = [RunRequest(job_name=campaign_report_job.name,
                          run_key=f"campaign_report:{camp}:{short(','.join(exps))}",
                          partition_key=camp, tags={"baton/campaign": camp})
               for camp, exps in (led.campaigns_ready() if tick.accepted or runs else [])]
    events: list = []
    if config.sensors.batch and not known:  # their partitions exist: recorded here
        events, runs = record_reports(context, ledger, drive, mlflow, runs, failed)
    runs = _once(context, led, config, runs, record_analyses_job, failed) + \
        requests_once(context, led, reports)
    return _result(context, led, "analysis_sensor", tick, cursor, runs, events, known,
                   window)


def _signal_fields(sf: SignalFile, stage: str) -> dict[str, Any]:
    """The log context of a signal's line: whose, which stage, which job, which signal."""
    return {"experiment": sf.signal.experiment, "stage": stage,
            "job_id": getattr(sf.signal, "job_id", None),
            "signal_key": sf.idempotency_key}


def _known(context: SensorEvaluationContext, experiment: str) -> bool:
    return context.instance.has_dynamic_partition(experiments.name, experiment)

