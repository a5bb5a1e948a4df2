"""The rules a site's baton.yaml renders: every alert on a running job can fire before
Slurm's time limit ends the job, the heartbeat follows the sensors' interval, and the
rendered rules (not only the committed defaults) fire and stay silent in promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from baton.cli import main
from baton.config import load_config
from baton.units import parse_time_seconds
from tests.prometheus.test_alert_rules import PROM, promtool


def seconds(duration: str | None) -> float:
    if duration is None:
        return 0
    match = re.fullmatch(r"([0-9]+)([smh])", duration)
    assert match, duration
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


# the scrape and rule-evaluation intervals of deploy/prometheus.yml: how late Prometheus
# sees a value cross its threshold
DEPLOY = yaml.safe_load((PROM.parent / "deploy" / "prometheus.yml").read_text())["global"]
LAG = sum(seconds(DEPLOY[k]) for k in ("scrape_interval", "evaluation_interval"))

CONFIGS = {
    "defaults": {},
    "short limits": {"stages": {
        "evaluation": {"time": "00:10:00", "mem": "1G", "cpus": 1},
        "analysis": {"time": "00:15:00", "mem": "1G", "cpus": 1, "expected_seconds": 300}}},
    "long limits": {"stages": {
        "evaluation": {"time": "2-00:00:00", "mem": "1G", "cpus": 1,
                       "expected_seconds": 30000},
        "analysis": {"time": "1-12:00:00", "mem": "1G", "cpus": 1}}},
    "expected near the limit": {"stages": {
        "evaluation": {"time": "02:00:00", "mem": "1G", "cpus": 1,
                       "expected_seconds": 5000}}},
    "interval 900 s": {"sensors": {"interval_seconds": 900}},
}


def rendered(tmp_path: Path, site: dict) -> tuple[Path, list[dict]]:
    """The rules `baton alerts render` writes for ``site`` (a baton.yaml)."""
    (tmp_path / "baton.yaml").write_text(yaml.safe_dump(site))
    out = tmp_path / "alerts.yml"
    assert main(["--config", str(tmp_path / "baton.yaml"), "alerts", "render", "--out",
                 str(out)]) == 0
    groups = yaml.safe_load(out.read_text())["groups"]
    return out, [r for g in groups for r in g["rules"] if "alert" in r]


def threshold(rule: dict) -> float:
    match = re.fullmatch(r".* > ([0-9.e+]+)", rule["expr"])
    assert match, rule["expr"]
    return float(match.group(1))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_alert_on_a_running_job_fires_before_its_time_limit(tmp_path: Path,
                                                                  name: str) -> None:
    """BatonJobSlow of each stage: its threshold, its `for` and Prometheus's own lag end
    before the stage's time limit. The heartbeat waits for more than one tick."""
    site = CONFIGS[name]
    _, rules = rendered(tmp_path, site)
    config = load_config(tmp_path / "baton.yaml", env={})
    slow = {r["labels"]["stage"]: r for r in rules if r["alert"] == "BatonJobSlow"}
    assert set(slow) == set(config.stages)
    for stage, rule in slow.items():
        limit = parse_time_seconds(config.stages[stage].time)
        fires_by = threshold(rule) + seconds(rule.get("for")) + LAG
        assert fires_by < limit, (stage, fires_by, limit)
        expected = config.stages[stage].expected_seconds
        if expected and 2 * expected < 0.8 * limit:  # the expected time, when it fits
            assert threshold(rule) == 2 * expected
    missing = {r["labels"]["stage"] for r in rules if r["alert"] == "BatonExpectedSignalMissing"}
    assert missing == {"evaluation", "analysis"}
    stale, absent = (r for r in rules if r["alert"] == "BatonSensorHeartbeatStale")
    interval = config.sensors.interval_seconds
    assert threshold(stale) >= 3 * interval  # a tick late is not a daemon down
    assert seconds(absent["for"]) == threshold(stale)


def test_rendered_rules_fire_and_stay_silent(tmp_path: Path) -> None:
    """A site's own thresholds, through promtool: sensors ticking every 900 s do not page
    between ticks (the fixed 300 s did) and page 3 intervals after they stop; an evaluation
    expected to take 20 min is slow at 40; a job status.intervals names that never reported
    pages after its interval; the analysis signal and the backup with their own times."""
    rules, _ = rendered(tmp_path, {
        "sensors": {"interval_seconds": 900},
        "stages": {"evaluation": {"time": "02:00:00", "mem": "1G", "cpus": 1,
                                  "expected_seconds": 1200}},
        "status": {"intervals": {"nightly/backup": 7200, "nightly/fetch": 7200,
                                 "mosquito": 600}},
        "alerts": {"missing_signal_seconds": {"analysis": 3600},
                   "backup_missing_seconds": 7200}})
    never = "is expected to report (baton.yaml status.intervals) but has not reported once " \
            "in 7200s"
    tests = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [
        {"name": "heartbeat every 900 s", "interval": "1m", "input_series": [
            {"series": 'baton_sensor_heartbeat_timestamp_seconds{sensor="ticking"}',
             "values": "0x14 900x14 1800x14 2700x14"},
            {"series": 'baton_sensor_heartbeat_timestamp_seconds{sensor="stopped"}',
             "values": "0x59"}],
         "alert_rule_test": [
            {"eval_time": "14m", "alertname": "BatonSensorHeartbeatStale", "exp_alerts": []},
            {"eval_time": "44m", "alertname": "BatonSensorHeartbeatStale", "exp_alerts": []},
            {"eval_time": "46m", "alertname": "BatonSensorHeartbeatStale", "exp_alerts": [
                {"exp_labels": {"severity": "critical", "sensor": "stopped"},
                 "exp_annotations": {"summary": "baton sensor stopped has not ticked for "
                                                "2700s: is the Dagster daemon running?"}}]}]},
        {"name": "no heartbeat at all", "interval": "1m", "input_series": [
            {"series": "baton_exporter_component_up", "values": "1x59"}],
         "alert_rule_test": [
            {"eval_time": "44m", "alertname": "BatonSensorHeartbeatStale", "exp_alerts": []},
            {"eval_time": "46m", "alertname": "BatonSensorHeartbeatStale", "exp_alerts": [
                {"exp_labels": {"severity": "critical", "cause": "absent"},
                 "exp_annotations": {"summary": "no baton sensor has ticked for 2700s (none "
                                     "ever did, or the exporter cannot read the ledger): "
                                     "is the Dagster daemon running?"}}]}]},
        {"name": "slow per stage, missing analysis", "interval": "1m", "input_series": [
            {"series": 'baton_longest_running_job_seconds{stage="evaluation"}',
             "values": "2300+60x5"},
            {"series": 'baton_longest_running_job_seconds{stage="analysis"}',
             "values": "3000x5"},
            {"series": "baton_oldest_unanswered_training_seconds", "values": "4000x5"},
            {"series": "baton_oldest_unanswered_evaluation_seconds", "values": "3500+60x5"}],
         "alert_rule_test": [
            {"eval_time": "1m", "alertname": "BatonJobSlow", "exp_alerts": []},
            {"eval_time": "3m", "alertname": "BatonJobSlow", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "stage": "evaluation"},
                 "exp_annotations": {"summary": "an evaluation job has run 41m 20s, over the "
                                     "2400s baton.yaml expects of it (its time limit is "
                                     "02:00:00)"}}]},
            {"eval_time": "1m", "alertname": "BatonExpectedSignalMissing", "exp_alerts": []},
            {"eval_time": "3m", "alertname": "BatonExpectedSignalMissing", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "stage": "analysis"},
                 "exp_annotations": {"summary": "an evaluated model has had no completed "
                                     "analysis for 1h 1m 20s"}}]}]},
        {"name": "a declared job never reports", "interval": "1m", "input_series": [
            {"series": 'baton_status_expected_interval_seconds{project="nightly",'
                       'job_name="backup"}', "values": "7200x140"},
            {"series": 'baton_status_expected_interval_seconds{project="nightly",'
                       'job_name="fetch"}', "values": "7200x140"},
            {"series": 'baton_status_last_report_timestamp_seconds{project="nightly",'
                       'job_name="fetch",status="completed"}', "values": "0x140"}],
         "alert_rule_test": [
            {"eval_time": "110m", "alertname": "BatonStatusNeverReported", "exp_alerts": []},
            {"eval_time": "130m", "alertname": "BatonStatusNeverReported", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "project": "nightly",
                                "job_name": "backup"},
                 "exp_annotations": {"summary": f"nightly/backup {never}"}}]}]},
        {"name": "no backup for 2 h", "interval": "1m", "input_series": [
            {"series": "baton_exporter_component_up", "values": "1x140"}],
         "alert_rule_test": [
            {"eval_time": "110m", "alertname": "BatonBackupMissing", "exp_alerts": []},
            {"eval_time": "130m", "alertname": "BatonBackupMissing", "exp_alerts": [
                {"exp_labels": {"severity": "critical", "cause": "absent"},
                 "exp_annotations": {"summary": "no verified backup of the ledger for 7200s "
                                     "(none ever, or the exporter is down): see `baton db "
                                     "backup`"}}]}]},
    ]}
    (tmp_path / "rendered_test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    for args in (["check", "rules", str(rules)], ["test", "rules", "rendered_test.yml"]):
        proc = subprocess.run([promtool(), *args], cwd=tmp_path, capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # one never-reported rule per distinct interval of a named job; none for a project
    names = [r["alert"] for g in yaml.safe_load(rules.read_text())["groups"]
             for r in g["rules"] if "alert" in r]
    assert names.count("BatonStatusNeverReported") == 1


def test_render_refuses_a_missing_folder(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "render", "--out", str(tmp_path / "nope" / "alerts.yml")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err and "does not exist" in err
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize(("line", "key"), [
    ("for_duration: 5 minutes", "alerts.for_duration"),
    ("ledger_stale_seconds: .inf", "alerts.ledger_stale_seconds"),  # a rule never firing
    ("missing_signal_seconds: {training: 60}", "alerts.missing_signal_seconds.training")])
def test_a_bad_threshold_is_one_line_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, key: str) -> None:
    (tmp_path / "baton.yaml").write_text(f"alerts:\n  {line}\n")
    assert main(["--config", str(tmp_path / "baton.yaml"), "alerts", "render"]) != 0
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and key in err, err
    assert not captured.out  # no rules half-rendered
