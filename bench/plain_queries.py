"""Benchmark 3's baseline: every family the exporter computes from the ledger, each from a
plain SQL query (the database aggregates; Python only formats the lines and looks up the
status intervals in the configuration). Two joins that several families share (the
progress table, the flows) go once into a temporary table. SQLite only, as the benchmark's
ledger: durations are computed from the stored text to the microsecond, so they are the
same floats the collector computes in Python."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text

from baton.exporter.collector import BatonCollector
from baton.exporter.control import FINISHED_REPORTS_SECONDS
from baton.exporter.dashboard import _MAP, DASHBOARD_STATES, FAILURE_REASONS
from baton.exporter.families import LATENCY_BUCKETS, RATIO_BUCKETS, WAIT_BUCKETS
from baton.exporter.repairs import POSSIBLE
from baton.ledger import Ledger
from baton.ledger.supervisions import LIVE, STAGES

Key = tuple[str, tuple[tuple[str, str], ...]]
UNFINISHED = tuple(s for s in DASHBOARD_STATES if s not in ("finished", "failed"))


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


SHOWN = ("CASE WHEN state = 'PENDING' AND substr(reason, 1, 7) = 'JobHeld' THEN 'held' "
         + " ".join(f"WHEN state = '{s}' THEN '{d}'" for s, d in _MAP.items())
         + " ELSE 'failed' END")
# as baton.exporter.dashboard.failure_reason (killed: signal 9 or exit code 137)
REASON = ("CASE WHEN state = 'OUT_OF_MEMORY' OR (state = 'FAILED' "
          "AND (exit_signal = 9 OR exit_code = 137) AND "
          "max_rss_mb <> 0 AND req_mem_mb <> 0 AND max_rss_mb >= req_mem_mb) "
          "THEN 'out_of_memory' "
          "WHEN state IN ('TIMEOUT', 'DEADLINE') THEN 'timeout' "
          "WHEN state IN ('NODE_FAIL', 'BOOT_FAIL') THEN 'node_fail' "
          "WHEN state = 'PREEMPTED' THEN 'preempted' WHEN state = 'CANCELLED' THEN 'cancelled' "
          "WHEN state = 'SUBMIT_FAILED' THEN 'submit_failed' WHEN state = 'LOST' THEN 'lost' "
          "ELSE 'error' END")


def _us(col: str) -> str:
    """Microseconds since the epoch of a stored UTC datetime ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    # whole seconds from the text without its fraction: SQLite rounds a time to the
    # millisecond first, which would carry .9996 s into the next second
    return (f"(CAST(strftime('%s', substr({col}, 1, 19)) AS INTEGER) * 1000000 + "
            f"CAST(substr({col}, 21, 6) AS INTEGER))")


def _epoch(col: str) -> str:
    return f"({_us(col)} / 1000000.0)"


def _secs(a: str, b: str) -> str:
    """max(0, b - a) in seconds, as ``timedelta.total_seconds()`` computes it."""
    return f"MAX(0.0, ({_us(b)} - {_us(a)}) / 1000000.0)"


def _age(col: str) -> str:
    return f"MAX(0.0, (julianday('now') - julianday({col})) * 86400.0)"


def _hist_sql(value: str, where: str, buckets: tuple[float, ...], source: str,
              group: str | None) -> str:
    cols = ", ".join(f"SUM(v <= {b})" for b in buckets)
    sel, by = (f"{group} AS g, ", " GROUP BY g") if group else ("'' AS g, ", "")
    # MATERIALIZED: each value computed once, not once per bucket
    return (f"WITH x AS MATERIALIZED (SELECT {sel}{value} AS v FROM {source} WHERE {where}) "
            f"SELECT g, COUNT(*), SUM(v), {cols} FROM x{by}")


BASE = ("CASE WHEN instr(trigger_key, '#attempt-') > 0 THEN "
        "substr(trigger_key, 1, instr(trigger_key, '#attempt-') - 1) ELSE trigger_key END")
ATTEMPT = ("CASE WHEN instr(trigger_key, '#attempt-') > 0 THEN CAST(substr(trigger_key, "
           "instr(trigger_key, '#attempt-') + 9) AS INTEGER) ELSE 1 END")

# per training signal (the base of a trigger key): when its evaluation was first
# submitted, when the evaluation completed (every checkpoint's latest attempt completed),
# when an analysis of it completed (see baton/exporter/flows.py)
FLOW_KEYS = f"""CREATE TEMP TABLE flow_keys AS
WITH g AS (
  SELECT {BASE} AS base, {ATTEMPT} AS attempt, checkpoint_path AS ckpt,
         MIN(submitted_at) AS first, MAX(completed_at) AS done,
         SUM(status <> 'completed') AS notc
  FROM evaluation_jobs WHERE trigger_key IS NOT NULL GROUP BY trigger_key, checkpoint_path),
latest AS (SELECT base, done, notc, ROW_NUMBER() OVER (
             PARTITION BY base, ckpt ORDER BY attempt DESC) AS rn FROM g)
SELECT base, MIN(sub) AS sub, MAX(evaluated) AS evaluated, MAX(analysed) AS analysed FROM (
  SELECT base, first AS sub, NULL AS evaluated, NULL AS analysed FROM g
  UNION ALL
  SELECT base, NULL, MAX(done), NULL FROM latest WHERE rn = 1 GROUP BY base
  HAVING SUM(notc > 0 OR done IS NULL) = 0
  UNION ALL
  SELECT {BASE}, NULL, NULL, completed_at FROM analysis_jobs
  WHERE status = 'completed' AND trigger_key IS NOT NULL AND completed_at IS NOT NULL)
GROUP BY base"""
# per training run: when it trained, its signal's mtime, and the above
FLOWS = """CREATE TEMP TABLE flows AS
SELECT t.completed_at AS trained, s.file_mtime AS mtime, k.sub, k.evaluated, k.analysed
FROM training_runs t LEFT JOIN signals s ON s.idempotency_key = t.signal_key
LEFT JOIN flow_keys k ON k.base = t.signal_key"""

# per (campaign, experiment, stage): tasks expected, and the latest attempt of each task by
# dashboard state (see baton.ledger.campaigns.progress)
PROGRESS = f"""CREATE TEMP TABLE progress AS
WITH ranked AS (
  SELECT stage, experiment, campaign, state, reason, ROW_NUMBER() OVER (
    PARTITION BY stage, experiment, COALESCE(json_extract(metadata, '$.checkpoint'), '')
    ORDER BY attempt DESC, id DESC) AS rn FROM slurm_jobs),
tasks AS (
  SELECT CASE WHEN r.id IS NULL THEN COALESCE(k.campaign, 'none')
              ELSE COALESCE(r.campaign, 'none') END AS camp,
         k.experiment AS exp, k.stage, {SHOWN} AS shown
  FROM ranked k LEFT JOIN training_runs r ON r.experiment_name = k.experiment
  WHERE k.rn = 1)
SELECT camp, exp, stage, MAX(expected) AS expected, SUM(submitted) AS submitted,
       SUM(running) AS running, SUM(finished) AS finished, SUM(failed) AS failed,
       SUM(open) AS open
FROM (
  SELECT COALESCE(campaign, 'none') AS camp, experiment_name AS exp, 'evaluation' AS stage,
         MAX(1, (SELECT COUNT(*) FROM checkpoints c WHERE c.training_run_id = t.id))
           AS expected, 0 AS submitted, 0 AS running, 0 AS finished, 0 AS failed, 0 AS open
  FROM training_runs t
  UNION ALL
  SELECT COALESCE(campaign, 'none'), experiment_name, 'analysis', 1, 0, 0, 0, 0, 0
  FROM training_runs
  UNION ALL
  SELECT camp, exp, stage, 0, 1, shown IN ('started', 'running'), shown = 'finished',
         shown = 'failed', shown IN {_in(UNFINISHED)}
  FROM tasks)
GROUP BY camp, exp, stage"""

COMPLETION = """SELECT c.tag, c.type, COALESCE(c.expected_jobs, p.implied, 0) AS want,
  COALESCE(p.finished, 0) AS finished FROM campaigns c LEFT JOIN (
    SELECT camp, SUM(finished) AS finished, SUM(MAX(expected, submitted)) AS implied
    FROM progress GROUP BY camp) p ON p.camp = c.tag"""

LAST_REPORTS = """SELECT project, job, status, progress, reported_at FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY project, job
                               ORDER BY reported_at DESC, id DESC) AS n
  FROM status_events)
WHERE n = 1 AND (status NOT IN ('completed', 'failed') OR reported_at >= :cutoff)"""


class PlainQueries:
    """The baseline: every number of the scrape from one aggregate query per metric."""

    def __init__(self, ledger: Ledger, collector: BatonCollector) -> None:
        self.ledger, self.collector = ledger, collector
        self.out: dict[Key, float] = {}

    def put(self, name: str, labels: dict[str, str], value: Any) -> None:
        self.out[(name, tuple(sorted(labels.items())))] = float(value or 0)

    def samples(self) -> dict[Key, float]:
        """(name, sorted label pairs) -> value of every sample the ledger part yields."""
        self.out = {}
        with self.ledger.read() as conn:
            def q(sql: str, **params: Any) -> list[Any]:
                result = conn.execute(text(sql), params)
                return result.fetchall() if result.returns_rows else []

            self._jobs(q)
            self._flows(q)
            self._campaigns(q)
            self._status(q)
            self._supervision(q)
        return self.out

    def _hist(self, name: str, labels: dict[str, str], buckets: tuple[float, ...],
              row: tuple) -> None:
        n, total, *counts = row[1:]
        for b, c in zip(buckets, counts, strict=True):
            self.put(f"{name}_bucket", {**labels, "le": str(b)}, c)
        self.put(f"{name}_bucket", {**labels, "le": "+Inf"}, n)
        self.put(f"{name}_count", labels, n)
        self.put(f"{name}_sum", labels, total)

    def _per_stage(self, q: Callable[..., list[Any]], name: str, sql: str,
                   stages: list[str]) -> None:
        values = dict(q(sql))
        for stage in stages:
            self.put(name, {"stage": stage}, values.get(stage, 0))

    def _jobs(self, q: Callable[..., list[Any]]) -> None:
        stages = sorted({r[0] for r in q("SELECT DISTINCT stage FROM slurm_jobs")}
                        | {"evaluation", "analysis"})
        counts = {(s, d): n for s, d, n in q(
            f"SELECT stage, {SHOWN}, COUNT(*) FROM slurm_jobs GROUP BY 1, 2")}
        failed = {(s, r): n for s, r, n in q(
            f"SELECT stage, {REASON}, COUNT(*) FROM slurm_jobs WHERE ({SHOWN}) = 'failed' "
            "GROUP BY 1, 2")}
        for stage in stages:
            for state in DASHBOARD_STATES:
                self.put("baton_jobs", {"stage": stage, "state": state},
                         counts.get((stage, state), 0))
            for reason in FAILURE_REASONS:
                self.put("baton_jobs_failed_total", {"stage": stage, "reason": reason},
                         failed.get((stage, reason), 0))
        for name, sql in (
                ("baton_jobs_finished_total", "SELECT stage, COUNT(*) FROM slurm_jobs "
                 "WHERE state = 'COMPLETED' GROUP BY stage"),
                ("baton_job_restarts_total", "SELECT stage, SUM(COALESCE(restarts, 0)) "
                 "FROM slurm_jobs GROUP BY stage"),
                ("baton_job_cpu_seconds_total", "SELECT stage, SUM(COALESCE(cpu_seconds, 0)) "
                 "FROM slurm_jobs GROUP BY stage"),
                ("baton_stage_consecutive_failures",
                 "WITH ok AS (SELECT stage, MAX(ended_at) AS last FROM slurm_jobs WHERE "
                 "state = 'COMPLETED' GROUP BY stage) SELECT j.stage, COUNT(*) FROM "
                 f"slurm_jobs j LEFT JOIN ok ON ok.stage = j.stage WHERE ({SHOWN}) = "
                 "'failed' AND j.ended_at IS NOT NULL AND j.ended_at > COALESCE(ok.last, '') "
                 "GROUP BY j.stage"),
                ("baton_oldest_waiting_job_seconds",
                 f"SELECT stage, {_age('MIN(submitted_at)')} FROM slurm_jobs WHERE "
                 f"({SHOWN}) IN ('pending', 'held') AND submitted_at IS NOT NULL "
                 "GROUP BY stage"),
                ("baton_longest_running_job_seconds",
                 f"SELECT stage, {_age('MIN(started_at)')} FROM slurm_jobs WHERE "
                 f"({SHOWN}) IN ('started', 'running') AND started_at IS NOT NULL "
                 "GROUP BY stage")):
            self._per_stage(q, name, sql, stages)
        for name, value, where, buckets in (
                ("baton_job_queue_wait_seconds", _secs("submitted_at", "started_at"),
                 "submitted_at IS NOT NULL AND started_at IS NOT NULL", WAIT_BUCKETS),
                ("baton_job_run_seconds", _secs("started_at", "ended_at"),
                 "started_at IS NOT NULL AND ended_at IS NOT NULL", WAIT_BUCKETS),
                ("baton_job_memory_used_ratio", "max_rss_mb / req_mem_mb",
                 "max_rss_mb <> 0 AND req_mem_mb <> 0", RATIO_BUCKETS)):
            for row in q(_hist_sql(value, where, buckets, "slurm_jobs", "stage")):
                self._hist(name, {"stage": row[0]}, buckets, row)
        for stage, at in q(f"SELECT stage, {_epoch('MAX(ended_at)')} FROM slurm_jobs WHERE "
                           "state = 'COMPLETED' AND ended_at IS NOT NULL GROUP BY stage"):
            self.put("baton_stage_last_success_timestamp_seconds", {"stage": stage}, at)
        for camp, stage, state, n in q(
                f"SELECT COALESCE(j.campaign, t.campaign, 'none'), j.stage, {SHOWN}, "
                "COUNT(*) FROM slurm_jobs j LEFT JOIN training_runs t "
                "ON t.experiment_name = j.experiment GROUP BY 1, 2, 3"):
            self.put("baton_campaign_jobs", {"campaign": camp, "stage": stage, "state": state},
                     n)
        for kind, status, n in q("SELECT kind, status, COUNT(*) FROM signals "
                                 "GROUP BY kind, status"):
            self.put("baton_signals_total", {"kind": kind, "status": status}, n)
        for name, at in q(f"SELECT name, {_epoch('beat_at')} FROM heartbeats"):
            self.put("baton_sensor_heartbeat_timestamp_seconds", {"sensor": name}, at)

    def _flows(self, q: Callable[..., list[Any]]) -> None:
        """The flow latencies: the join once into a temporary table, then one histogram
        query per metric."""
        q("DROP TABLE IF EXISTS temp.flows")
        q("DROP TABLE IF EXISTS temp.flow_keys")
        q(FLOW_KEYS)
        q("CREATE INDEX temp.ix_flow_keys_base ON flow_keys (base)")
        q(FLOWS)
        done = "evaluated IS NOT NULL AND analysed IS NOT NULL"
        for name, value, where, buckets in (
                ("baton_signal_detection_latency_seconds",
                 f"MAX(0.0, {_epoch('sub')} - mtime)", "mtime IS NOT NULL AND sub IS NOT NULL",
                 LATENCY_BUCKETS),
                ("baton_training_to_evaluation_seconds", _secs("trained", "evaluated"),
                 "evaluated IS NOT NULL AND trained IS NOT NULL", WAIT_BUCKETS),
                ("baton_evaluation_to_analysis_seconds", _secs("evaluated", "analysed"),
                 done, WAIT_BUCKETS),
                ("baton_end_to_end_seconds", f"COALESCE({_secs('trained', 'analysed')}, 0.0)",
                 done, WAIT_BUCKETS)):
            for row in q(_hist_sql(value, where, buckets, "flows", None)):
                self._hist(name, {}, buckets, row)
        age = q(f"SELECT {_age('MIN(trained)')} FROM flows "
                "WHERE evaluated IS NULL AND trained IS NOT NULL")
        self.put("baton_oldest_unanswered_training_seconds", {}, age[0][0])

    def _campaigns(self, q: Callable[..., list[Any]]) -> None:
        q("DROP TABLE IF EXISTS temp.progress")
        q(PROGRESS)
        for tag, type_, active in q("SELECT tag, type, active FROM campaigns"):
            self.put("baton_campaign_active", {"campaign": tag, "type": type_}, active)
        for tag, type_, priority in q("SELECT tag, type, priority FROM campaigns "
                                      "WHERE active"):
            self.put("baton_campaign_priority", {"campaign": tag, "type": type_}, priority)
        for tag, type_, name in q("SELECT tag, type, COALESCE(display_name, tag) FROM "
                                  "campaigns WHERE active"):
            self.put("baton_campaign_info",
                     {"campaign": tag, "type": type_, "display_name": name}, 1)
        for tag, type_, want, _ in q(COMPLETION):
            self.put("baton_campaign_expected_jobs", {"campaign": tag, "type": type_}, want)
        for tag, type_, want, finished in q(COMPLETION + " WHERE c.active"):
            self.put("baton_campaign_completion_ratio", {"campaign": tag, "type": type_},
                     finished / want if want else 0)
        for camp, exp, stage, *values in q(
                "SELECT camp, exp, stage, expected, submitted, running, finished, failed "
                "FROM progress WHERE exp IN (SELECT exp FROM progress WHERE open > 0 OR camp "
                "IN (SELECT tag FROM campaigns WHERE active)) ORDER BY camp, exp, stage"):
            for column, n in zip(("expected", "submitted", "running", "finished", "failed"),
                                 values, strict=True):
                self.put("baton_progress_tasks", {"campaign": camp, "experiment": exp,
                                                  "stage": stage, "column": column}, n)
        for type_, n in q("SELECT type, SUM(occurrences) FROM unknown_campaign_types "
                          "GROUP BY type"):
            self.put("baton_campaign_unknown_type_signals_total", {"type": type_}, n)

    def _status(self, q: Callable[..., list[Any]]) -> None:
        cutoff = (datetime.now(UTC) - timedelta(seconds=FINISHED_REPORTS_SECONDS)).replace(
            tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        config = self.collector.config.status
        for project, job, status, at in q(
                f"SELECT project, job, status, {_epoch('reported_at')} FROM ("
                f"{LAST_REPORTS})", cutoff=cutoff):
            self.put("baton_status_last_report_timestamp_seconds",
                     {"project": project, "job_name": job, "status": status}, at)
        for project, job, progress in q(
                f"SELECT project, job, progress / 100.0 FROM ({LAST_REPORTS}) "
                "WHERE progress IS NOT NULL", cutoff=cutoff):
            self.put("baton_status_progress_ratio", {"project": project, "job_name": job},
                     progress)
        for project, job in q(f"SELECT project, job FROM ({LAST_REPORTS})", cutoff=cutoff):
            self.put("baton_status_expected_interval_seconds",
                     {"project": project, "job_name": job}, config.interval(project, job))

    def _supervision(self, q: Callable[..., list[Any]]) -> None:
        decided = {(s, r, a): n for s, r, a, n in q(
            "SELECT stage, reason, action, COUNT(*) FROM supervisions GROUP BY 1, 2, 3")}
        stages = sorted(set(STAGES) | {s for s, _, _ in decided})
        keys = {(s, r, a) for s in stages for r, a in POSSIBLE} | set(decided)
        for stage, reason, action in keys:
            self.put("baton_supervisions_total",
                     {"stage": stage, "reason": reason, "action": action},
                     decided.get((stage, reason, action), 0))
        for name, where in (
                ("baton_supervision_repairs_in_flight", "action = 'resubmit' AND "
                 f"(execution_status IN {_in(LIVE)} OR dispatch_status = 'pending')"),
                ("baton_supervision_gave_up_open",
                 "action = 'gave_up' AND execution_status = 'open'"),
                ("baton_supervision_late_jobs",
                 f"action = 'alert' AND execution_status IN {_in(LIVE)}"),
                ("baton_supervision_dispatch_failed", "dispatch_status = 'failed'")):
            self._per_stage(q, name, f"SELECT stage, COUNT(*) FROM supervisions WHERE {where} "
                            "GROUP BY stage", stages)

    def scrape(self) -> bytes:
        """The same exposition text: the queries, plus the collector's queue, drive and
        (cached) integrity parts, which do not depend on the ledger's size."""
        lines = [f"{name}{_labels(labels)} {value!r}"
                 for (name, labels), value in self.samples().items()]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Rest(self.collector))
        return ("\n".join(lines) + "\n").encode() + generate_latest(registry)


class _Rest:
    def __init__(self, collector: BatonCollector) -> None:
        self.c = collector

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.c._queue()
        yield from self.c._drive()
        yield self.c._integrity_metric()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}" if pairs else ""
