"""The jobs the sensors launch (each a short run that submits or records, then returns),
and an op job for people to cancel an experiment's Slurm jobs. Each asset job is
partitioned as its assets are (Dagster infers it from the selection): `experiments`,
or `campaigns` for the campaign report."""


from dagster import AssetSelection, Config, OpExecutionContext, define_asset_job, job, op

from resources import LedgerResource, SlurmResource

submit_evaluation_job = define_asset_job(
    "submit_evaluation", selection=AssetSelection.assets("evaluation_job"),
    description="Render and submit an experiment's evaluation (one Slurm task per checkpoint).")

record_evaluation_job = define_asset_job(
    "record_evaluation", selection=AssetSelection.assets("evaluation_metrics", "analysis_job"),
    description="Record the finished evaluation's metrics (DuckDB summary and checks) and, if "
                "it produced any, submit the analysis.")

record_analysis_job = define_asset_job(
    "record_analysis", selection=AssetSelection.assets("analysis_report"),
    description="Record the finished analysis and its report.")

campaign_report_job = define_asset_job(
    "campaign_report_job", selection=AssetSelection.assets("campaign_report"),
    description="Join every experiment of a campaign.")


class CancelConfig(Config):
    experiments: list[str]
    stage: str | None = None  # evaluation | analysis | None for both


@op(description="Cancel the unfinished Slurm jobs of the given experiments.")
def cancel_slurm_jobs(context: OpExecutionContext, config: CancelConfig, slurm: SlurmResource,
                      ledger: LedgerResource) -> list[str]:
    led = ledger.ledger()
    ids = [r.job_id for r in led.unfinished_jobs(settle_seconds=0)
           if r.experiment in config.experiments and (config.stage in (None, r.stage))]
    if ids:
        slurm.client().cancel(ids)
    context.log.info(f"cancel requested for {len(ids)} job(s): {' '.join(ids) or '-'}")
    return ids


@job(description="Cancel an experiment's unfinished Slurm jobs (the tracker records the "
                 "CANCELLED state on its next tick).")
def cancel_jobs():
    cancel_slurm_jobs()
