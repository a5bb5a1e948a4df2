"""Emit each run request until Dagster holds its run, then never again.

Run keys make a repeated request harmless; confirming the run (and recording that as a
fact in the ledger) keeps an idle tick from re-asking about the whole history. A crash
between deciding and the daemon persisting the request is covered: nothing is confirmed
until the run exists, so the next tick asks again."""


from dagster import RunRequest, RunsFilter, SensorEvaluationContext

from baton.ledger import Ledger

RUN_KEY_TAG = "dagster/run_key"


def run_exists(context: SensorEvaluationContext, run_key: str) -> bool:
    runs = context.instance.get_run_records(filters=RunsFilter(tags={RUN_KEY_TAG: run_key}),
                                            limit=1)
    return bool(runs)


def requests_once(context: SensorEvaluationContext, ledger: Ledger,
                  requests: list[RunRequest]) -> list[RunRequest]:
    """The requests whose runs do not exist yet; the others are confirmed as facts."""
    out = []
    for request in requests:
        key = request.run_key
        assert key, "every baton run request has a run key"
        if run_exists(context, key):
            ledger.record_fact(f"run:{key}", "run_requested",
                               detail={"partition": request.partition_key})
        else:
            out.append(request)
    return out
