"""The per-experiment assets. Runs submit and return; sensors report what Slurm did."""


from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
)

from assets.job_logs import job_log_metadata, web_link_metadata
from assets.partitions import experiments
from baton.analyze.summary import summarize
from baton.logs import forwarded
from baton.pipeline.steps import Submission, submit_analyses, submit_evaluations
from resources import LedgerResource, MLflowResource, SharedDriveResource, SlurmResource

GROUP = "pipeline"

model = AssetSpec(
    "model", partitions_def=experiments, group_name=GROUP, kinds={"file"},
    description="A trained model: reported by the training sensor when .training_complete "
                "lands and validates.")


def submit_stage(context: OpExecutionContext, slurm: SlurmResource, ledger: LedgerResource,
                 stage: str, submit: Callable[..., dict[str, Submission]],
                 partitions: Sequence[str], asset_key: AssetKey
                 ) -> dict[str, dict[str, Any]] | None:
    """Submit ``partitions`` (one job, or one array) and return each partition's
    materialization metadata. None in a dry run (``sensors.dry_run``): nothing was
    submitted, so nothing may be materialized; what would have been is logged and observed
    instead. Shared by the per-partition assets and the batch jobs (assets/batches.py)."""
    backend = slurm.client()
    with forwarded(context.log, stage=stage):  # the run's lines in baton's log too
        subs = submit(slurm.settings, ledger.ledger(), backend, list(partitions))
        if any(sub.dry_run for sub in subs.values()):
            _observe_dry_run(context, asset_key, subs)
            return None
        return {exp: announced(context.log, ledger, backend.name, exp, sub)
                for exp, sub in subs.items()}


def _submit(context: AssetExecutionContext, slurm: SlurmResource, ledger: LedgerResource,
            stage: str, submit: Callable[..., dict[str, Submission]]) -> bool:
    """The asset's partitions submitted (:func:`submit_stage`), each partition's metadata
    on its materialization; False in a dry run."""
    found = submit_stage(context.op_execution_context, slurm, ledger, stage, submit,
                         context.partition_keys, context.asset_key)
    for exp, metadata in (found or {}).items():
        context.add_asset_metadata(metadata, partition_key=exp)
    return found is not None


def announced(log: Any, ledger: LedgerResource, backend: str, exp: str, sub: Submission
              ) -> dict[str, Any]:
    """An experiment's submission, as a line of ``log`` (a run's or a sensor tick's
    ``context.log``) and its materialization's metadata."""
    log.info(f"{exp}: {'submitted' if sub.submitted_now else 'already submitted'}"
             f" as {', '.join(sub.job_ids)}", extra={
                 "experiment": exp, "job_id": sub.job_ids[0] if len(sub.job_ids) == 1 else None})
    return {
        "slurm_job_ids": ", ".join(sub.job_ids),
        "backend": backend,
        "tasks": len(sub.tasks),
        "submitted_now": sub.submitted_now,
        "checkpoints": MetadataValue.json([t.checkpoint for t in sub.tasks if t.checkpoint]),
        **job_log_metadata(ledger.ledger(), sub.job_ids),
    }


def _observe_dry_run(context: OpExecutionContext, asset_key: AssetKey,
                     subs: dict[str, Submission]) -> None:
    """Each partition's would-be submission as an observation (tasks, array, resources,
    script), never a materialization: no job exists."""
    for exp, sub in subs.items():
        plan = sub.dry_run
        if plan is None:
            continue
        would = [t.checkpoint or t.experiment for t in plan.tasks if t.job_id is None]
        held = [t.job_id for t in plan.tasks if t.job_id]
        spec = plan.rendered.spec if plan.rendered is not None and would else None
        metadata: dict[str, Any] = {
            "dry_run": True, "would_submit": MetadataValue.json(would),
            "already_submitted": MetadataValue.json(held)}
        if spec is not None:
            metadata.update({"array": spec.array or "(one job)", "cpus": spec.cpus,
                             "mem": spec.mem, "time": spec.time,
                             "script": MetadataValue.md(f"```bash\n{spec.script}\n```")})
        context.log_event(AssetObservation(asset_key=asset_key, partition=exp,
                                           metadata=metadata))
        context.log.info(f"{exp}: dry run (sensors.dry_run): would submit {plan.stage} of "
                         f"{', '.join(would) or 'nothing'}"
                         + (f"; already submitted as {', '.join(held)}" if held else "")
                         + "; nothing was submitted")


@asset(partitions_def=experiments, deps=[model], group_name=GROUP, kinds={"slurm"},
       backfill_policy=BackfillPolicy.single_run(), output_required=False,
       description="The evaluation submitted to Slurm (one task per checkpoint). A backfill "
                   "of N experiments is one job array. Materialized when Slurm accepted it.")
def evaluation_job(context: AssetExecutionContext, slurm: SlurmResource,
                   ledger: LedgerResource) -> Iterator[MaterializeResult]:
    if _submit(context, slurm, ledger, "evaluation", submit_evaluations):
        yield MaterializeResult()


@asset(partitions_def=experiments, deps=[evaluation_job], group_name=GROUP,
       kinds={"parquet", "duckdb"},
       check_specs=[
           AssetCheckSpec("evaluation_succeeded", asset="evaluation_metrics",
                          partitions_def=experiments,
                          description="every evaluation task ended with .eval_complete"),
           AssetCheckSpec("schema_valid", asset="evaluation_metrics",
                          partitions_def=experiments,
                          description="every metrics Parquet file has the spec's schema"),
           AssetCheckSpec("datasets_complete", asset="evaluation_metrics",
                          partitions_def=experiments,
                          description="the metrics hold every configured dataset"),
       ],
       description="The evaluation's metrics Parquet (dataset=*/metric=*). Recorded when "
                   "every task of the evaluation has ended; what succeeded is kept.")
def evaluation_metrics(context: AssetExecutionContext, ledger: LedgerResource,
                       drive: SharedDriveResource, slurm: SlurmResource,
                       mlflow: MLflowResource):
    yield from recorded(metrics_of(context.partition_key, ledger, drive, slurm, mlflow))


@dataclass(frozen=True)
class Recording:
    """One partition's recording: its checks, and its materialization's metadata, or the
    failure that stands instead (the checks are recorded against the partition then)."""

    checks: list[AssetCheckResult]
    metadata: dict[str, Any] | None = None
    failure: Failure | None = None


def recorded(rec: Recording) -> Iterator[Any]:
    """A recording as a per-partition asset yields it: the checks on the materialization,
    or the checks, then the failure."""
    if rec.failure is not None:
        yield from rec.checks
        raise rec.failure
    yield MaterializeResult(metadata=rec.metadata, check_results=rec.checks)


def metrics_of(exp: str, ledger: LedgerResource, drive: SharedDriveResource,
               slurm: SlurmResource, mlflow: MLflowResource) -> Recording:
    """``evaluation_metrics`` of ``exp``: recorded when every task of its evaluation has
    ended; what succeeded is kept."""
    tasks = ledger.ledger().evaluation_tasks(exp)
    layout = drive.layout().experiment(exp)
    # the generation the evaluation answers (a retrain's): its rows, not an earlier one's
    summary = summarize(layout, tasks[0].generation if tasks else None)
    failed = [t for t in tasks if t.status == "failed"]
    errors = {t.checkpoint_path or str(t.id): t.error_message or "failed" for t in failed}
    wanted = slurm.settings.stage("evaluation").datasets
    missing = sorted(set(wanted) - set(summary.datasets)) if wanted else \
        ([] if summary.datasets else ["(any dataset)"])
    checks = [
        AssetCheckResult(check_name="evaluation_succeeded", passed=not failed,
                         severity=AssetCheckSeverity.ERROR,
                         metadata={"failed_tasks": MetadataValue.json(errors)}),
        AssetCheckResult(check_name="schema_valid",
                         passed=summary.files > 0 and not summary.schema_problems,
                         metadata={"files": summary.files,
                                   "problems": MetadataValue.json(summary.schema_problems)}),
        AssetCheckResult(check_name="datasets_complete", passed=not missing,
                         metadata={"missing": MetadataValue.json(missing),
                                   "datasets": MetadataValue.json(summary.datasets)}),
    ]
    if not any(t.status == "completed" for t in tasks) or summary.rows == 0:
        return Recording(checks, failure=Failure(
            description=f"evaluation of {exp} produced no usable metrics: "
            + ("; ".join(f"{k}: {v}" for k, v in errors.items()) or "no rows"),
            metadata={"failed_tasks": MetadataValue.json(errors),
                      **job_log_metadata(ledger.ledger(), [
                          t.slurm_job_id for t in failed or tasks]),
                      **web_link_metadata(ledger.settings.web, exp, [
                          t.slurm_job_id for t in failed or tasks])}))
    durations = [(t.metadata or {}).get("duration_s") for t in tasks]
    run_ids = [t.mlflow_run_id for t in tasks if t.mlflow_run_id]
    metadata = {
        "path": MetadataValue.path(str(layout.metrics_dir)),
        "generation": summary.generation,
        "rows": summary.rows,
        "files": summary.files,
        "datasets": MetadataValue.json(summary.datasets),
        "checkpoints": MetadataValue.json(summary.checkpoints),
        "means": MetadataValue.json(summary.means),
        "slurm_job_ids": ", ".join(t.slurm_job_id or "" for t in tasks),
        "tasks": len(tasks),
        "failed_tasks": len(failed),
        "eval_duration_s": sum(d for d in durations if d) or 0.0,
        **job_log_metadata(ledger.ledger(), [t.slurm_job_id for t in tasks]),
        **web_link_metadata(ledger.settings.web, exp, [t.slurm_job_id for t in tasks]),
    }
    for key, value in list(summary.means.items())[:20]:
        metadata[f"mean {key}"] = value
    if lab := _lab_fields(ledger, tasks):  # the writers' own fields, per checkpoint
        metadata["lab_fields"] = MetadataValue.json(lab)
    urls = [url for i in run_ids if (url := mlflow.run_url(i))]
    if urls:  # the first task's run, and every task's
        metadata["mlflow"] = MetadataValue.url(urls[0])
        metadata["mlflow_runs"] = MetadataValue.json(urls)
    # the checks evaluate this materialization (not the partition's previous one)
    return Recording(checks, metadata)


def _lab_fields(ledger: LedgerResource, tasks: Sequence[Any]) -> dict[str, Any]:
    """A lab's own fields of the signals that answered ``tasks``, by checkpoint name (each
    task of a fan-out answers with its own signal); tasks whose signal had none are left
    out."""
    keys = {t.id: (t.metadata or {}).get("signal") for t in tasks}
    found = ledger.ledger().lab_fields([k for k in keys.values() if k])
    return {(Path(t.checkpoint_path).name if t.checkpoint_path else str(t.id)):
            found[keys[t.id]] for t in tasks if keys[t.id] in found}


@asset(partitions_def=experiments, deps=[evaluation_metrics], group_name=GROUP,
       kinds={"slurm"}, backfill_policy=BackfillPolicy.single_run(), output_required=False,
       description="The analysis submitted to Slurm. Materialized when Slurm accepted it.")
def analysis_job(context: AssetExecutionContext, slurm: SlurmResource,
                 ledger: LedgerResource) -> Iterator[MaterializeResult]:
    if _submit(context, slurm, ledger, "analysis", submit_analyses):
        yield MaterializeResult()


@asset(partitions_def=experiments, deps=[analysis_job], group_name=GROUP,
       kinds={"html", "csv", "pdf"},
       check_specs=[AssetCheckSpec("report_exists", asset="analysis_report",
                                   partitions_def=experiments,
                                   description="the report the analysis announced exists")],
       description="Figures, tables and the HTML report of one experiment. Recorded when "
                   ".analysis_complete lands.")
def analysis_report(context: AssetExecutionContext, ledger: LedgerResource,
                    drive: SharedDriveResource, mlflow: MLflowResource):
    yield from recorded(report_of(context.partition_key, ledger, drive, mlflow))


def report_of(exp: str, ledger: LedgerResource, drive: SharedDriveResource,
              mlflow: MLflowResource) -> Recording:
    """``analysis_report`` of ``exp``: recorded when its .analysis_complete landed; the
    report is the asset, so without it nothing is materialized."""
    row = ledger.ledger().current_analysis(exp)
    if row is None:
        return Recording([], failure=Failure(description=f"no analysis of {exp} in the ledger"))
    outputs = ledger.ledger().analysis_outputs_of(row.id)
    reports = [p for kind, p in outputs if kind == "report"]
    present = [p for p in reports if Path(p).is_file()]
    missing = sorted(set(reports) - set(present))
    check = AssetCheckResult(check_name="report_exists", passed=bool(reports) and not missing,
                             metadata={"reports": MetadataValue.json(reports),
                                       "missing": MetadataValue.json(missing)})
    logs = {**job_log_metadata(ledger.ledger(), [row.slurm_job_id]),
            **web_link_metadata(ledger.settings.web, exp, [row.slurm_job_id])}
    if row.status != "completed":
        return Recording([check], failure=Failure(
            description=f"analysis of {exp} failed: {row.error_message}", metadata=logs))
    if not check.passed:
        return Recording([check], failure=Failure(
            description=f"analysis of {exp} completed, but its report "
            + (f"{', '.join(missing)} does not exist" if missing
               else "was not announced in its .analysis_complete"), metadata=logs))
    layout = drive.layout().experiment(exp)
    metadata = {
        "reports_dir": MetadataValue.path(str(layout.reports_dir)),
        "outputs": len(outputs),
        "slurm_job_id": row.slurm_job_id or "",
        "report": MetadataValue.path(present[0]),
        **logs,
    }
    if row.completed_at and row.submitted_at:
        metadata["duration_s"] = (row.completed_at - row.submitted_at).total_seconds()
    if url := mlflow.run_url(row.mlflow_run_id):
        metadata["mlflow"] = MetadataValue.url(url)
    if row.completed_at and (lab := ledger.ledger().lab_fields_of(
            exp, "analysis_complete", row.completed_at)):  # the writer's own fields
        metadata["lab_fields"] = MetadataValue.json(lab)
    return Recording([check], metadata)
