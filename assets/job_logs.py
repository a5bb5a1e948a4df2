"""Where a stage's Slurm jobs wrote their stdout and stderr, as metadata of its asset
events and failures: one click from the Dagster UI to a job's log (``baton logs JOBID``
prints it), and with ``web.url`` their pages in ``baton web``."""

from collections.abc import Sequence

from dagster import MetadataValue

from baton.config import WebConfig
from baton.ledger import Ledger
from baton.web.links import MAX_JOBS, web_links


def job_log_metadata(ledger: Ledger, job_ids: Sequence[str | None]) -> dict[str, MetadataValue]:
    """``stdout`` and ``stderr`` of one job; ``stdout JOBID`` and ``stderr JOBID`` of each
    of several (the first :data:`MAX_JOBS`). A path the ledger does not hold is left out."""
    rows = ledger.jobs_by_job_id([j for j in job_ids if j][:MAX_JOBS])
    meta: dict[str, MetadataValue] = {}
    for job_id, row in rows.items():
        for kind in ("stdout", "stderr"):
            if path := getattr(row, f"{kind}_path"):
                key = kind if len(rows) == 1 else f"{kind} {job_id}"
                meta[key] = MetadataValue.path(path)
    return meta


def web_link_metadata(web: WebConfig, experiment: str, job_ids: Sequence[str | None]
                      ) -> dict[str, MetadataValue]:
    """The experiment's page and its jobs' log pages in ``baton web`` (``web.url``)."""
    return {k: MetadataValue.url(v) for k, v in web_links(web, experiment, job_ids).items()}
