"""A real Prometheus (Debian's) scraping `baton exporter` while the end-to-end pipeline runs
on a real Dagster daemon: every dashboard query returns data, key values agree with the
ledger, and stopping the daemon fires the heartbeat alert."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from prometheus.dashboards import dashboard, queries
from tests.conftest import require
from tests.e2e.harness import Pipeline, free_port
from tests.prometheus.grafana_variables import instant_query, substitute, variable_values
from tests.prometheus.server import start_prometheus

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def value(base: str, expr: str) -> float:
    result = query(base, expr)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def alert_states(base: str, name: str) -> list[str]:
    """The state (pending, firing) of every active alert called ``name``."""
    with urllib.request.urlopen(f"{base}/api/v1/alerts", timeout=10) as r:
        alerts = json.loads(r.read())["data"]["alerts"]
    return [a["state"] for a in alerts if a["labels"]["alertname"] == name]


def test_prometheus_sees_the_pipeline(tmp_path: Path) -> None:
    require(shutil.which("prometheus") is not None,
            "prometheus is not installed (apt-get install prometheus)")
    # test thresholds in the site's baton.yaml: a sensor ticks every 5 s at best (Dagster's
    # loop), 20 s of silence means stopped
    p = Pipeline(tmp_path, "local", extra_config=(
        "status:\n  expected_interval_seconds: 6\nalerts:\n  heartbeat_min_seconds: 20\n"
        "  for_duration: 1s\n  exporter_down_for: 2s\n"))
    exporter_port, prom_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "baton", "exporter", "--port", str(exporter_port),
         "--queue-ttl", "1"], env=p.env, stdout=open(tmp_path / "exporter.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True)
    # deploy/prometheus.yml with test intervals, a scrape job a site named as it liked, and
    # the rules `baton alerts render` makes of the site's baton.yaml
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["job_name"] = "lab-exporter"
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{exporter_port}"]}]
    for key in ("scheme", "basic_auth", "tls_config"):  # this exporter has no web config
        config["scrape_configs"][0].pop(key)
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    config.pop("alerting")
    rendered = subprocess.run([sys.executable, "-m", "baton", "alerts", "render", "--out",
                               str(tmp_path / "alerts.yml")], env=p.env, capture_output=True,
                              text=True, check=False, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    assert "> 20\n" in (tmp_path / "alerts.yml").read_text()  # the heartbeat's threshold
    prom = start_prometheus(tmp_path, config, prom_port)
    base = f"http://127.0.0.1:{prom_port}"
    token = secrets.token_hex(2)
    exps = [f"obs-a-{token}", f"obs-b-{token}"]
    try:
        p.start()
        campaign = f"obs-{token}"
        for exp in exps:
            p.train(exp, campaign=campaign)
        # a script reports once and falls silent (the daemon's sensor ingests it)
        report = subprocess.run([sys.executable, "-m", "baton", "status", "report",
                                 "--project", "nightly", "--job", "fetch", "--status",
                                 "running", "--progress", "25"], env={
                                     **p.env, "SHARED_DRIVE": str(p.drive.root)},
                                check=False, timeout=30)
        assert report.returncode == 0
        for exp in exps:
            p.wait_for(f"analysis_report of {exp}",
                       lambda e=exp: p.materialized("analysis_report", e))
        p.wait_for("Prometheus to scrape the finished jobs", lambda: query(
            base, 'baton_jobs_finished_total{stage="analysis"} == 2'), timeout=60)
        # key values agree with the ledger (once a scrape has seen every record: wait for
        # that, not for a fixed time)
        jobs = p.ledger.jobs()
        p.wait_for("the scraped numbers of every job", lambda: query(
            base, 'baton_end_to_end_seconds_count == 2') and query(
            base, f'baton_jobs_finished_total{{stage="evaluation"}} == '
            f'{sum(j.stage == "evaluation" and j.state == "COMPLETED" for j in jobs)}'),
            timeout=120)
        for stage in ("evaluation", "analysis"):
            done = sum(1 for j in jobs if j.stage == stage and j.state == "COMPLETED")
            assert value(base, f'baton_jobs_finished_total{{stage="{stage}"}}') == done
            assert value(base, f'baton_jobs{{stage="{stage}",state="finished"}}') == done
        cpu = sum(j.cpu_seconds or 0 for j in jobs if j.stage == "evaluation")
        assert value(base, 'baton_job_cpu_seconds_total{stage="evaluation"}') == \
            pytest.approx(cpu)
        assert value(base, "baton_signal_detection_latency_seconds_count") == 2
        assert value(base, "baton_end_to_end_seconds_count") == 2
        assert value(base, "baton_ledger_integrity_ok") == 1
        # a curator shows the campaign: it is complete, and the progress table agrees
        activate = subprocess.run([sys.executable, "-m", "baton", "campaign", "activate",
                                   campaign], env=p.env, capture_output=True, text=True,
                                  check=False, timeout=60)
        assert activate.returncode == 0, activate.stderr
        # ... with its schedule and a note (the dashboard's ETA, progress against plan and
        # notes panels show them)
        plan = subprocess.run([sys.executable, "-m", "baton", "campaign", "set", campaign,
                               "--started", "2026-01-05", "--expected-end", "2099-01-05",
                               "--note", "nightly sweep"], env=p.env, capture_output=True,
                              text=True, check=False, timeout=60)
        assert plan.returncode == 0, plan.stderr
        p.wait_for("the active campaign in Prometheus", lambda: query(
            base, f'baton_campaign_priority{{campaign="{campaign}"}}') and query(
            base, f'baton_campaign_notes_info{{campaign="{campaign}"}}'), timeout=30)
        assert value(base, f'baton_campaign_completion_ratio{{campaign="{campaign}"}}') == 1
        assert value(base, f'sum(baton_progress_tasks{{campaign="{campaign}",'
                     'column="finished"})') == len(jobs)
        assert value(base, f'sum(baton_campaign_jobs{{campaign="{campaign}",'
                     'state="finished"})') == len(jobs)  # the row 1 tiles of the campaign
        assert value(base, 'baton_status_progress_ratio{project="nightly",'
                     'job_name="fetch"}') == 0.25
        p.wait_for("BatonStatusReportOverdue to fire", lambda: any(
            a["labels"]["alertname"] == "BatonStatusReportOverdue" and a["state"] == "firing"
            and a["labels"]["job_name"] == "fetch" for a in json.loads(urllib.request.urlopen(
                f"{base}/api/v1/alerts", timeout=10).read())["data"]["alerts"]), timeout=60)
        # stop the daemon: the heartbeat alert, silent while the sensors tick, fires in the
        # real Prometheus
        assert query(base, "baton_sensor_heartbeat_timestamp_seconds")  # it has data ...
        assert "firing" not in alert_states(base, "BatonSensorHeartbeatStale")  # ... fresh
        assert value(base, 'up{job="lab-exporter"}') == 1
        assert not alert_states(base, "BatonExporterDown")
        assert not alert_states(base, "BatonExporterComponentDown")
        p.stop()
        p.wait_for("BatonSensorHeartbeatStale to fire", lambda: "firing" in alert_states(
            base, "BatonSensorHeartbeatStale"), timeout=120)
        # each variable's own query gives its options (the active campaign; the stages),
        # and every query of every panel returns data with those real values in it
        board = dashboard()
        options = {v["name"]: variable_values(v, instant_query(base))
                   for v in board["templating"]["list"]}
        assert options["campaign"] == [(campaign, campaign)]  # no display name: the tag
        assert {"evaluation", "analysis"} <= {v for _, v in options["stage"]}
        values = {name: [v for _, v in opts] for name, opts in options.items()}
        empty = []
        for expr in queries(board):
            concrete = substitute(expr, values)
            if not query(base, concrete):
                empty.append(concrete)
        assert not empty, empty
        # stop the exporter: Prometheus's own `up` of its scrape fires BatonExporterDown,
        # whatever the scrape job's name
        os.killpg(exporter.pid, signal.SIGTERM)
        exporter.wait(30)
        p.wait_for("BatonExporterDown to fire", lambda: "firing" in alert_states(
            base, "BatonExporterDown"), timeout=60)
    finally:
        p.kill()
        for proc in (exporter, prom):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
