"""The batch jobs: what a signal sensor finds due in one tick, done by one run.

A sweep ends with many experiments at once; a run per experiment and stage spends most
of its time starting runs (issue 15). Each job here takes the tick's due experiments in
its config and does for all of them what the per-partition assets do for one: one
submission (one job array across experiments and checkpoints), one recording pass. Its
events name each partition (``AssetMaterialization`` and ``AssetCheckEvaluation`` with
``partition``), so every partition of the assets ends in its true state in the UI, as if
the asset had run for it alone. The same functions as the assets do the work
(assets/experiment.py), so both paths submit and record the same; the claims in the
ledger keep a submission once whichever path (a UI launch, a backfill) asks first.

Each experiment a run answered is confirmed as a fact in the ledger under its per-signal
request key (the key the one-run-per-signal path uses), so the sensors stop finding it
due: a recording that needs nothing more (a report, a failed evaluation) as soon as its
events are stored, the others once their submission is made. A run that dies leaves the
rest due, and the next tick asks again for those only. An evaluation recorded whose
analysis was not yet submitted when the run died is recorded again by the next run."""


from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetKey,
    AssetMaterialization,
    Config,
    Failure,
    OpExecutionContext,
    job,
    op,
)

from assets.experiment import Recording, metrics_of, report_of, submit_stage
from baton.pipeline.keys import UNDER_WAY, under_way
from baton.pipeline.steps import refusals, submit_analyses, submit_evaluations
from resources import LedgerResource, MLflowResource, SharedDriveResource, SlurmResource

REQUEST_KEY = "baton/request"  # the request an event answers, in its metadata


class Due(Config):
    """The due experiments of one tick, and the per-signal request key each answers."""

    experiments: list[str]
    requests: list[str]


def partition_events(asset: str, exp: str, rec: Recording) -> Iterator[Any]:
    """One partition's recording as events: the materialization, then its checks."""
    if rec.metadata is not None:
        yield AssetMaterialization(asset_key=asset, partition=exp, metadata=rec.metadata)
    for check in rec.checks:
        yield _evaluation(asset, exp, check)


def _evaluation(asset: str, exp: str, check: AssetCheckResult) -> AssetCheckEvaluation:
    return AssetCheckEvaluation(asset_key=AssetKey(asset), check_name=str(check.check_name),
                                passed=check.passed, partition=exp,
                                metadata=check.metadata, severity=check.severity)


def _submitted(context: OpExecutionContext, slurm: SlurmResource, ledger: LedgerResource,
               stage: str, asset: str, requests: dict[str, str],
               refused: dict[str, str]) -> Iterator[Any]:
    """The partitions submitted as one, but those whose request is refused on its own
    (added to ``refused``, each with its reason): one bad request holds back nobody else.
    ``requests``: each partition's request key, which its event carries."""
    submit = submit_evaluations if stage == "evaluation" else submit_analyses
    refused.update(refusals(slurm.settings, ledger.ledger(), stage, list(requests)))
    if not (fine := [p for p in requests if p not in refused]):
        return
    if stage == "evaluation" and not slurm.settings.sensors.dry_run:
        # should this run die between its claims and its events, the training sensor
        # finishes them (sensors/tick_submission.py)
        ledger.ledger().record_facts(UNDER_WAY, {under_way(requests[p]): p for p in fine})
    found = submit_stage(context, slurm, ledger, stage, submit, fine, AssetKey(asset))
    for exp, metadata in (found or {}).items():
        yield AssetMaterialization(asset_key=asset, partition=exp,
                                   metadata={**metadata, REQUEST_KEY: requests[exp]})


def _confirm(ledger: LedgerResource, config: Due, done: set[str]) -> None:
    """The requests of the experiments in ``done`` answered: the sensors stop asking."""
    led = ledger.ledger()
    for exp, key in zip(config.experiments, config.requests, strict=True):
        if exp in done:
            led.record_fact(f"run:{key}", "run_requested", detail={"partition": exp})


def _failed(context: OpExecutionContext, failures: dict[str, str]) -> None:
    """The recordings that stand as failures and the submissions refused: each said, and
    the run fails with them (the others were done and confirmed)."""
    for exp, why in failures.items():
        context.log.error(why, extra={"experiment": exp})
    if failures:
        raise Failure(description=f"{len(failures)} of the batch failed: "
                      + "; ".join(failures.values()))


@op(out={},
    description="Submit the evaluations of the tick's due experiments as one submission.")
def submit_due_evaluations(context: OpExecutionContext, config: Due, slurm: SlurmResource,
                           ledger: LedgerResource) -> Iterator[Any]:
    refused: dict[str, str] = {}
    yield from _submitted(context, slurm, ledger, "evaluation", "evaluation_job",
                          dict(zip(config.experiments, config.requests, strict=True)), refused)
    _confirm(ledger, config, set(config.experiments) - set(refused))
    _failed(context, refused)


@op(out={},
    description="Record the finished evaluations' metrics (DuckDB summary and checks), then "
                "submit the analyses of those that produced any as one submission.")
def record_due_evaluations(context: OpExecutionContext, config: Due, ledger: LedgerResource,
                           drive: SharedDriveResource, slurm: SlurmResource,
                           mlflow: MLflowResource) -> Iterator[Any]:
    usable, failures, refused = [], {}, {}
    for exp in config.experiments:
        rec = metrics_of(exp, ledger, drive, slurm, mlflow)
        yield from partition_events("evaluation_metrics", exp, rec)
        if rec.failure is None:
            usable.append(exp)
        else:  # a failure recorded is its answer, at once (as in record_due_analyses)
            failures[exp] = str(rec.failure.description)
            _confirm(ledger, config, {exp})
    if usable:
        keys = dict(zip(config.experiments, config.requests, strict=True))
        yield from _submitted(context, slurm, ledger, "analysis", "analysis_job",
                              {exp: keys[exp] for exp in usable}, refused)
    # the others are answered by their analysis' submission; one refused is asked again
    _confirm(ledger, config, set(usable) - set(refused))
    _failed(context, {**failures, **refused})


@op(out={}, description="Record the finished analyses and their reports.")
def record_due_analyses(context: OpExecutionContext, config: Due, ledger: LedgerResource,
                        drive: SharedDriveResource, mlflow: MLflowResource) -> Iterator[Any]:
    failures = {}
    for exp in config.experiments:
        rec = report_of(exp, ledger, drive, mlflow)
        yield from partition_events("analysis_report", exp, rec)
        # its events are stored once yielded: answered now, so a run that dies further
        # on leaves it answered and the next tick does not record it again
        _confirm(ledger, config, {exp})
        if rec.failure is not None:
            failures[exp] = str(rec.failure.description)
    _failed(context, failures)


@job(name="submit_evaluations",
     description="Submit the evaluations a training-sensor tick found due: one job array.")
def submit_evaluations_job() -> None:
    submit_due_evaluations()


@job(name="record_evaluations",
     description="Record the evaluations an evaluation-sensor tick found ended, and submit "
                 "their analyses as one job array.")
def record_evaluations_job() -> None:
    record_due_evaluations()


@job(name="record_analyses",
     description="Record the analyses an analysis-sensor tick found ended.")
def record_analyses_job() -> None:
    record_due_analyses()


BATCH_JOBS = [submit_evaluations_job, record_evaluations_job, record_analyses_job]
OP_OF = {j.name: j.graph.node_defs[0].name for j in BATCH_JOBS}  # each job's one op
