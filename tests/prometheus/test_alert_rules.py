"""Alert and recording rules: the committed file is the render of the default
configuration, valid, and every alert tested firing and not firing with promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from baton.cli import main
from prometheus.rules import default_rules
from tests.conftest import require

PROM = Path(__file__).resolve().parents[2] / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "promtool is not installed (apt-get install prometheus)")
    assert path is not None
    return path


def test_alerts_file_is_the_render_of_the_default_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`baton alerts render` without a baton.yaml writes exactly the committed file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATON_CONFIG", raising=False)
    assert main(["alerts", "render", "--out", str(tmp_path / "alerts.yml")]) == 0
    committed = (PROM / "alerts.yml").read_text()
    assert (tmp_path / "alerts.yml").read_text() == committed == default_rules()


def test_promtool_check_rules() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(PROM / "alerts.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in proc.stdout


def test_promtool_unit_tests_cover_every_alert() -> None:
    tests = yaml.safe_load((PROM / "tests" / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])
              if case["exp_alerts"]}
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    assert tested == alerts  # each alert fires in some test ...
    for t in tests:  # ... next to a series of the same metric that must not fire
        if "alert_rule_test" in t:
            assert len(t["input_series"]) >= 2 or any(not c["exp_alerts"]
                                                      for c in t["alert_rule_test"]), t["name"]
    # an alert with a `for:` is tested not firing before that duration has passed
    held = {r["alert"] for g in rules for r in g["rules"] if "alert" in r and "for" in r}
    for name in held:
        assert any(not c["exp_alerts"] and c["alertname"] == name
                   for t in tests for c in t.get("alert_rule_test", [])), name
    # every recording rule has its values checked
    recorded = {r["record"] for g in rules for r in g["rules"] if "record" in r}
    checked = {c["expr"] for t in tests for c in t.get("promql_expr_test", [])}
    assert recorded <= checked, recorded - checked
    proc = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"],
                          cwd=PROM / "tests", capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_rule_depends_on_the_scrape_job_name() -> None:
    """A site names its scrape job as it likes: no rule matches on ``job``."""
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    assert not [r for g in groups for r in g["rules"] if "job=" in r["expr"].replace(" ", "")]


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
