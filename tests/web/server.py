"""``baton web`` as a real process on a test's ledger, and plain HTTP requests to it."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from baton.config import Config

ROOT = Path(__file__).resolve().parents[2]
DAGSTER_URL, MLFLOW_URL = "http://dagster.example:3000", "http://mlflow.example:5000"


def config_file(config: Config, folder: Path) -> Path:
    """The baton.yaml the process reads: the test's drive and ledger, and the links."""
    path = folder / "baton.yaml"
    path.write_text(f"shared_drive: {config.shared_drive}\nstate_dir: {config.state_dir}\n"
                    f"database_url: {config.ledger_url}\n"
                    f"mlflow:\n  tracking_uri: {MLFLOW_URL}\n"
                    f"dagster:\n  url: {DAGSTER_URL}\n")
    return path


class Web:
    """``python -m baton web --port 0`` until :meth:`stop`; ``url`` from the line it
    prints once it listens."""

    def __init__(self, config: Config, folder: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BATON_CONFIG": ""}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "baton", "--config", str(config_file(config, folder)),
             "web", "--port", "0", *args], cwd=folder, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("serving "), (line, self.proc.stderr.read()
                                             if self.proc.poll() is not None else "")
        self.url = line.split()[1].rstrip("/")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def request(url: str, method: str = "GET", auth: tuple[str, str] | None = None,
            cafile: Path | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; an HTTP error is an answer like any."""
    req = urllib.request.Request(url, method=method, data=b"x=1" if method == "POST" else None)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode())
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=60, context=context) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
