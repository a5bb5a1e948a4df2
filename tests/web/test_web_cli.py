"""``baton web``'s bad input: one line naming it, exit 1 (or argparse's usage error, exit
2), nothing created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from baton.config import Config
from baton.ledger import open_ledger
from tests.conftest import one_error_line
from tests.web.server import ROOT, config_file


def web(config: Config, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATON_CONFIG": ""}
    return subprocess.run([sys.executable, "-m", "baton", "--config",
                           str(config_file(config, folder)), "web", *args], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_no_ledger_is_refused_and_none_is_created(config: Config, tmp_path: Path) -> None:
    run = web(config, tmp_path, "--port", "0")
    assert "no ledger there" in one_error_line(run)
    assert not Path(config.ledger_url.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize(("args", "said"), [
    (["--web-config", "missing.yml"], "web config missing.yml: cannot read it"),
    (["--host", "no-such-host.invalid"], "web --host no-such-host.invalid: not a host"),
])
def test_bad_input_is_one_line(config: Config, tmp_path: Path, args: list[str],
                               said: str) -> None:
    open_ledger(config.ledger_url, init=True).close()
    assert said in one_error_line(web(config, tmp_path, "--port", "0", *args))


def test_a_port_in_use_is_one_line(config: Config, tmp_path: Path) -> None:
    open_ledger(config.ledger_url, init=True).close()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_error_line(web(config, tmp_path, "--port", str(port)))
    assert f"web cannot listen on 127.0.0.1:{port}" in line and "another process" in line


@pytest.mark.parametrize(("args", "option"), [(["--root-path", "baton/"], "--root-path"),
                                              (["--refresh", "-1"], "--refresh"),
                                              (["--port", "70000"], "--port")])
def test_bad_options_are_usage_errors(config: Config, tmp_path: Path, args: list[str],
                                      option: str) -> None:
    run = web(config, tmp_path, *args)
    assert run.returncode == 2 and option in run.stderr.splitlines()[-1], run.stderr
