"""A real Prometheus scrapes a real `baton exporter --web-config` (basic auth, TLS with a
self-signed certificate) with the scrape settings deploy/prometheus.yml documents (its
commented block, uncommented): the target is up, and the same Prometheus with a wrong
password sees it down with a 401."""

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


def documented_scrape(folder: Path, port: int, job: str, password: str) -> dict:
    """deploy/prometheus.yml's baton job with its commented web-config block uncommented,
    the password file (``job``.password) and the CA (exporter.crt) in ``folder``."""
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "# scheme: https" in line)
    block = []
    for line in lines[start:]:
        if not line.strip().startswith("#"):
            break
        block.append(line.replace("# ", "", 1))
    extra = yaml.safe_load("\n".join(block))
    assert extra["basic_auth"]["username"] == USER  # the documented user name
    (folder / f"{job}.password").write_text(password + "\n")
    extra["basic_auth"]["password_file"] = str(folder / f"{job}.password")
    extra["tls_config"]["ca_file"] = str(folder / "exporter.crt")
    return {**yaml.safe_load(text)["scrape_configs"][0], **extra, "job_name": job,
            "static_configs": [{"targets": [f"localhost:{port}"]}]}


def targets(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10) as r:
        return json.loads(r.read())["data"]["activeTargets"]


def test_prometheus_scrapes_the_exporter_with_credentials_over_tls(
        config: Config, tmp_path: Path) -> None:
    require(shutil.which("prometheus") is not None,
            "prometheus is not installed (apt-get install prometheus)")
    open_ledger(config.ledger_url, init=True).close()
    web = web_config(tmp_path)
    port, prom_port = free_port(), free_port()
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "",
           "BATON_DATABASE_URL": "", "BATON_SLURM_BACKEND": "local"}
    exporter = subprocess.Popen(
        [sys.executable, "-m", "baton", "exporter", "--port", str(port), "--web-config",
         str(web)], env=env, stdout=open(tmp_path / "exporter.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True)
    right = documented_scrape(tmp_path, port, "baton", PASSWORD)
    wrong = documented_scrape(tmp_path, port, "wrong-password", "not-" + PASSWORD)
    prom = start_prometheus(tmp_path, {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [right, wrong]}, prom_port)
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
        assert up.get("health") == "up", (up, (tmp_path / "exporter.log").read_text())
        assert up["scrapeUrl"].startswith("https://localhost:")
        assert down.get("health") == "down" and "401" in down["lastError"], down
    finally:
        for proc in (exporter, prom):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
