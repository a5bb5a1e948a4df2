"""What each page shows, from the ledger's bounded queries: plain values and links for the
templates (which only lay them out)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from baton.config import Config
from baton.ledger import Ledger
from baton.ledger.web_queries import STATES, ExperimentDetail, Page
from baton.slurm.states import FAILED_STATES

PAGE_SIZE = 50
DAGSTER_ASSETS = ("model", "evaluation_metrics", "analysis_report")
COMPLETION_SECONDS = 60.0  # how long the campaigns' completion is reused
Completion = dict[str, tuple[int, int]]


class Remembered:
    """The campaigns' completion, computed at most once a minute: it reads every trained
    experiment of the campaigns shown (the ledger has no index on their campaign), which
    takes hundreds of milliseconds with 10^6 job rows. Two threads may both compute it;
    either answer is right."""

    def __init__(self, compute: Callable[[Sequence[str]], Completion],
                 seconds: float = COMPLETION_SECONDS) -> None:
        self.compute, self.seconds = compute, seconds
        self.kept: tuple[float, tuple[str, ...], Completion] | None = None

    def __call__(self, tags: Sequence[str]) -> Completion:
        key, now = tuple(tags), time.monotonic()
        if self.kept and self.kept[1] == key and now - self.kept[0] < self.seconds:
            return self.kept[2]
        value = self.compute(key)
        self.kept = (now, key, value)
        return value


@dataclass(frozen=True)
class Links:
    """Where an experiment's outside pages are (None: not configured)."""

    dagster: str | None
    mlflow: str | None

    @classmethod
    def of(cls, config: Config) -> Links:
        return cls(config.dagster.url, config.mlflow.ui())

    def run(self, run_id: str | None) -> str | None:
        return f"{self.mlflow}/#/runs/{quote(run_id)}" if self.mlflow and run_id else None

    def assets(self, experiment: str) -> list[tuple[str, str]]:
        if not self.dagster:
            return []
        return [(a, f"{self.dagster}/assets/{a}?view=partitions&partition="
                    f"{quote(experiment)}") for a in DAGSTER_ASSETS]


def now() -> datetime:
    return datetime.now(UTC)


def ago(when: datetime | None, at: datetime | None = None) -> str:
    """``3m``, ``2h 5m``, ``4d 3h`` before ``at`` (default now); ``-`` for none."""
    if when is None:
        return "-"
    return span(((at or now()) - when).total_seconds())


def span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def stamp(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M}" if when else "-"


def mb(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.0f} MB"


def pager(page: Page, params: Mapping[str, str]) -> dict[str, str | None]:
    """Links to the previous and next pages, keeping the page's filters."""
    def at(offset: int) -> str:
        return "?" + urlencode({**{k: v for k, v in params.items() if v}, "offset": offset})

    return {"prev": at(max(0, page.offset - page.limit)) if page.offset else None,
            "next": at(page.offset + page.limit) if page.more else None,
            "first": page.offset + 1 if page.rows else 0,
            "last": page.offset + len(page.rows)}


def _stages(row: Any, detail: ExperimentDetail) -> list[tuple[str, str]]:
    """(label, state) of trained -> evaluating k/n -> analysed -> reported."""
    trained = {"completed": "complete", "failed": "failed"}.get(row.status, "running")
    if row.tasks_failed:
        evaluating = "failed"
    elif row.tasks and row.tasks_done == row.tasks:
        evaluating = "complete"
    else:
        evaluating = "running" if row.tasks else "pending"
    analysed = {"completed": "complete", "failed": "failed", None: "pending"}.get(
        row.analysis, "running")
    label = (f"evaluated {row.tasks_done}/{row.tasks}" if evaluating == "complete"
             else f"evaluating {row.tasks_done}/{row.tasks}")
    return [("trained", trained), (label, evaluating), ("analysed", analysed),
            ("reported", "complete" if detail.report else "pending")]


def _filters(params: Mapping[str, str]) -> dict[str, str]:
    """The experiments' filters from the URL: at most 255 characters each, without NUL
    (which PostgreSQL refuses in a string); an unknown state is no filter."""
    out = {k: params.get(k, "").replace("\0", "")[:255]
           for k in ("name", "campaign", "user", "state")}
    if out["state"] not in STATES:
        out["state"] = ""
    return out


def experiments(ledger: Ledger, links: Links, params: Mapping[str, str], offset: int
                ) -> dict[str, Any]:
    filters = _filters(params)
    page = ledger.experiments_page(**filters, offset=offset, limit=PAGE_SIZE)
    details = ledger.experiment_details([r.experiment_name for r in page.rows])
    rows = []
    for r in page.rows:
        d = details[r.experiment_name]
        rows.append({
            "name": r.experiment_name, "campaign": r.campaign, "user": r.user,
            "state": r.state, "stages": _stages(r, d), "trained": stamp(r.completed_at),
            "reason": d.reason if r.state in ("failed", "waiting") else None,
            "report": d.report[0] if d.report else None,
            "runs": [(n, u) for n, u in (("training", links.run(r.mlflow_run_id)),
                                         ("analysis", links.run(d.analysis_run))) if u],
            "assets": links.assets(r.experiment_name),
            "jobs": [{"job_id": j.job_id, "stage": j.stage, "state": j.state,
                      "failed": j.state in FAILED_STATES}
                     for j in d.jobs[:4] if j.job_id],
        })
    return {"rows": rows, "pager": pager(page, filters), "states": STATES,
            "filters": filters}


def queue(ledger: Ledger, offset: int) -> dict[str, Any]:
    page = ledger.queue_page(offset, 100)
    at = now()
    rows = [{"job_id": j.job_id, "experiment": j.experiment, "stage": j.stage,
             "state": j.state, "reason": j.reason, "attempt": j.attempt,
             "submitted": stamp(j.submitted_at),
             "wait": span(((j.started_at or at) - j.submitted_at).total_seconds())
             if j.submitted_at else "-",
             "running": ago(j.started_at, at) if j.started_at else "-",
             "req": f"{j.req_cpus or '-'} CPU, {mb(j.req_mem_mb)}, {span(j.req_time_s)}",
             "used": f"{mb(j.max_rss_mb)} max RSS, {span(j.cpu_seconds)} CPU"
             if j.max_rss_mb or j.cpu_seconds else "-", "node": j.node or "-"}
            for j in page.rows]
    return {"rows": rows, "pager": pager(page, {}), "counts": ledger.queue_counts()}


def failures(ledger: Ledger, offset: int) -> dict[str, Any]:
    page = ledger.failed_jobs_page(offset, PAGE_SIZE)
    errors, decided = ledger.failure_notes(page.rows)
    jobs = []
    for j in page.rows:
        sup = decided.get(j.id)
        jobs.append({"job_id": j.job_id, "experiment": j.experiment, "stage": j.stage,
                     "state": j.state, "exit": j.exit_code, "ended": stamp(j.ended_at),
                     "why": errors.get(j.id) or j.reason or "-", "attempt": j.attempt,
                     "action": sup.action if sup else None, "note": sup.note if sup else None,
                     "dispatch": sup.dispatch_status if sup else None,
                     "execution": sup.execution_status if sup else None,
                     "repair": sup.repair_job_id if sup else None})
    people = [{"id": s.id, "experiment": s.experiment, "stage": s.stage, "job_id": s.job_id,
               "reason": s.reason, "action": s.action, "note": s.note,
               "error": s.dispatch_error, "at": stamp(s.created_at)}
              for s in ledger.awaiting_people(100)]
    quarantined = [{"kind": q.kind, "experiment": q.experiment, "path": q.path,
                    "reason": q.reason, "seen": stamp(q.seen_at)}
                   for q in ledger.quarantined_page(0, PAGE_SIZE).rows]
    return {"jobs": jobs, "pager": pager(page, {}), "people": people,
            "quarantined": quarantined}


def status(ledger: Ledger, config: Config, offset: int) -> dict[str, Any]:
    page, history = ledger.status_page(offset, 100)
    at = now()
    rows = []
    for r in page.rows:
        quiet = (at - r.reported_at).total_seconds()
        stale = r.status in ("started", "running") and quiet > config.status.interval(
            r.project, r.job)
        rows.append({"project": r.project, "job": r.job, "status": r.status,
                     "progress": r.progress, "message": r.message, "host": r.host,
                     "reported": stamp(r.reported_at), "ago": ago(r.reported_at, at),
                     "stale": stale,
                     "timeline": [(e.status, f"{stamp(e.reported_at)} {e.status}"
                                   + (f" {e.progress:.0f}%" if e.progress is not None else "")
                                   + (f": {e.message}" if e.message else ""))
                                  for e in history.get((r.project, r.job), [])]})
    return {"rows": rows, "pager": pager(page, {})}


def campaigns(ledger: Ledger, completion: Remembered, show_all: bool) -> dict[str, Any]:
    rows = ledger.list_campaigns(active_only=not show_all)[:200]
    done = completion([c.tag for c in rows])
    at = now()
    out = []
    for c in rows:
        finished, total = done.get(c.tag, (0, 0))
        share = finished / total if total else None
        eta = None  # at the pace so far, from started_at
        if share and c.started_at and share < 1:
            eta = c.started_at + (at - c.started_at) / share
        out.append({"tag": c.tag, "type": c.type, "name": c.display_name or c.tag,
                    "active": c.active, "priority": c.priority, "notes": c.notes,
                    "done": finished, "total": total,
                    "percent": round(100 * share) if share is not None else None,
                    "started": stamp(c.started_at), "expected_end": stamp(c.expected_end),
                    "left": ago(at, c.expected_end) if c.expected_end and c.expected_end > at
                    else ("overdue" if c.expected_end and share != 1 else "-"),
                    "eta": stamp(eta),
                    "late": bool(eta and c.expected_end and eta > c.expected_end)})
    return {"rows": out, "show_all": show_all}

