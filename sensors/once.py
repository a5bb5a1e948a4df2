"""Emit each run request until one of its runs succeeds, then never again.

A request is decided from the runs Dagster holds for it (its first run key and its
retries' ``{key}#n``, all tagged ``baton/request``):

- a run succeeded: done, confirmed as a fact in the ledger, so an idle tick does not
  re-ask about the whole history (a dry run succeeds too, and is done); so is a run that
  only records (the join, the reports) whose step failed: it recorded the failure it
  found (an evaluation whose every task failed);
- a run is still in flight (queued, starting, running, canceling): wait for its outcome;
- every run ended without success (failed or canceled; run monitoring fails a run whose
  process died, e.g. a daemon SIGKILLed while the run was STARTING): ask again under a new
  run key, ``{key}#2``, ``#3``... (Dagster drops a repeated key), up to ``MAX_RUNS`` runs.
  Asking again submits nothing twice: a submission is claimed by its key in the ledger,
  so the new run submits only what no claim holds, and records what the dead run
  submitted but did not record (its stage rows are kept once per claim). Only a claim
  still SUBMITTING (its submitter died between claim and Slurm's answer) makes the
  request wait, until the tracker adopts the queued job carrying its token or marks the
  claim failed (then the new run claims it again).

A crash between deciding and the daemon persisting the request is covered: nothing is
confirmed until a run succeeds, so the next tick asks again."""


from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from dagster import DagsterRun, DagsterRunStatus, RunRequest, RunsFilter, SensorEvaluationContext

from baton.ledger import Ledger
from baton.pipeline.keys import analysis_key, evaluation_key, short

RUN_KEY_TAG = "dagster/run_key"
FAILURE_REASON_TAG = "dagster/failure_reason"  # what Dagster says ended a failed run
# the requests whose runs only record what the ledger holds: a failed step is their answer
RECORDING = ("evaluation_metrics:", "analysis_report:", "campaign_report:")
REQUEST_TAG = "baton/request"  # the request's first run key, on every run asked for it
MAX_RUNS = 5


def runs_of(context: SensorEvaluationContext, key: str) -> list[DagsterRun]:
    """Every run asked for the request ``key``: by its tag, and by the first run key for
    runs requested before the tag existed."""
    found: dict[str, DagsterRun] = {}
    for tags in ({REQUEST_TAG: key}, {RUN_KEY_TAG: key}):
        for record in context.instance.get_run_records(filters=RunsFilter(tags=tags)):
            found[record.dagster_run.run_id] = record.dagster_run
    return list(found.values())


def submitting(ledger: Ledger, request: RunRequest) -> bool:
    """Whether a submission the request's run claims (an evaluation; the analysis that
    recording an evaluation submits) is still being submitted."""
    kind, _, trigger = (request.run_key or "").partition(":")
    exp = request.partition_key
    if kind == "evaluation_job" and exp:  # every task's key: this, then its checkpoint's
        stage, prefix = "evaluation", evaluation_key(exp, trigger, "").rpartition(":")[0] + ":"
    elif kind == "evaluation_metrics" and exp:
        stage, prefix = "analysis", analysis_key(exp, trigger)
    else:
        return False  # the other runs only record: nothing to claim
    return any(row.state == "SUBMITTING" and row.submission_key.startswith(prefix)
               for row in ledger.jobs(experiment=exp, stage=stage))


def requests_once(context: SensorEvaluationContext, ledger: Ledger,
                  requests: list[RunRequest]) -> list[RunRequest]:
    """The requests to emit this tick: those without a run yet, and the retries of those
    whose every run ended without success; the others wait, or are confirmed as facts."""
    out = []
    for request in requests:
        key = request.run_key
        assert key, "every baton run request has a run key"
        runs = runs_of(context, key)
        if not runs:
            out.append(_tagged(request, key, key))
            continue
        if any(run.status == DagsterRunStatus.SUCCESS or _recorded_failure(key, run)
               for run in runs):
            ledger.record_fact(f"run:{key}", "run_requested",
                               detail={"partition": request.partition_key})
            continue
        if not all(run.is_finished for run in runs) or submitting(ledger, request):
            continue  # its outcome, or the tracker's settling of its claim, decides
        if len(runs) >= MAX_RUNS:
            context.log.error(f"{key}: {len(runs)} runs ended without success "
                              f"({_statuses(runs)}); not asking again")
            ledger.record_fact(f"run:{key}", "run_given_up",
                               detail={"partition": request.partition_key,
                                       "runs": [r.run_id for r in runs]})
            continue
        retry = f"{key}#{len(runs) + 1}"
        context.log.warning(f"{key}: every run ended without success ({_statuses(runs)}); "
                            f"asking again as {retry}")
        out.append(_tagged(request, key, retry))
    return out


def _recorded_failure(key: str, run: DagsterRun) -> bool:
    """A recording run whose step failed: it ran and recorded the failure it found (an
    evaluation whose every task failed fails ``evaluation_metrics``). Asking again would
    only fail again; a run that died before its step ended has no such reason."""
    return key.startswith(RECORDING) and run.status == DagsterRunStatus.FAILURE and \
        run.tags.get(FAILURE_REASON_TAG) == "STEP_FAILURE"


def _tagged(request: RunRequest, key: str, run_key: str) -> RunRequest:
    return RunRequest(run_key=run_key, run_config=request.run_config,
                      tags={**request.tags, REQUEST_TAG: key}, job_name=request.job_name,
                      asset_selection=request.asset_selection,
                      asset_check_keys=request.asset_check_keys,
                      stale_assets_only=request.stale_assets_only,
                      partition_key=request.partition_key)


def _statuses(runs: Sequence[DagsterRun]) -> str:
    return ", ".join(f"{r.run_id[:8]} {r.status.value}" for r in runs)


IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
RECENT_S = 300  # a batch run that succeeded this recently: its requests are answered
BATCH_TAG = "baton/batch"  # the batch job's name, on each of its runs


def batch_once(context: SensorEvaluationContext, ledger: Ledger, requests: list[RunRequest],
               job_name: str, op_name: str) -> list[RunRequest]:
    """The tick's due requests (one per signal, as the one-run-per-signal path asks them)
    as at most one run of the batch job ``job_name``, its config listing them.

    A request already in a batch run in flight waits for it; one whose claim is still
    SUBMITTING waits for the tracker (see :func:`submitting`). The rest form the batch,
    keyed by a hash of their sorted keys: the run confirms each request it answered as a
    fact in the ledger (the sensors stop finding it due), so the same set is due again
    only when its runs ended without confirming it: then it is asked again as ``#2``...
    as :func:`requests_once` does, up to ``MAX_RUNS`` runs, and then given up per request.
    A batch run that dies mid-way is safe to repeat: each submission is claimed by its
    key, so the next run submits only what no claim holds."""
    if not requests:
        return []
    busy = in_flight(context, job_name, op_name)
    due = [r for r in requests if r.run_key not in busy and not submitting(ledger, r)]
    if not due:
        return []
    keys = sorted(str(r.run_key) for r in due)
    key = f"{job_name}:{short(','.join(keys))}"
    runs = runs_of(context, key)
    if any(run.status == DagsterRunStatus.SUCCESS for run in runs):
        return []  # it confirmed them after this tick read the ledger: the next tick knows
    if runs and len(runs) >= MAX_RUNS:
        context.log.error(f"{key}: {len(runs)} runs of {len(due)} request(s) ended without "
                          f"success ({_statuses(runs)}); not asking again")
        for r in due:
            ledger.record_fact(f"run:{r.run_key}", "run_given_up",
                               detail={"partition": r.partition_key, "batch": key,
                                       "runs": [run.run_id for run in runs]})
        return []
    if runs:
        context.log.warning(f"{key}: every run ended without confirming its {len(due)} "
                            f"request(s) ({_statuses(runs)}); asking again")
    config = {"experiments": [str(r.partition_key) for r in due],
              "requests": [str(r.run_key) for r in due]}
    return [RunRequest(run_key=f"{key}#{len(runs) + 1}" if runs else key, job_name=job_name,
                       run_config={"ops": {op_name: {"config": config}}},
                       tags={REQUEST_TAG: key, BATCH_TAG: job_name,
                             "baton/experiments": str(len(due))})]


def in_flight(context: SensorEvaluationContext, job_name: str, op_name: str) -> set[str]:
    """The requests the batch runs of ``job_name`` answer that are still in flight, or
    that succeeded in the last minutes (each confirmed its requests in the ledger, maybe
    after this tick read it): a few runs, whatever the history."""
    recent = datetime.now(UTC) - timedelta(seconds=RECENT_S)
    busy: set[str] = set()
    records = [*context.instance.get_run_records(
        filters=RunsFilter(job_name=job_name, statuses=IN_FLIGHT)),
        *context.instance.get_run_records(filters=RunsFilter(
            job_name=job_name, statuses=[DagsterRunStatus.SUCCESS], updated_after=recent))]
    for record in records:
        config = (record.dagster_run.run_config or {}).get("ops", {}).get(op_name, {})
        busy.update((config.get("config") or {}).get("requests") or [])
    return busy
