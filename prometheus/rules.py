"""Alert and recording rules, generated from one table of thresholds.

``python -m prometheus.rules`` rewrites ``prometheus/alerts.yml``; a test keeps the file
and this table in step. The integration test renders them with short thresholds."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).parent
SCRAPE_JOB = "baton"  # the job_name of deploy/prometheus.yml's scrape config


@dataclass(frozen=True)
class Thresholds:
    heartbeat_stale_seconds: int = 300       # a sensor silent for 5 minutes
    consecutive_failures: int = 3            # more than 3 Slurm failures in a row
    drive_free_ratio: float = 0.10           # under 10% free on the shared drive
    queue_depth: int = 50                    # more than 50 jobs waiting
    job_wait_seconds: int = 86400            # a job waiting over 24 hours
    eval_runtime_factor: float = 2.0         # evaluation over twice its expected time
    expected_eval_seconds: int = 7200        # the expected time (the template's --time)
    missing_signal_seconds: int = 86400      # trained, no evaluation complete after a day
    failure_rate: float = 0.25               # over 25% of jobs failing ...
    failure_rate_window: str = "1h"          # ... in this window
    for_duration: str = "5m"                 # how long a warning must hold
    unknown_type_window: str = "1h"          # a signal named an unknown campaign type
    exporter_down_for: str = "5m"            # Prometheus cannot scrape `baton exporter` ...
    component_down_for: str = "5m"           # ... or a part of it (ledger, slurm, drive) fails
    ledger_stale_seconds: int = 1800         # the ledger's numbers served older than this
    # a status report overdue: each job's interval comes from baton.yaml `status`


def recording_rules(t: Thresholds) -> dict:
    w = t.failure_rate_window
    return {"name": "baton-recording", "rules": [
        {"record": "baton:jobs_failed:increase" + w,
         "expr": f"sum by (stage) (increase(baton_jobs_failed_total[{w}]))"},
        {"record": "baton:jobs_ended:increase" + w,
         "expr": f"sum by (stage) (increase(baton_jobs_failed_total[{w}])) + "
                 f"sum by (stage) (increase(baton_jobs_finished_total[{w}]))"},
        {"record": "baton:failure_ratio:" + w,
         "expr": f"baton:jobs_failed:increase{w} / (baton:jobs_ended:increase{w} > 0)"},
        {"record": "baton:jobs_finished:rate1h",
         "expr": "sum by (stage) (rate(baton_jobs_finished_total[1h])) * 3600"},
        {"record": "baton:job_queue_wait_seconds:p95",
         "expr": "histogram_quantile(0.95, sum by (stage, le) "
                 "(rate(baton_job_queue_wait_seconds_bucket[1h])))"},
    ]}


def alert_rules(t: Thresholds) -> dict:
    def alert(name: str, expr: str, severity: str, summary: str, for_: str | None = None
              ) -> dict:
        rule = {"alert": name, "expr": expr, "labels": {"severity": severity},
                "annotations": {"summary": summary}}
        if for_:
            rule["for"] = for_
        return rule

    return {"name": "baton-alerts", "rules": [
        alert("BatonExporterDown", f'up{{job="{SCRAPE_JOB}"}} == 0', "critical",
              "Prometheus cannot scrape baton exporter {{ $labels.instance }}: every baton "
              "alert is blind until it is back", t.exporter_down_for),
        alert("BatonExporterComponentDown", "baton_exporter_component_up == 0", "critical",
              "the {{ $labels.component }} part of baton exporter {{ $labels.instance }} has "
              "failed for " f"{t.component_down_for}: its metrics are missing and their "
              "alerts cannot fire (see the exporter's log)", t.component_down_for),
        alert("BatonExporterLedgerStale",
              f"baton_exporter_ledger_age_seconds > {t.ledger_stale_seconds}", "warning",
              "baton exporter {{ $labels.instance }} serves ledger numbers {{ $value | "
              "humanizeDuration }} old: its computation is stuck or slower than "
              f"{t.ledger_stale_seconds}s (see the exporter's log)", t.for_duration),
        alert("BatonSensorHeartbeatStale",
              f"time() - baton_sensor_heartbeat_timestamp_seconds > {t.heartbeat_stale_seconds}",
              "critical", "baton sensor {{ $labels.sensor }} has not ticked for "
              f"{t.heartbeat_stale_seconds}s: is the Dagster daemon running?"),
        alert("BatonConsecutiveSlurmFailures",
              f"baton_stage_consecutive_failures > {t.consecutive_failures}", "critical",
              "{{ $value }} Slurm jobs of stage {{ $labels.stage }} failed in a row"),
        alert("BatonSharedDriveFull", f"baton_shared_drive_free_ratio < {t.drive_free_ratio}",
              "critical", "the shared drive has {{ $value | humanizePercentage }} free"),
        alert("BatonLedgerIntegrityFailed", "baton_ledger_integrity_ok == 0", "critical",
              "the ledger's integrity check failed: run `baton db check`"),
        alert("BatonQueueDepthHigh", f"baton_queue_depth > {t.queue_depth}", "warning",
              "{{ $value }} jobs are waiting in the Slurm queue", t.for_duration),
        alert("BatonJobWaitingTooLong",
              f"baton_oldest_waiting_job_seconds > {t.job_wait_seconds}", "warning",
              "a job of stage {{ $labels.stage }} has waited {{ $value | humanizeDuration }} "
              "in the queue"),
        alert("BatonEvaluationSlow",
              "baton_longest_running_job_seconds{stage=\"evaluation\"} > "
              f"{t.eval_runtime_factor * t.expected_eval_seconds:g}", "warning",
              f"an evaluation has run over {t.eval_runtime_factor:g}x its expected "
              f"{t.expected_eval_seconds}s"),
        alert("BatonExpectedSignalMissing",
              f"baton_oldest_unanswered_training_seconds > {t.missing_signal_seconds}",
              "warning", "a trained model has had no completed evaluation for "
              "{{ $value | humanizeDuration }}"),
        alert("BatonExperimentsHeld", "baton_experiments_held > 0", "critical",
              "{{ $value }} experiment(s) held: the drive has results the ledger does not "
              "know, so the daemon submits nothing for them; run `baton db rebuild` (or "
              "`baton db adopt`)"),
        alert("BatonSupervisionGaveUp", "baton_supervision_gave_up_open > 0", "critical",
              "{{ $value }} {{ $labels.stage }} job(s) failed every attempt their supervision "
              "policy allows: see `baton supervise list --open`, then retry or cancel"),
        alert("BatonSupervisionDispatchFailed", "baton_supervision_dispatch_failed > 0",
              "critical",
              "{{ $value }} {{ $labels.stage }} repair(s) could not be dispatched after every "
              "try: see `baton supervise list --open`, then retry or cancel"),
        alert("BatonJobLate", "baton_supervision_late_jobs > 0", "warning",
              "{{ $value }} {{ $labels.stage }} job(s) are later than their supervision policy "
              "allows: see `baton supervise list --open`"),
        alert("BatonFailureRateHigh",
              f"baton:failure_ratio:{t.failure_rate_window} > {t.failure_rate}", "warning",
              "{{ $value | humanizePercentage }} of {{ $labels.stage }} jobs failed in the "
              f"last {t.failure_rate_window}", t.for_duration),
        alert("BatonStatusReportOverdue",
              "time() - baton_status_last_report_timestamp_seconds{status=~\"started|running\"}"
              " > on(project, job_name) group_left() baton_status_expected_interval_seconds",
              "warning",
              "{{ $labels.project }}/{{ $labels.job_name }} is {{ $labels.status }} but has not "
              "reported for {{ $value | humanizeDuration }}"),
        alert("BatonStatusReportsSetAside", "baton_status_rejected_files > 0", "warning",
              "{{ $value }} status report file(s) could not be ingested and were set aside in "
              "status/rejected/ on the shared drive: read each .reason, then remove them"),
        alert("BatonUnknownCampaignType",
              f"increase(baton_campaign_unknown_type_signals_total[{t.unknown_type_window}])"
              " > 0", "warning",
              "signals name campaign type {{ $labels.type }}, which baton.yaml "
              "campaigns.types does not list (baton campaign list --unknown)"),
    ]}


def render(t: Thresholds | None = None) -> str:
    t = t or Thresholds()
    header = "# Generated by `python -m prometheus.rules` from its Thresholds; do not edit.\n"
    header += "".join(f"#   {k}: {v}\n" for k, v in asdict(t).items())
    return header + yaml.safe_dump({"groups": [recording_rules(t), alert_rules(t)]},
                                   sort_keys=False, width=100)


if __name__ == "__main__":
    (HERE / "alerts.yml").write_text(render())
    sys.stdout.write(f"wrote {HERE / 'alerts.yml'}\n")
