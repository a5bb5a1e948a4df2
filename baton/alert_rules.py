"""The Prometheus alert and recording rules, rendered from the configuration.

Thresholds come from baton.yaml's ``alerts`` section and from what the rest of it says
about the things watched (each stage's time limit and ``expected_seconds``, the sensors'
interval, the jobs ``status.intervals`` names), so that changing a threshold is a
configuration change, and no alert on a job waits longer than Slurm lets the job live.
``baton alerts render`` writes them; prometheus/alerts.yml is the render of the defaults."""

from __future__ import annotations

import math

import yaml

from baton.config import Config
from baton.units import parse_time_seconds

# the metrics whose age says a stage's complete signal is overdue, per stage
AWAITED = {"evaluation": ("baton_oldest_unanswered_training_seconds",
                          "a trained model has had no completed evaluation"),
           "analysis": ("baton_oldest_unanswered_evaluation_seconds",
                        "an evaluated model has had no completed analysis")}
BACKUP_TS = "baton_ledger_backup_last_success_timestamp_seconds"
HEARTBEAT = "baton_sensor_heartbeat_timestamp_seconds"
SLURM_CALLS_WINDOW = "10m"  # baton's Slurm call rate is averaged over this
# `up` of every target that served a baton exporter's metrics in the last day, whatever the
# name of the scrape job a site put it in (its metrics stop with it; `last_over_time` still
# sees them)
EXPORTER_UP = "up and on(job, instance) last_over_time(baton_exporter_component_up[1d])"


def heartbeat_seconds(config: Config) -> float:
    """Silence after which the sensors count as stopped: a few of their intervals, so a
    slow tick (``sensors.interval_seconds: 900``) does not page between two ticks."""
    a = config.alerts
    return max(a.heartbeat_min_seconds, a.heartbeat_intervals * config.sensors.interval_seconds)


def slow_seconds(config: Config) -> dict[str, float]:
    """Per stage, the run time after which a job is slow: ``slow_factor`` x its
    ``expected_seconds``, capped at ``slow_limit_fraction`` of its time limit, so that the
    alert fires while the job still runs (Slurm ends it at the limit)."""
    a = config.alerts
    out = {}
    for name, stage in sorted(config.stages.items()):
        cap = a.slow_limit_fraction * parse_time_seconds(stage.time)
        want = a.slow_factor * stage.expected_seconds if stage.expected_seconds else cap
        out[name] = float(math.floor(min(want, cap)))
    return out


def declared_status_intervals(config: Config) -> list[float]:
    """The distinct intervals of the jobs ``status.intervals`` names (``project/job``):
    jobs expected to report, alerted when they never have."""
    return sorted({v for k, v in config.status.intervals.items() if "/" in k})


def _num(value: float) -> str:
    return f"{value:g}" if value == int(value) and abs(value) < 1e15 else repr(value)


def _secs(value: float) -> str:
    return f"{math.ceil(value)}s"


def recording_rules(config: Config) -> dict:
    w = config.alerts.failure_rate_window
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


def alert(name: str, expr: str, severity: str, summary: str, for_: str | None = None,
          **labels: str) -> dict:
    rule = {"alert": name, "expr": expr, "labels": {"severity": severity, **labels},
            "annotations": {"summary": summary}}
    if for_:
        rule["for"] = for_
    return rule


def exporter_rules(config: Config) -> list[dict]:
    a = config.alerts
    # a baton exporter's `up` falls to 0; else (none ever scraped, or down for over a day)
    # the absence of its metrics
    down = f"({EXPORTER_UP}) == 0 or on() absent(baton_exporter_component_up)"
    return [
        alert("BatonExporterDown", down, "critical",
              "Prometheus cannot scrape a baton exporter{{ with $labels.instance }} ({{ . }})"
              "{{ end }}: every baton alert is blind until it is back", a.exporter_down_for),
        alert("BatonExporterComponentDown", "baton_exporter_component_up == 0", "critical",
              "the {{ $labels.component }} part of baton exporter {{ $labels.instance }} has "
              f"failed for {a.component_down_for}: its metrics are missing and their "
              "alerts cannot fire (see the exporter's log)", a.component_down_for),
        alert("BatonExporterLedgerStale",
              f"baton_exporter_ledger_age_seconds > {_num(a.ledger_stale_seconds)}",
              "warning", "baton exporter {{ $labels.instance }} serves ledger numbers {{ "
              "$value | humanizeDuration }} old: its computation is stuck or slower than "
              f"{_num(a.ledger_stale_seconds)}s (see the exporter's log)", a.for_duration),
    ]


def daemon_rules(config: Config) -> list[dict]:
    beat = heartbeat_seconds(config)
    return [
        alert("BatonSensorHeartbeatStale", f"time() - {HEARTBEAT} > {_num(beat)}",
              "critical", "baton sensor {{ $labels.sensor }} has not ticked for "
              f"{_num(beat)}s: is the Dagster daemon running?"),
        alert("BatonSensorHeartbeatStale", f"absent({HEARTBEAT})", "critical",
              f"no baton sensor has ticked for {_num(beat)}s (none ever did, or the exporter "
              "cannot read the ledger): is the Dagster daemon running?", _secs(beat),
              cause="absent"),
    ]


def stage_rules(config: Config) -> list[dict]:
    a = config.alerts
    rules = [
        alert("BatonConsecutiveSlurmFailures",
              f"baton_stage_consecutive_failures > {a.consecutive_failures}", "critical",
              "{{ $value }} Slurm jobs of stage {{ $labels.stage }} failed in a row"),
        alert("BatonSharedDriveFull",
              f"baton_shared_drive_free_ratio < {_num(a.drive_free_ratio)}", "critical",
              "the shared drive has {{ $value | humanizePercentage }} free"),
        alert("BatonLedgerIntegrityFailed", "baton_ledger_integrity_ok == 0", "critical",
              "the ledger's integrity check failed: run `baton db check`"),
        alert("BatonQueueDepthHigh", f"baton_queue_depth > {a.queue_depth}", "warning",
              "{{ $value }} jobs are waiting in the Slurm queue", a.for_duration),
    ]
    for stage, limit in slow_seconds(config).items():
        rules.append(alert(
            "BatonJobSlow",
            f'baton_longest_running_job_seconds{{stage="{stage}"}} > {_num(limit)}',
            "warning", f"an {stage} job has run {{{{ $value | humanizeDuration }}}}, over "
            f"the {_num(limit)}s baton.yaml expects of it (its time limit is "
            f"{config.stages[stage].time})", stage=stage))
    for stage, wait in sorted(a.missing_signal_seconds.items()):
        metric, what = AWAITED[stage]
        rules.append(alert(
            "BatonExpectedSignalMissing", f"{metric} > {_num(wait)}", "warning",
            what + " for {{ $value | humanizeDuration }}", stage=stage))
    return rules


def slurm_calls_rule(config: Config) -> dict:
    """baton's Slurm calls near the installation's budget, whichever process makes them
    (``max by``: every exporter of the installation serves the same counts)."""
    budget = config.slurm.calls_per_second
    fraction = config.alerts.slurm_calls_fraction
    limit = round(fraction * budget, 9)
    return alert(
        "BatonSlurmCallsHigh", "sum(max by (command, process) "
        f"(rate(baton_slurm_calls_total[{SLURM_CALLS_WINDOW}]))) > {_num(limit)}", "warning",
        "baton makes {{ $value | printf \"%.2f\" }} Slurm calls per second (the last "
        f"{SLURM_CALLS_WINDOW}), over {_num(round(fraction * 100, 6))}% "
        f"of its budget (slurm.calls_per_second {_num(budget)}): near it, its calls wait; "
        "baton_slurm_calls_total says which process and command make them")


def supervision_rules(config: Config) -> list[dict]:
    window = config.alerts.given_up_window
    return [
        alert("BatonRunGivenUp", f"increase(baton_runs_given_up_total[{window}]) > 0",
              "critical", "the sensors stopped asking for {{ $value }} {{ $labels.run }} "
              "run(s) whose every try ended without success: nothing asks for them again; "
              "see the sensor's log in Dagster, fix the cause, then launch the partition "
              "from the UI"),
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
    ]


def status_rules(config: Config) -> list[dict]:
    a = config.alerts
    rules = [
        alert("BatonFailureRateHigh",
              f"baton:failure_ratio:{a.failure_rate_window} > {_num(a.failure_rate)}",
              "warning", "{{ $value | humanizePercentage }} of {{ $labels.stage }} jobs "
              f"failed in the last {a.failure_rate_window}", a.for_duration),
        alert("BatonStatusReportOverdue",
              "time() - baton_status_last_report_timestamp_seconds{status=~\"started|running\"}"
              " > on(project, job_name) group_left() baton_status_expected_interval_seconds",
              "warning",
              "{{ $labels.project }}/{{ $labels.job_name }} is {{ $labels.status }} but has not "
              "reported for {{ $value | humanizeDuration }}"),
    ]
    # a job status.intervals names, with no report at all after its interval (one rule
    # per distinct interval: `for` cannot come from a series)
    for interval in declared_status_intervals(config):
        rules.append(alert(
            "BatonStatusNeverReported",
            f"baton_status_expected_interval_seconds == {_num(interval)} unless "
            "on(project, job_name) baton_status_last_report_timestamp_seconds", "warning",
            "{{ $labels.project }}/{{ $labels.job_name }} is expected to report (baton.yaml "
            f"status.intervals) but has not reported once in {_num(interval)}s",
            _secs(interval)))
    rules += [
        alert("BatonStatusReportsSetAside", "baton_status_rejected_files > 0", "warning",
              "{{ $value }} status report file(s) could not be ingested and were set aside in "
              "status/rejected/ on the shared drive: read each .reason, then remove them"),
        alert("BatonUnknownCampaignType",
              f"increase(baton_campaign_unknown_type_signals_total[{a.unknown_type_window}])"
              " > 0", "warning",
              "signals name campaign type {{ $labels.type }}, which baton.yaml "
              "campaigns.types does not list (baton campaign list --unknown)"),
    ]
    return rules


def backup_rules(config: Config) -> list[dict]:
    a = config.alerts
    late = _num(a.backup_missing_seconds)
    return [
        alert("BatonBackupMissing", f"time() - {BACKUP_TS} > {late}", "critical",
              "the ledger's last verified backup is {{ $value | humanizeDuration }} old "
              f"(over {late}s): see `baton db backup`"),
        # none yet: a fresh install has until the first daily backup is overdue
        alert("BatonBackupMissing", f"absent({BACKUP_TS})", "critical",
              f"no verified backup of the ledger for {late}s (none ever, or the exporter is "
              "down): see `baton db backup`", _secs(a.backup_missing_seconds),
              cause="absent"),
        alert("BatonBackupFailed",
              f"increase(baton_ledger_backup_failures_total[{a.backup_failure_window}]) > 0",
              "critical", "a backup of the ledger failed in the last "
              f"{a.backup_failure_window}: see the backup's log, then `baton db backup`"),
    ]


def alert_rules(config: Config) -> dict:
    return {"name": "baton-alerts", "rules": [
        *exporter_rules(config), *daemon_rules(config), *stage_rules(config),
        slurm_calls_rule(config), *supervision_rules(config), *status_rules(config),
        *backup_rules(config)]}


def render(config: Config) -> str:
    """The rules file: a header naming the configuration and its thresholds, then YAML."""
    header = ("# Generated by `baton alerts render` from the configuration "
              f"({config.source}); do not edit.\n")
    settings = {**config.alerts.model_dump(), "sensors.interval_seconds":
                config.sensors.interval_seconds,
                "slurm.calls_per_second": config.slurm.calls_per_second}
    for name, stage in sorted(config.stages.items()):
        expected = _num(stage.expected_seconds) if stage.expected_seconds else "none"
        settings[f"stages.{name}"] = f"time {stage.time}, expected_seconds {expected}"
    header += "".join(f"#   {k}: {v}\n" for k, v in settings.items())
    return header + yaml.safe_dump({"groups": [recording_rules(config), alert_rules(config)]},
                                   sort_keys=False, width=100)
