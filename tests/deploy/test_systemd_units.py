"""deploy/systemd/: a unit for every service of a deployment, each one that
``systemd-analyze verify`` accepts without a word (an unknown key, a missing program or a
bad value fails), with the programs it names at the paths an installation puts them."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baton.units import parse_memory_mb
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
ANALYZE = "/usr/bin/systemd-analyze"
PREFIX = "/opt/baton"  # the installation's checkout, with its .venv

SERVICES = {
    "baton-dagster-daemon.service": "dagster-daemon run",
    "baton-dagster-webserver.service": "dagster-webserver -w",
    "baton-dagster-webserver-readonly.service": "dagster-webserver --read-only",
    "baton-exporter.service": "baton exporter --host 0.0.0.0 --port 9108 --web-config",
    "baton-web.service": "baton web --host 127.0.0.1 --port 8090 --root-path /baton",
    "baton-mlflow.service": "mlflow server",
    "baton-prometheus.service": "/usr/bin/prometheus --config.file",
    "baton-alertmanager.service": "/usr/bin/prometheus-alertmanager --config.file",
}


def _service(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser["Service"]


def test_every_service_has_its_unit() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(SERVICES)
    for name, command in SERVICES.items():
        service = _service(UNITS / name)
        assert command in service["ExecStart"], name
        assert service["Restart"] == "always", name


def test_memory_limits_leave_room_above_the_measured_burst() -> None:
    """The daemon's tree was measured above 1 GB in a burst (docs/operator/deployment.md):
    its MemoryHigh is above that, and every unit's MemoryMax above its MemoryHigh."""
    for name in SERVICES:
        service = _service(UNITS / name)
        high, top = parse_memory_mb(service["MemoryHigh"]), parse_memory_mb(service["MemoryMax"])
        assert high < top, name
    assert parse_memory_mb(_service(UNITS / "baton-dagster-daemon.service")["MemoryHigh"]) \
        > 1024


def test_systemd_analyze_verifies_every_unit(tmp_path: Path) -> None:
    require(os.access(ANALYZE, os.X_OK), f"{ANALYZE} is missing (apt-get install systemd)")
    # an installation in a temporary prefix: this checkout's workspace and this Python's
    # environment, at the paths the units name under /opt/baton
    prefix = tmp_path / "opt-baton"
    (prefix / ".venv").mkdir(parents=True)
    (prefix / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    (prefix / "workspace.yaml").symlink_to(ROOT / "workspace.yaml")
    copies = tmp_path / "units"
    copies.mkdir()
    for unit in UNITS.glob("*.service"):
        (copies / unit.name).write_text(unit.read_text().replace(PREFIX, str(prefix)))
    proc = subprocess.run([ANALYZE, "verify", *sorted(str(p) for p in copies.iterdir())],
                          capture_output=True, text=True, timeout=120, check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_systemd_analyze_refuses_a_unit_with_a_missing_program(tmp_path: Path) -> None:
    """The check above can fail: a unit whose program is not installed is refused."""
    require(os.access(ANALYZE, os.X_OK), f"{ANALYZE} is missing (apt-get install systemd)")
    unit = tmp_path / "baton-dagster-daemon.service"
    unit.write_text((UNITS / unit.name).read_text().replace(PREFIX, str(tmp_path / "none")))
    proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0
    assert "dagster-daemon" in proc.stderr


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_units_run_as_baton_and_baton_s_read_the_installation_environment(name: str) -> None:
    service = _service(UNITS / name)
    assert service["User"] == "baton"
    if service["ExecStart"].startswith(PREFIX):
        assert service["EnvironmentFile"] == "/etc/baton/env"
