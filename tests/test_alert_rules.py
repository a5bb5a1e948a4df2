"""Alert and recording rules: generated from one table, valid, and every alert tested
firing and not firing with promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from prometheus.rules import Thresholds, render
from tests.conftest import require

PROM = Path(__file__).resolve().parents[1] / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "promtool is not installed (apt-get install prometheus)")
    assert path is not None
    return path


def test_alerts_file_is_generated_from_the_thresholds() -> None:
    assert (PROM / "alerts.yml").read_text() == render(Thresholds())


def test_promtool_check_rules() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(PROM / "alerts.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 16 rules found" in proc.stdout


def test_promtool_unit_tests_cover_every_alert() -> None:
    import yaml

    tests = yaml.safe_load((PROM / "tests" / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]
              if case["exp_alerts"]}
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    assert tested == alerts  # each alert fires in some test ...
    for t in tests:  # ... next to a series of the same metric that must not fire
        assert len(t["input_series"]) >= 2 or any(not c["exp_alerts"]
                                                  for c in t["alert_rule_test"]), t["name"]
    proc = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"],
                          cwd=PROM / "tests", capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deploy_configs_are_valid() -> None:
    deploy = PROM.parent / "deploy"
    proc = subprocess.run([promtool(), "check", "config", str(deploy / "prometheus.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    amtool = shutil.which("amtool")
    require(amtool is not None, "amtool is not installed (apt-get install "
            "prometheus-alertmanager)")
    proc = subprocess.run([str(amtool), "check-config", str(deploy / "alertmanager.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    assert "email_configs" in (deploy / "alertmanager.yml").read_text()
    assert "webhook_configs" in (deploy / "alertmanager.yml").read_text()
