"""Grafana dashboards, generated (never hand-edited) with Grafana's builder library:
``python -m prometheus.dashboards`` writes ``prometheus/grafana/dashboards/baton.json`` and
the provisioning files.

Layout of the production-dashboard design: row 1 status tiles, row 2 progress table,
row 3 throughput and resources, then one panel per campaign, pipeline latency and firing
alerts; variables ``$stage`` and ``$campaign``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from baton.alert_rules import EXPORTER_UP
from prometheus.panels import (
    CAMPAIGN,
    STAGE,
    joined_table,
    not_per_campaign,
    numbers,
    panel,
    state_tiles,
    target,
    tiles,
    variable,
)
from prometheus.sdk import (
    BigValueGraphMode,
    Dashboard,
    FieldColor,
    JSONEncoder,
    QueryVariable,
    ReduceDataOptions,
    Row,
    TooltipDisplayMode,
    VizLegendOptions,
    VizTooltipOptions,
    bargauge,
    dm,
    table,
    timeseries,
)

HERE = Path(__file__).parent
OUT = HERE / "grafana"
STARTED = f"baton_campaign_started_timestamp_seconds{{{CAMPAIGN}}}"
EXPECTED_END = f"baton_campaign_expected_end_timestamp_seconds{{{CAMPAIGN}}}"
RATIO = f"baton_campaign_completion_ratio{{{CAMPAIGN}}}"
# the share of the planned time (started_at to expected_end) gone by, 0..100
SCHEDULE = (f"100 * clamp_max(clamp_min((time() - {STARTED}) / ({EXPECTED_END} - {STARTED}), "
            "0), 1)")
SCHEDULE_TEXT = ("Started, expected end and notes are the curators' (`baton campaign set "
                 "--started ... --expected-end ... --note ...`); absent until they set them.")


def with_notes(expr: str) -> str:
    """``expr`` (one series per campaign) with the campaign's display name, and its notes
    where it has some: the label a tooltip shows."""
    named = (f"{expr} * on(campaign, type) group_left(display_name) "
             "baton_campaign_info")
    return (f"({named}) * on(campaign, type) group_left(notes) baton_campaign_notes_info "
            f"or ({named} unless on(campaign, type) baton_campaign_notes_info)")


def progress_column(column: str) -> str:
    return (f"sum by (campaign, experiment, stage) (baton_progress_tasks{{{CAMPAIGN},{STAGE},"
            f"column=\"{column}\"}})")


def campaign_variable() -> QueryVariable:
    """The seed's ``SELECT tag FROM production_overview WHERE active ORDER BY priority``:
    only active campaigns (those with a priority series), lowest priority first, each
    shown by its display name (``${campaign:text}``) and filtering by its tag."""
    query = ("query_result(sort(baton_campaign_priority * on(campaign, type) "
             "group_left(display_name) baton_campaign_info))")
    # "All" means all active campaigns (no allValue: Grafana joins the values), not every
    # campaign; sort disabled keeps the query's order, the priority
    return variable("campaign", query).regex(
        '/campaign="(?<value>[^"]+)".*display_name="(?<text>[^"]+)"/'
    ).sort(dm.VariableSort.DISABLED)


def status_row() -> list[Any]:
    return [
        # baton_campaign_jobs has the states that occur; baton_jobs (x 0) brings the others
        state_tiles("Jobs by state",
                    f"sum by (state) (baton_campaign_jobs{{{CAMPAIGN},{STAGE}}}) "
                    f"or 0 * sum by (state) (baton_jobs{{{STAGE}}})", 10, 5,
                    "Slurm jobs of the selected campaigns by dashboard state, each tile in "
                    "its state's color."),
        panel(bargauge.Panel(), "Completion per campaign", [target(
            f"100 * baton_campaign_completion_ratio{{{CAMPAIGN}}} * on(campaign, type) "
            "group_left(display_name) baton_campaign_info", "{{display_name}}")], 6, 5,
            unit="percent", description="Finished over expected jobs, by display name.")
        .min(0).max(100).reduce_options(ReduceDataOptions().calcs(["lastNotNull"])),
        numbers("Active jobs", [target(
            f"sum(baton_campaign_jobs{{{CAMPAIGN},{STAGE},state=~\"started|running\"}}) "
            "or vector(0)", "active")], 4, 5,
            description="Jobs of the selected campaigns started or running now."),
        numbers("Failure rate (1h)", [target(
            f"100 * sum(baton:jobs_failed:increase1h{{{STAGE}}}) / "
            f"sum(baton:jobs_ended:increase1h{{{STAGE}}})", "failed")], 4, 5,
            unit="percent", description=not_per_campaign(
                "the failure counters (baton_jobs_failed_total, baton_jobs_finished_total) "
                "are per stage and reason only")),
    ]


def progress_row() -> list[Any]:
    percent_of_expected = {c: f"100 * {progress_column(c)} / {progress_column('expected')}"
                           for c in ("finished", "failed")}
    return [
        joined_table("Active campaigns (priority order)", {
            "priority": f"baton_campaign_priority{{{CAMPAIGN}}}",
            "completion": f"100 * {RATIO}",
            "expected": f"baton_campaign_expected_jobs{{{CAMPAIGN}}} and on(campaign, type) "
                        f"baton_campaign_priority",
            "started": f"1000 * {STARTED}",
            "expected end": f"1000 * {EXPECTED_END}",
            "time gone": SCHEDULE,
            "time left": f"{EXPECTED_END} - time()",
            # the ETA: the end if the campaign goes on at its pace so far
            "projected end": f"1000 * ({STARTED} + (time() - {STARTED}) / ({RATIO} > 0))"},
            ["campaign", "type", "display_name"], 9, 8, sort_by="priority",
            labels_from=[f"baton_campaign_info{{{CAMPAIGN}}}",
                         f"baton_campaign_notes_info{{{CAMPAIGN}}}"],
            units={"started": "dateTimeAsIso", "expected end": "dateTimeAsIso",
                   "time left": "s", "projected end": "dateTimeAsIso"},
            colors={"completion": dm.FieldColorModeId.CONTINUOUS_GREENS,
                    "time gone": dm.FieldColorModeId.CONTINUOUS_BLUES},
            tooltips=["notes"],
            description="Completion (finished over expected jobs) beside the time gone by "
                        "of the planned time (started to expected end); the projected end "
                        "is the ETA at the pace so far (started + time so far / completion). "
                        "Hover a note for its whole text. " + SCHEDULE_TEXT),
        joined_table("Progress by campaign and stage", {
            **{c: progress_column(c) for c in ("expected", "submitted", "running",
                                               "finished", "failed")},
            **{f"{c} %": e for c, e in percent_of_expected.items()}},
            ["campaign", "experiment", "stage"], 15, 8,
            colors={"finished %": dm.FieldColorModeId.CONTINUOUS_GREENS,
                    "failed %": dm.FieldColorModeId.CONTINUOUS_REDS},
            description="Tasks of the selected (active) campaigns; finished % and failed % "
                        "are of the expected tasks (green toward 100 % finished, red with "
                        "the failed). The exporter also exports experiments of other "
                        "campaigns while they have unfinished tasks."),
    ]


def campaigns_row() -> list[Any]:
    """One panel per selected campaign, titled with its display name."""
    return [
        panel(timeseries.Panel(), "Progress against plan", [
            target(with_notes(f"100 * {RATIO}"), "{{display_name}}: done. {{notes}}"),
            target(with_notes(SCHEDULE), "{{display_name}}: time gone. {{notes}}")], 24, 7,
            unit="percent",
            description="Each active campaign's completion and the share of its planned "
                        "time gone by; hover a line for the campaign's display name and "
                        "its curators' notes. " + SCHEDULE_TEXT)
        .min(0).max(100).legend(VizLegendOptions().show_legend(False))
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI)),
        tiles("${campaign:text}", [
            target(f"100 * {RATIO}", "completion"), target(SCHEDULE, "time gone")], 6, 5,
            unit="percent",
            description="Completion of the campaign (finished over expected jobs) and its "
                        "trend, beside the share of its planned time gone by. "
                        + SCHEDULE_TEXT)
        .graph_mode(BigValueGraphMode.AREA).min(0).max(100)
        .color_scheme(FieldColor().mode(dm.FieldColorModeId.CONTINUOUS_RD_YL_GR))
        .repeat("campaign").repeat_direction("h").max_per_row(4),
    ]


def throughput_row() -> list[Any]:
    def quantile(q: float) -> str:
        return (f"histogram_quantile({q}, sum by (stage, le) "
                f"(rate(baton_job_memory_used_ratio_bucket{{{STAGE}}}[1h])))")

    return [
        panel(timeseries.Panel(), "Jobs finished per hour", [target(
            f"baton:jobs_finished:rate1h{{{STAGE}}}", "{{stage}}")], 6, 8,
            description=not_per_campaign("baton_jobs_finished_total is per stage only")),
        panel(timeseries.Panel(), "Memory used / requested", [
            target(quantile(0.5), "median {{stage}}"), target(quantile(0.95), "p95 {{stage}}")],
            6, 8, unit="percentunit",
            description=not_per_campaign("baton_job_memory_used_ratio is per stage only")),
        panel(timeseries.Panel(), "CPU per stage", [target(
            f"rate(baton_job_cpu_seconds_total{{{STAGE}}}[1h])", "{{stage}}")], 6, 8,
            unit="s", description=not_per_campaign("baton_job_cpu_seconds_total is per "
                                                   "stage only")),
        panel(timeseries.Panel(), "Restarts", [target(
            f"increase(baton_job_restarts_total{{{STAGE}}}[1h])", "{{stage}}")], 6, 8,
            description=not_per_campaign("baton_job_restarts_total is per stage only")),
    ]


def latency_row() -> list[Any]:
    def p95(histogram: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket[1h])))"

    return [
        panel(timeseries.Panel(), "Latency (p95)", [
            target(p95("baton_signal_detection_latency_seconds"), "signal to submission"),
            target(p95("baton_training_to_evaluation_seconds"), "training to evaluation"),
            target(p95("baton_evaluation_to_analysis_seconds"), "evaluation to analysis"),
            target(p95("baton_end_to_end_seconds"), "end to end")], 12, 8, unit="s",
            description=not_per_campaign("the latency histograms cover the whole pipeline")),
        panel(timeseries.Panel(), "Queue wait (p95)", [target(
            f"baton:job_queue_wait_seconds:p95{{{STAGE}}}", "{{stage}}")], 6, 8, unit="s",
            description=not_per_campaign("baton_job_queue_wait_seconds is per stage only")),
        numbers("Sensor heartbeat age", [target(
            "time() - baton_sensor_heartbeat_timestamp_seconds", "{{sensor}}")], 6, 8,
            unit="s", description=not_per_campaign("the sensors serve every campaign")),
    ]


def status_reports_row() -> list[Any]:
    return [joined_table("Last status of every reporting script", {
        "last report": "1000 * baton_status_last_report_timestamp_seconds",
        "silent for": "time() - baton_status_last_report_timestamp_seconds",
        "progress": "100 * baton_status_progress_ratio",
        "expected every": "baton_status_expected_interval_seconds"},
        ["project", "job_name", "status"], 24, 7,
        units={"last report": "dateTimeAsIso", "silent for": "s", "progress": "percent",
               "expected every": "s"}, description=not_per_campaign(
            "status reports belong to a project and a job, not to a campaign"))]


def supervision_row() -> list[Any]:
    per_stage = not_per_campaign("the supervision metrics are per stage only")
    return [
        panel(timeseries.Panel(), "Supervision decisions (1h)", [target(
            f"sum by (reason, action) (increase(baton_supervisions_total{{{STAGE}}}[1h]))",
            "{{reason}}: {{action}}")], 12, 8, description=per_stage),
        numbers("Repairs in flight", [target(
            f"sum(baton_supervision_repairs_in_flight{{{STAGE}}})", "in flight")], 4, 8,
            description=per_stage),
        tiles("Gave up (open)", [target(
            f"sum(baton_supervision_gave_up_open{{{STAGE}}})", "gave up")], 4, 8,
            description=per_stage + " Red: a person has to look.",
            steps=[(None, "green"), (1, "red")]),
        numbers("Late jobs", [target(
            f"sum(baton_supervision_late_jobs{{{STAGE}}})", "late")], 4, 8,
            description=per_stage),
    ]


def alerts_row() -> list[Any]:
    return [
        panel(table.Panel(), "Firing alerts", [target(
            'ALERTS{alertstate="firing", alertname=~"Baton.*"}', table_format=True)], 18, 6,
            description=not_per_campaign("alerts are about the whole system")),
        tiles("Exporter parts up", [
            target("baton_exporter_component_up", "{{component}}"),
            target(EXPORTER_UP, "scrape {{instance}}")], 6, 6, steps=[(None, "red"), (1, "green")],
            description="1: the part answered in the last scrape; 0: its metrics are "
            "missing (BatonExporterComponentDown, BatonExporterDown). "
            + not_per_campaign("the exporter serves every campaign")),
    ]


ROWS = {"Status": status_row, "Progress": progress_row,
        "Throughput and resources": throughput_row, "Campaigns": campaigns_row,
        "Pipeline latency": latency_row,
        "Status reports": status_reports_row, "Supervision": supervision_row,
        "Alerts": alerts_row}


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON: the builder places rows and panels on the grid."""
    board = (Dashboard("baton: pipeline").uid("baton-pipeline").tags(["baton"]).version(1)
             .readonly().refresh("30s").time("now-24h", "now")
             .with_variable(variable("stage", "label_values(baton_jobs, stage)")
                            .all_value(".*"))
             .with_variable(campaign_variable()))
    for title, panels in ROWS.items():
        board.with_row(Row(title))
        for p in panels():
            board.with_panel(p)
    out = json.loads(JSONEncoder(sort_keys=True).encode(board.build()))
    for i, p in enumerate(out["panels"], start=1):
        p["id"] = i
    return out


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
    """Each file written to a temporary one beside it, then renamed over it."""
    files = {"dashboards/baton.json": json.dumps(dashboard(), indent=2, sort_keys=True) + "\n",
             **provisioning()}
    paths = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write():
        sys.stdout.write(f"wrote {p}\n")
