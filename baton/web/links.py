"""Links to ``baton web``'s pages for what other tools show (the Dagster metadata of an
experiment's asset events and failures): its page and each job's log page, at
``web.url``. Plain strings, so the core stays free of Dagster."""

from __future__ import annotations

from collections.abc import Sequence

from baton.config import WebConfig

MAX_JOBS = 20  # an array's first tasks; the rest are one `baton logs` away


def web_links(web: WebConfig, experiment: str, job_ids: Sequence[str | None]
              ) -> dict[str, str]:
    """``baton web`` (the experiment's page) and ``baton web log`` (one job's log page) or
    ``baton web log JOBID`` (each of several); none without ``web.url``."""
    page = web.experiment_page(experiment)
    if page is None:
        return {}
    ids = list(dict.fromkeys(j for j in job_ids if j))[:MAX_JOBS]
    logs = {("baton web log" if len(ids) == 1 else f"baton web log {j}"): url
            for j in ids if (url := web.log_page(j))}
    return {"baton web": page, **logs}
