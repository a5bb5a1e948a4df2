"""deploy/supervisord.conf under a real supervisord, on an installation made as
docs/operator/deployment.md says (tests/deploy/installation.py), the Dagster instance on
PostgreSQL (deploy/dagster.yaml): every service comes up and answers on its port, an
experiment goes through evaluation and analysis, a stopped daemon fires the heartbeat
alert and its return resolves it, and a SIGKILLed service is restarted."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton.inbox import publish
from baton.layout import DriveLayout
from baton.signals import TrainingComplete
from tests.conftest import require
from tests.deploy.installation import (
    DEPLOY,
    E2E,
    EXPORTER_PASSWORD,
    EXPORTER_USER,
    PROGRAMS,
    Installation,
    read_env_file,
)

pytestmark = pytest.mark.slow
HEARTBEAT = "BatonSensorHeartbeatStale"


def http_status(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def baton_yaml() -> str:
    py = sys.executable
    return (
        "slurm:\n  backend: local\n  local_max_concurrent: 2\n"
        "sensors:\n  interval_seconds: 1\n  debounce_seconds: 0.2\n"
        "  full_rescan_seconds: 30\n  missing_signal_grace_seconds: 20\n"
        "stages:\n"
        f"  evaluation:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
        f"    command: {py} {E2E / 'fake_eval.py'}\n"
        f"  analysis:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
        f"    command: {py} {E2E / 'fake_analysis.py'}\n"
        "logging:\n  json_lines: true\n  file: ${BATON_LOG_DIR}/watcher.log\n"
        # the heartbeat alert after 30 s of silence (a daemon ticks every few seconds)
        "alerts:\n  heartbeat_min_seconds: 30\n  for_duration: 1s\n  exporter_down_for: 2s\n")


def test_supervisord_runs_every_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for program in ("supervisord", "supervisorctl", "prometheus", "prometheus-alertmanager"):
        require(shutil.which(program) is not None,
                f"{program} is not installed (./dev services installs it)")
    url = os.environ.get("BATON_TEST_POSTGRES_URL")
    require(url is not None, "BATON_TEST_POSTGRES_URL is not set")
    assert url is not None
    site = Installation(tmp_path, url)
    try:
        _run(site, monkeypatch)
    finally:
        site.stop()
        site.drop_databases()


def _run(site: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
    # the installation's environment sets every variable deploy/baton.env names
    assert set(site.env_file) == set(read_env_file(DEPLOY / "baton.env"))
    site.configure(baton_yaml())
    site.start()
    # the training run ends as soon as the services start: the daemon takes it up while
    # the others come up
    drive = DriveLayout(site.env_file["SHARED_DRIVE"])
    layout = drive.experiment("deployed")
    layout.final_dir.mkdir(parents=True)
    (layout.final_dir / "model.safetensors").write_bytes(b"\0" * 1024)
    publish(drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment="deployed", checkpoint_path=str(layout.final_dir),
        hostname="gpu01", user="tester", final_loss=1.5, total_steps=100))
    ports = site.ports
    base_prom = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"
    exporter = f"http://127.0.0.1:{ports['BATON_EXPORTER_PORT']}/metrics"
    answers = {
        "dagster-webserver": lambda: http_status(
            f"http://127.0.0.1:{ports['DAGSTER_WEBSERVER_PORT']}/server_info") == 200,
        "exporter": lambda: http_status(exporter, (EXPORTER_USER, EXPORTER_PASSWORD)) == 200,
        "web": lambda: http_status(f"http://127.0.0.1:{ports['BATON_WEB_PORT']}/healthz") == 200,
        "mlflow": lambda: http_status(f"http://127.0.0.1:{ports['MLFLOW_PORT']}/health") == 200,
        "prometheus": lambda: http_status(f"{base_prom}/-/ready") == 200,
        "alertmanager": lambda: http_status(
            f"http://127.0.0.1:{ports['ALERTMANAGER_PORT']}/-/ready") == 200,
    }
    site.wait_for("every program RUNNING", lambda: {
        p: s for p, (s, _) in site.status().items()} == dict.fromkeys(PROGRAMS, "RUNNING"),
        timeout=90)
    for name, answer in answers.items():
        site.wait_for(f"{name} to answer", answer, timeout=240)  # a loaded CI machine
    assert http_status(exporter) == 401  # the web config holds
    site.wait_for("Prometheus to scrape the exporter", lambda: _query(
        base_prom, f'up{{job="{site.scrape_job}"}} == 1'), timeout=60)

    # a SIGKILLed service is started again by supervisord
    old = site.status()["exporter"][1]
    assert old is not None
    os.kill(old, signal.SIGKILL)
    site.wait_for("the exporter restarted", lambda: site.status()["exporter"][0] == "RUNNING"
                  and site.status()["exporter"][1] not in (None, old), timeout=60)
    site.wait_for("the restarted exporter to answer", answers["exporter"], timeout=60)

    # the experiment went through evaluation and analysis, on the Dagster instance in
    # PostgreSQL
    for key in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB",
                "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(key, site.env_file[key])
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, RunsFilter

    instance = DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"

    def materialized(asset: str) -> bool:
        return bool(instance.fetch_materializations(AssetRecordsFilter(
            asset_key=AssetKey(asset), asset_partitions=["deployed"]), limit=1).records)

    site.wait_for("the analysis report", lambda: materialized("analysis_report"), timeout=300)
    assert materialized("evaluation_metrics")
    # the status pages show it, from the same ledger
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['BATON_WEB_PORT']}/experiments",
                                timeout=30) as r:
        assert 'data-experiment="deployed"' in r.read().decode()
    # the runs' lines are in the watcher log, with their context, and in Dagster's own log
    watcher = [json.loads(line) for line in
               (site.log / "watcher.log").read_text().splitlines() if line.strip()]
    submitted = [d for d in watcher if "submitted as" in d["message"]
                 and d.get("stage") == "evaluation"]
    assert len(submitted) == 1, submitted
    assert submitted[0]["experiment"] == "deployed"
    # the evaluation was submitted by the training sensor's tick; the analysis by a run
    (run,) = instance.get_runs(RunsFilter(job_name="record_evaluations"))  # a batch (default)
    kept = [e.user_message for e in instance.all_logs(run.run_id)]
    assert any("deployed: submitted as" in m for m in kept), kept  # python_logs
    # the webserver shows the same instance
    runs = _graphql(f"http://127.0.0.1:{ports['DAGSTER_WEBSERVER_PORT']}/graphql",
                    "{ runsOrError { ... on Runs { results { runId } } } }")
    assert run.run_id in {r["runId"] for r in runs["runsOrError"]["results"]}

    # the daemon stopped: the heartbeat alert fires (in Prometheus and in Alertmanager) ...
    site.wait_for("a sensor heartbeat scraped", lambda: _query(
        base_prom, "baton_sensor_heartbeat_timestamp_seconds"), timeout=60)
    site.wait_for("no heartbeat alert while the daemon runs",
                  lambda: not _alert_states(base_prom, HEARTBEAT), timeout=60)
    site.ctl("stop", "baton:dagster-daemon")
    assert site.status()["dagster-daemon"][0] == "STOPPED"
    site.wait_for("the heartbeat alert firing",
                  lambda: "firing" in _alert_states(base_prom, HEARTBEAT), timeout=90)
    site.wait_for("Alertmanager to hold the alert", lambda: any(
        a["labels"]["alertname"] == HEARTBEAT for a in get_json(
            f"http://127.0.0.1:{ports['ALERTMANAGER_PORT']}/api/v2/alerts")), timeout=60)
    # ... and resolves once the daemon is back
    site.ctl("start", "baton:dagster-daemon")
    site.wait_for("the heartbeat alert resolved",
                  lambda: not _alert_states(base_prom, HEARTBEAT), timeout=120)

    # the daemon SIGKILLed: supervisord starts it again, and its sensors tick again
    old = site.status()["dagster-daemon"][1]
    assert old is not None
    killed_at = time.time()
    os.kill(old, signal.SIGKILL)
    site.wait_for("the daemon restarted", lambda: site.status()["dagster-daemon"][0] ==
                  "RUNNING" and site.status()["dagster-daemon"][1] not in (None, old),
                  timeout=60)
    site.wait_for("a heartbeat of the restarted daemon", lambda: _query(
        base_prom, f"max(baton_sensor_heartbeat_timestamp_seconds) > {killed_at}"),
        timeout=120)


def _query(base: str, expr: str) -> list[dict]:
    doc = get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(url, data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        doc = json.loads(r.read())
    assert "errors" not in doc, doc
    return doc["data"]


def _alert_states(base: str, name: str) -> list[str]:
    alerts = get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
    return [a["state"] for a in alerts if a["labels"]["alertname"] == name]
