"""The evaluations a training tick found due, submitted by that tick, without a run
(``sensors.submit_in_tick``; issue 15).

A run is a process of Dagster and baton started to call sbatch once: about 6 s before it
submits, 150-250 MB and seconds of CPU on the login node. The sensor already holds
everything the run would: the ledger, the Slurm backend, the experiments due. So for the
signals it accepted in this very tick (no run can have been asked for them yet) it does
what the batch run does: one submission, claimed task by task in the ledger, and an
``evaluation_job`` materialization per experiment. Everything else keeps its run: a
request left due from an earlier tick (a run's retry, a claim still being submitted), a
refused one (its run fails where the UI shows it), a dry run, and whatever does not fit
in this tick's share of the sensor's time.

As safe as the run, and the run's safety net: before anything is claimed, a
``submission_under_way`` fact names each request (the batch run writes it too), so a
submitter that dies leaves a trace. Dagster stores a tick's events after the sensor
returns; every tick confirms each request whose materialization Dagster holds (the fact
``run:{request}``, as a run confirms it) and emits again the events of those it does not,
from the same idempotent submission: tasks Slurm accepted are not submitted again. A claim
still SUBMITTING waits for the tracker, which adopts the job carrying its token or fails
the claim; a request whose claims failed, or that claimed nothing, is due again and
answered by a run; one in a run still in flight waits for it."""

from __future__ import annotations

import time
from collections.abc import Sequence

from dagster import AssetMaterialization, RunRequest, SensorEvaluationContext

from assets.batches import OP_OF, REQUEST_KEY, submit_evaluations_job
from assets.experiment import announced
from baton.errors import BatonError
from baton.ledger import Ledger
from baton.ledger.window import Window
from baton.logs import log_context
from baton.pipeline.keys import UNDER_WAY, under_way
from baton.pipeline.steps import Submission, refusals, submit_evaluations
from resources import LedgerResource, SlurmResource
from sensors.once import in_flight, submitting
from sensors.runless import BUDGET_S, stored

ASSET = "evaluation_job"


def submit_in_tick(context: SensorEvaluationContext, ledger: LedgerResource,
                   slurm: SlurmResource, requests: Sequence[RunRequest], accepted: set[str],
                   started: float) -> tuple[list, list[RunRequest]]:
    """The events of what this tick submitted, and the requests left to a run.
    ``accepted``: the signal keys this tick accepted; ``started``: the tick's start
    (``time.monotonic()``)."""
    led = ledger.ledger()
    mine = {str(r.partition_key): r for r in requests if _signal(r) in accepted}
    left = [r for r in requests if _signal(r) not in accepted]
    if slurm.settings.sensors.dry_run or not mine or \
            time.monotonic() - started > BUDGET_S:  # a dry run's run observes, says it
        return [], list(requests)
    refused = refusals(slurm.settings, led, "evaluation", list(mine))
    left += [mine.pop(exp) for exp in refused]
    if not mine:
        return [], left
    led.record_facts(UNDER_WAY, {under_way(str(r.run_key)): exp for exp, r in mine.items()})
    events: list = []
    backend = slurm.client()
    with log_context(stage="evaluation"):
        try:
            subs = submit_evaluations(slurm.settings, led, backend, list(mine))
        except BatonError as exc:  # e.g. sbatch refused: recorded; a run asks again
            context.log.warning(f"submitting {len(mine)} evaluation(s) in the tick "
                                f"failed: {exc}; left to a run")
            return events, left + list(mine.values())
        events += [_event(context, ledger, backend.name, sub, str(mine[exp].run_key))
                   for exp, sub in subs.items()]
    return events, left


def unconfirmed(context: SensorEvaluationContext, ledger: LedgerResource,
                slurm: SlurmResource, window: Window, started: float) -> list:
    """The submissions under way of earlier ticks and runs: confirmed once Dagster holds
    their event, emitted again when it does not (their submitter died before it was
    stored)."""
    led, events = ledger.ledger(), []
    rows = led.facts_unanswered(UNDER_WAY, under_way(""), "run:", window)
    asked = in_flight(context, submit_evaluations_job.name,
                      OP_OF[submit_evaluations_job.name]) if rows else set()
    for row in rows:
        if time.monotonic() - started > BUDGET_S:
            break  # the rest at the next tick
        key, exp = row.key.removeprefix(under_way("")), str(row.experiment)
        if key in asked:
            continue  # its run, still in flight, answers it (and confirms it)
        if stored(context, ASSET, exp, key) or _superseded(led, exp, key):
            led.record_fact(f"run:{key}", "run_requested",
                            detail={"partition": exp, "runless": True})
            continue
        request = RunRequest(run_key=key, partition_key=exp)
        if submitting(led, request) or not led.evaluation_tasks(exp, _signal(request)):
            continue  # the tracker settles the claim, or it is due again: a run answers it
        backend = slurm.client()
        context.log.warning(f"{exp}: the event of its evaluation's submission was never "
                            "stored (its submitter died); recorded again",
                            extra={"experiment": exp})
        with log_context(stage="evaluation"):
            sub = submit_evaluations(slurm.settings, led, backend, [exp])[exp]
            events.append(_event(context, ledger, backend.name, sub, key))
    return events


def _superseded(led: Ledger, exp: str, key: str) -> bool:
    """A later training signal of the experiment: its evaluation is another request."""
    run = led.training_run(exp)
    return run is None or run.signal_key != key.partition(":")[2]


def _signal(request: RunRequest) -> str:
    return str(request.run_key).partition(":")[2]


def _event(context: SensorEvaluationContext, ledger: LedgerResource, backend: str,
           sub: Submission, key: str) -> AssetMaterialization:
    """The materialization a run would make of the submission (and its line), with the
    request it answers."""
    metadata = announced(context.log, ledger, backend, sub.experiment, sub)
    return AssetMaterialization(asset_key=ASSET, partition=sub.experiment,
                               metadata={**metadata, REQUEST_KEY: key})
