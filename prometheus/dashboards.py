"""Grafana dashboards, generated (never hand-edited): ``python -m prometheus.dashboards``
writes ``prometheus/grafana/dashboards/baton.json`` and the provisioning files.

Layout of the production-dashboard design: row 1 status tiles, row 2 progress table,
row 3 throughput and resources, then pipeline latency and firing alerts; variables
``$stage`` and ``$campaign``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from baton.alert_rules import EXPORTER_UP

HERE = Path(__file__).parent
OUT = HERE / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "baton-prometheus"}
STAGE = 'stage=~"$stage"'
CAMPAIGN = 'campaign=~"$campaign"'


def target(expr: str, legend: str = "", fmt: str = "time_series", instant: bool = False
           ) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "format": fmt,
            "instant": instant}


def not_per_campaign(why: str) -> str:
    """The description of a panel ``$campaign`` does not filter, and why."""
    return f"Not per campaign: {why}, so $campaign does not filter this panel."


def panel(kind: str, title: str, targets: list[dict], x: int, y: int, w: int, h: int,
          unit: str | None = None, transformations: list[dict] | None = None,
          overrides: list[dict] | None = None, description: str = "", **options: Any
          ) -> dict[str, Any]:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    defaults: dict[str, Any] = {"unit": unit} if unit else {}
    out = {"type": kind, "title": title, "datasource": DATASOURCE,
           "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
           "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
           "options": options}
    if description:
        out["description"] = description
    if transformations:
        out["transformations"] = transformations
    return out


def joined_table(title: str, columns: dict[str, str], keys: list[str], x: int, y: int,
                 w: int, h: int, sort_by: str | None = None,
                 units: dict[str, str] | None = None, labels_from: str | None = None,
                 description: str = "") -> dict[str, Any]:
    """One table row per ``keys``, one column per instant query: the seed's progress
    table. Grafana merges the queries on their labels and names the values;
    ``labels_from`` is a query that only brings labels (its value column is hidden)."""
    exprs = [*columns.values(), *([labels_from] if labels_from else [])]
    targets = [target(expr, "", "table", instant=True) for expr in exprs]
    names = {f"Value #{chr(ord('A') + i)}": name for i, name in enumerate(columns)}
    hidden = {"Time": True}
    if labels_from:
        hidden[f"Value #{chr(ord('A') + len(columns))}"] = True
    transformations: list[dict[str, Any]] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": hidden,
            "indexByName": {k: i for i, k in enumerate([*keys, *columns])},
            "renameByName": names}}]
    if sort_by:
        transformations.append({"id": "sortBy", "options": {"sort": [{"field": sort_by}]}})
    overrides = [{"matcher": {"id": "byName", "options": col},
                  "properties": [{"id": "unit", "value": unit}]}
                 for col, unit in (units or {}).items()]
    return panel("table", title, targets, x, y, w, h, transformations=transformations,
                 overrides=overrides, description=description)


def progress_column(column: str) -> str:
    return (f"sum by (campaign, experiment, stage) (baton_progress_tasks{{{CAMPAIGN},{STAGE},"
            f"column=\"{column}\"}})")


def row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def variable(name: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"}}


def campaign_variable() -> dict[str, Any]:
    """The seed's ``SELECT tag FROM production_overview WHERE active ORDER BY priority``:
    only active campaigns (those with a priority series), lowest priority first."""
    var = variable("campaign", "query_result(sort(baton_campaign_priority))")
    var["regex"] = '/campaign="([^"]+)"/'
    var["sort"] = 0  # keep the query's order: the priority
    del var["allValue"]  # "All" means all active campaigns, not every campaign
    return var


def dashboard() -> dict[str, Any]:
    panels = [
        row("Status", 0),
        # baton_campaign_jobs has the states that occur; baton_jobs (x 0) brings the others
        panel("stat", "Jobs by state", [target(
            f"sum by (state) (baton_campaign_jobs{{{CAMPAIGN},{STAGE}}}) "
            f"or 0 * sum by (state) (baton_jobs{{{STAGE}}})", "{{state}}")],
            0, 1, 10, 5, colorMode="background", graphMode="none",
            description="Slurm jobs of the selected campaigns by dashboard state."),
        panel("bargauge", "Completion per campaign", [target(
            f"100 * baton_campaign_completion_ratio{{{CAMPAIGN}}}", "{{campaign}}")],
            10, 1, 6, 5, unit="percent"),
        panel("stat", "Active jobs", [target(
            f"sum(baton_campaign_jobs{{{CAMPAIGN},{STAGE},state=~\"started|running\"}}) "
            "or vector(0)", "active")], 16, 1, 4, 5,
            description="Jobs of the selected campaigns started or running now."),
        panel("stat", "Failure rate (1h)", [target(
            f"100 * sum(baton:jobs_failed:increase1h{{{STAGE}}}) / "
            f"sum(baton:jobs_ended:increase1h{{{STAGE}}})", "failed")], 20, 1, 4, 5,
            unit="percent", description=not_per_campaign(
                "the failure counters (baton_jobs_failed_total, baton_jobs_finished_total) "
                "are per stage and reason only")),
        row("Progress", 6),
        joined_table("Active campaigns (priority order)", {
            "priority": f"baton_campaign_priority{{{CAMPAIGN}}}",
            "completion": f"100 * baton_campaign_completion_ratio{{{CAMPAIGN}}}",
            "expected": f"baton_campaign_expected_jobs{{{CAMPAIGN}}} and on(campaign, type) "
                        f"baton_campaign_priority"},
            ["campaign", "type", "display_name"], 0, 7, 9, 8, sort_by="priority",
            units={"completion": "percent"}, labels_from=f"baton_campaign_info{{{CAMPAIGN}}}",
            description="The curators' notes are free text, not metric labels: "
                        "`baton campaign list` shows them."),
        joined_table("Progress by campaign and stage",
                     {c: progress_column(c) for c in ("expected", "submitted", "running",
                                                      "finished", "failed")},
                     ["campaign", "experiment", "stage"], 9, 7, 15, 8,
                     description="Experiments of the selected (active) campaigns; the "
                                 "exporter also exports experiments of other campaigns while "
                                 "they have unfinished tasks."),
        row("Throughput and resources", 15),
        panel("timeseries", "Jobs finished per hour", [target(
            f"baton:jobs_finished:rate1h{{{STAGE}}}", "{{stage}}")], 0, 16, 6, 8,
            description=not_per_campaign("baton_jobs_finished_total is per stage only")),
        panel("timeseries", "Memory used / requested", [
            target(f"histogram_quantile(0.5, sum by (stage, le) "
                   f"(rate(baton_job_memory_used_ratio_bucket{{{STAGE}}}[1h])))",
                   "median {{stage}}"),
            target(f"histogram_quantile(0.95, sum by (stage, le) "
                   f"(rate(baton_job_memory_used_ratio_bucket{{{STAGE}}}[1h])))",
                   "p95 {{stage}}")], 6, 16, 6, 8, unit="percentunit",
            description=not_per_campaign("baton_job_memory_used_ratio is per stage only")),
        panel("timeseries", "CPU per stage", [target(
            f"rate(baton_job_cpu_seconds_total{{{STAGE}}}[1h])", "{{stage}}")],
            12, 16, 6, 8, unit="s",
            description=not_per_campaign("baton_job_cpu_seconds_total is per stage only")),
        panel("timeseries", "Restarts", [target(
            f"increase(baton_job_restarts_total{{{STAGE}}}[1h])", "{{stage}}")],
            18, 16, 6, 8,
            description=not_per_campaign("baton_job_restarts_total is per stage only")),
        row("Pipeline latency", 24),
        panel("timeseries", "Latency (p95)", [
            target("histogram_quantile(0.95, sum by (le) "
                   "(rate(baton_signal_detection_latency_seconds_bucket[1h])))",
                   "signal to submission"),
            target("histogram_quantile(0.95, sum by (le) "
                   "(rate(baton_training_to_evaluation_seconds_bucket[1h])))",
                   "training to evaluation"),
            target("histogram_quantile(0.95, sum by (le) "
                   "(rate(baton_evaluation_to_analysis_seconds_bucket[1h])))",
                   "evaluation to analysis"),
            target("histogram_quantile(0.95, sum by (le) "
                   "(rate(baton_end_to_end_seconds_bucket[1h])))", "end to end")],
            0, 25, 12, 8, unit="s", description=not_per_campaign(
                "the latency histograms cover the whole pipeline")),
        panel("timeseries", "Queue wait (p95)", [target(
            f"baton:job_queue_wait_seconds:p95{{{STAGE}}}", "{{stage}}")], 12, 25, 6, 8,
            unit="s", description=not_per_campaign(
                "baton_job_queue_wait_seconds is per stage only")),
        panel("stat", "Sensor heartbeat age", [target(
            "time() - baton_sensor_heartbeat_timestamp_seconds", "{{sensor}}")],
            18, 25, 6, 8, unit="s", description=not_per_campaign(
                "the sensors serve every campaign")),
        row("Status reports", 33),
        joined_table("Last status of every reporting script", {
            "last report": "1000 * baton_status_last_report_timestamp_seconds",
            "silent for": "time() - baton_status_last_report_timestamp_seconds",
            "progress": "100 * baton_status_progress_ratio",
            "expected every": "baton_status_expected_interval_seconds"},
            ["project", "job_name", "status"], 0, 34, 24, 7,
            units={"last report": "dateTimeAsIso", "silent for": "s", "progress": "percent",
                   "expected every": "s"}, description=not_per_campaign(
                "status reports belong to a project and a job, not to a campaign")),
        row("Supervision", 41),
        panel("timeseries", "Supervision decisions (1h)", [target(
            f"sum by (reason, action) (increase(baton_supervisions_total{{{STAGE}}}[1h]))",
            "{{reason}}: {{action}}")], 0, 42, 12, 8,
            description=not_per_campaign("the supervision metrics are per stage only")),
        panel("stat", "Repairs in flight", [target(
            f"sum(baton_supervision_repairs_in_flight{{{STAGE}}})", "in flight")],
            12, 42, 4, 8,
            description=not_per_campaign("the supervision metrics are per stage only")),
        panel("stat", "Gave up (open)", [target(
            f"sum(baton_supervision_gave_up_open{{{STAGE}}})", "gave up")], 16, 42, 4, 8,
            colorMode="background", graphMode="none",
            description=not_per_campaign("the supervision metrics are per stage only")),
        panel("stat", "Late jobs", [target(
            f"sum(baton_supervision_late_jobs{{{STAGE}}})", "late")], 20, 42, 4, 8,
            description=not_per_campaign("the supervision metrics are per stage only")),
        row("Alerts", 50),
        panel("table", "Firing alerts", [target(
            'ALERTS{alertstate="firing", alertname=~"Baton.*"}', "", "table", instant=True)],
            0, 51, 18, 6, description=not_per_campaign("alerts are about the whole system")),
        panel("stat", "Exporter parts up", [
            target("baton_exporter_component_up", "{{component}}"),
            target(EXPORTER_UP, "scrape {{instance}}")], 18, 51, 6, 6,
            colorMode="background", graphMode="none", description="1: the part answered "
            "in the last scrape; 0: its metrics are missing (BatonExporterComponentDown, "
            "BatonExporterDown). " + not_per_campaign("the exporter serves every campaign")),
    ]
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": "baton-pipeline", "title": "baton: pipeline", "tags": ["baton"],
        "schemaVersion": 39, "version": 1, "editable": False, "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [variable("stage", "label_values(baton_jobs, stage)"),
                                campaign_variable()]},
        "panels": panels,
    }


def provisioning() -> dict[str, str]:
    return {
        "provisioning/dashboards/baton.yaml":
            "apiVersion: 1\nproviders:\n  - name: baton\n    folder: baton\n    type: file\n"
            "    options:\n      path: /var/lib/grafana/dashboards/baton\n",
        "provisioning/datasources/baton-prometheus.yaml":
            "apiVersion: 1\ndatasources:\n  - name: baton-prometheus\n    uid: baton-prometheus"
            "\n    type: prometheus\n    access: proxy\n    url: http://127.0.0.1:9090\n",
    }


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of every panel (the integration test runs them all)."""
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def write(out: Path = OUT) -> list[Path]:
    paths = [out / "dashboards" / "baton.json"]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(json.dumps(dashboard(), indent=2) + "\n")
    for rel, text in provisioning().items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write():
        sys.stdout.write(f"wrote {p}\n")
