"""deploy/prometheus.yml itself, run by a real Prometheus against a real `baton exporter
--web-config` (basic auth, TLS with a self-signed certificate): only its paths, host names
and intervals are swapped for the test's. The target is up; the same job with a wrong
password is down with a 401."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from baton.config import Config
from baton.ledger import open_ledger
from tests.conftest import require
from tests.e2e.harness import free_port
from tests.exporter.web_config_files import PASSWORD, USER, web_config
from tests.prometheus.server import start_prometheus

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def deployed(folder: Path, exporter_port: int, alertmanager_port: int) -> dict:
    """deploy/prometheus.yml with the test's exporter, password file, CA, rules and an
    Alertmanager port nobody listens on; scrapes and rules every second."""
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    swaps = {"metrics.lab.example:9108": f"localhost:{exporter_port}",
             "/etc/prometheus/baton-exporter.password": str(folder / "baton.password"),
             "/etc/prometheus/baton-exporter.crt": str(folder / "exporter.crt"),
             "../prometheus/alerts.yml": str(ROOT / "prometheus" / "alerts.yml"),
             "127.0.0.1:9093": f"127.0.0.1:{alertmanager_port}",
             "_interval: 30s": "_interval: 1s"}
    for old, new in swaps.items():
        assert old in text, f"deploy/prometheus.yml no longer has {old!r}"
        text = text.replace(old, new)
    return yaml.safe_load(text)


def targets(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10) as r:
        return json.loads(r.read())["data"]["activeTargets"]


def test_the_deployed_prometheus_scrapes_the_exporter_with_credentials_over_tls(
        config: Config, tmp_path: Path) -> None:
    require(shutil.which("prometheus") is not None,
            "prometheus is not installed (apt-get install prometheus)")
    open_ledger(config.ledger_url, init=True).close()
    web = web_config(tmp_path)  # exporter.crt, exporter.key and web.yml
    port, prom_port = free_port(), free_port()
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "",
           "BATON_DATABASE_URL": "", "BATON_SLURM_BACKEND": "local"}
    exporter = subprocess.Popen(
        [sys.executable, "-m", "baton", "exporter", "--port", str(port), "--web-config",
         str(web)], env=env, stdout=open(tmp_path / "exporter.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True)
    prometheus = deployed(tmp_path, port, free_port())
    right = prometheus["scrape_configs"][0]
    assert right["basic_auth"]["username"] == USER  # the user the web config has
    (tmp_path / "baton.password").write_text(PASSWORD + "\n")
    (tmp_path / "wrong.password").write_text("not-" + PASSWORD + "\n")
    wrong = {**right, "job_name": "wrong-password",
             "basic_auth": {**right["basic_auth"],
                            "password_file": str(tmp_path / "wrong.password")}}
    prometheus["scrape_configs"].append(wrong)
    prom = start_prometheus(tmp_path, prometheus, prom_port)
    base = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 60
        seen: dict[str, dict] = {}
        while time.monotonic() < deadline:
            try:
                seen = {t["labels"]["job"]: t for t in targets(base)}
            except OSError:
                seen = {}
            if len(seen) == 2 and all(t["health"] != "unknown" for t in seen.values()) and \
                    seen[right["job_name"]]["health"] == "up":
                break
            time.sleep(0.5)
        up, down = seen.get(right["job_name"], {}), seen.get(wrong["job_name"], {})
        assert up.get("health") == "up", (up, (tmp_path / "exporter.log").read_text(),
                                          (tmp_path / "prometheus.log").read_text()[-3000:])
        assert up["scrapeUrl"].startswith("https://localhost:")
        assert down.get("health") == "down" and "401" in down["lastError"], down
    finally:
        for proc in (exporter, prom):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
