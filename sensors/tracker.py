"""The Slurm job tracker: a batched poll of every unfinished job, backing off when Slurm
answers slowly, and skipped while the installation's call budget is spent."""

import time
from collections.abc import Sequence
from typing import Any

from dagster import (
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from baton.config import Config
from baton.errors import BatonError
from baton.ledger import Ledger
from baton.ledger.slurm_jobs import FIGURES_WAIT_SECONDS
from baton.logs import forwarded
from baton.pipeline.polling import PollClock, own_statuses, own_word
from baton.pipeline.submission import reconcile_stale
from baton.slurm.backend import SlurmBackend
from resources import LedgerResource, SlurmResource


def build_tracker(config: Config) -> SensorDefinition:
    """The tracker, ticking every ``sensors.interval_seconds``; a task whose job ended
    without its signal fails after ``sensors.missing_signal_grace_seconds``, a claim whose
    submitter died is settled after ``slurm.stale_claim_seconds`` (of ``config``)."""
    grace = config.sensors.missing_signal_grace_seconds
    stale = config.slurm.stale_claim_seconds
    interval = config.sensors.interval_seconds

    @sensor(name="slurm_tracker", minimum_interval_seconds=config.sensors.interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Updates the ledger for all unfinished Slurm jobs in few batched calls "
                        "(squeue for the queued, sacct for those that left it: state, times, "
                        "exit code, MaxRSS, CPU, node), polling less often when Slurm answers "
                        "slowly, and fails evaluation and analysis tasks whose job failed.")
    def slurm_tracker(context: SensorEvaluationContext, slurm: SlurmResource,
                      ledger: LedgerResource) -> SkipReason:
        with forwarded(context.log, sensor="slurm_tracker"):
            return track(context, slurm, ledger, grace, stale, interval)

    return slurm_tracker


def track(context: SensorEvaluationContext, slurm: SlurmResource, ledger: LedgerResource,
          grace_seconds: float, stale_claim_seconds: float = 600, interval: float = 0
          ) -> SkipReason:
    """One tick of the tracker. Slurm is polled when ``interval`` seconds, and five times
    the last poll's duration, have passed (the cursor keeps both). A job whose end came
    from the controller (slurmdbd down) is polled again for its CPU time and MaxRSS until
    accounting answers or the wait is over; then the tick says so, once."""
    led = ledger.ledger()
    unfinished = led.unfinished_jobs()
    clock = PollClock.parse(context.cursor)
    detail = "no unfinished jobs"
    if unfinished and not clock.due(time.time(), interval):
        detail = (f"{len(unfinished)} unfinished; Slurm answered in {clock.duration:.1f}s "
                  f"last time: polled every {clock.wait(interval):.0f}s")
    elif unfinished:
        detail = poll(context, slurm.client(), led, unfinished)
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


def poll(context: SensorEvaluationContext, backend: SlurmBackend, led: Ledger,
         unfinished: Sequence[Any]) -> str:
    """Ask Slurm about ``unfinished`` and write what it said of our jobs; returns the
    tick's words. The cursor records when and how long."""
    started = time.time()
    try:
        statuses = backend.status([r.job_id for r in unfinished],
                                  known={r.job_id: r.state for r in unfinished})
    except BatonError as exc:
        led.heartbeat("slurm_tracker", f"Slurm did not answer: {exc}")
        raise
    took = time.time() - started
    context.update_cursor(PollClock(started, took).dump())
    mine, foreign = own_statuses(unfinished, statuses)
    if foreign:
        context.log.warning(f"Slurm answered for job id(s) {' '.join(foreign[:20])} with an "
                            "older job's record (a reused id): not applied to ours")
    if not getattr(backend, "deferred", False):  # every source was asked
        said = own_word(unfinished, mine)
        if said:
            context.log.warning(f"no Slurm source knows job(s) {' '.join(list(said)[:20])}: "
                                "their end is taken from their own output's last line")
        mine.update(said)
    changed = led.apply_statuses(mine)
    detail = f"{len(unfinished)} unfinished, {len(mine)} answered, {changed} changed"
    if getattr(backend, "deferred", False):
        detail += "; the Slurm call budget is spent: the others next poll"
    return detail
