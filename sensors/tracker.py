"""The Slurm job tracker: one batched status call per tick for every unfinished job."""


from dagster import (
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from baton.config import Config
from baton.errors import BatonError
from baton.ledger.slurm_jobs import FIGURES_WAIT_SECONDS
from baton.logs import forwarded
from baton.pipeline.submission import reconcile_stale
from resources import LedgerResource, SlurmResource


def build_tracker(config: Config) -> SensorDefinition:
    """The tracker, ticking every ``sensors.interval_seconds``; a task whose job ended
    without its signal fails after ``sensors.missing_signal_grace_seconds``, a claim whose
    submitter died is settled after ``slurm.stale_claim_seconds`` (of ``config``)."""
    grace = config.sensors.missing_signal_grace_seconds
    stale = config.slurm.stale_claim_seconds

    @sensor(name="slurm_tracker", minimum_interval_seconds=config.sensors.interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Updates the ledger for all unfinished Slurm jobs in one batched call "
                        "(state, times, exit code, MaxRSS, CPU, node) and fails evaluation and "
                        "analysis tasks whose job failed.")
    def slurm_tracker(context: SensorEvaluationContext, slurm: SlurmResource,
                      ledger: LedgerResource) -> SkipReason:
        with forwarded(context.log, sensor="slurm_tracker"):
            return track(context, slurm, ledger, grace, stale)

    return slurm_tracker


def track(context: SensorEvaluationContext, slurm: SlurmResource, ledger: LedgerResource,
          grace_seconds: float, stale_claim_seconds: float = 600) -> SkipReason:
    """One tick of the tracker. A job whose end came from the controller (slurmdbd down)
    is polled again for its CPU time and MaxRSS until accounting answers or the wait is
    over; then the tick says so, once."""
    led = ledger.ledger()
    unfinished = led.unfinished_jobs()
    changed = 0
    detail = "no unfinished jobs"
    if unfinished:
        try:
            statuses = slurm.client().status([r.job_id for r in unfinished])
        except BatonError as exc:
            led.heartbeat("slurm_tracker", f"Slurm did not answer: {exc}")
            raise
        changed = led.apply_statuses(statuses)
        detail = f"{len(unfinished)} unfinished, {len(statuses)} answered, {changed} changed"
    gave_up = led.give_up_figures()
    if gave_up:
        ids = " ".join(r.job_id for r in gave_up[:20]) + (" ..." if len(gave_up) > 20 else "")
        context.log.warning(
            f"{len(gave_up)} job(s) ended over {FIGURES_WAIT_SECONDS // 3600} h ago and Slurm "
            f"accounting never gave their CPU time and MaxRSS: recorded as unavailable ({ids})")
        detail += f"; {len(gave_up)} without accounting figures"
    settled = reconcile_stale(led, slurm.client(), stale_claim_seconds)
    if settled:
        context.log.warning(f"settled {settled} submission(s) whose submitter died")
    stage_changes = led.sync_stage_rows(grace_seconds)
    led.heartbeat("slurm_tracker", detail)
    return SkipReason(f"{detail}; {stage_changes} task(s) moved on")
