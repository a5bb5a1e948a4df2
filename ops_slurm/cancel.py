"""An op job for people: cancel an experiment's Slurm jobs from the Dagster UI."""


from dagster import Config, OpExecutionContext, job, op

from resources import LedgerResource, SlurmResource


class CancelConfig(Config):
    experiments: list[str]
    stage: str | None = None  # evaluation | analysis | None for both


@op(description="Cancel the unfinished Slurm jobs of the given experiments.")
def cancel_slurm_jobs(context: OpExecutionContext, config: CancelConfig, slurm: SlurmResource,
                      ledger: LedgerResource) -> list[str]:
    led = ledger.ledger()
    ids = [r.job_id for r in led.unfinished_jobs(settle_seconds=0)
           if r.experiment in config.experiments and (config.stage in (None, r.stage))]
    refused = slurm.client().cancel(ids) if ids else {}
    for job_id, why in refused.items():
        context.log.warning(f"job {job_id} not cancelled: {why}")
    cancelled = [i for i in ids if i not in refused]
    context.log.info(f"cancel requested for {len(cancelled)} job(s): "
                     f"{' '.join(cancelled) or '-'}")
    return cancelled


@job(description="Cancel an experiment's unfinished Slurm jobs (the tracker records the "
                 "CANCELLED state on its next tick).")
def cancel_jobs():
    cancel_slurm_jobs()
