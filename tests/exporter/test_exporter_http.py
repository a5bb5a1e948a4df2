"""The exporter's HTTP side holds up: a listen queue deep enough for a burst of scrapers,
HEAD answered like GET without the body, and a port in use, a bad host or a bad port are
one line (exit 1; exit 2 for a port that is not one), never a traceback."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.config import Config
from baton.exporter.server import build_registry, listen, metrics_app
from baton.ledger import open_ledger
from tests.conftest import one_error_line

BURST = 50


class Server:
    """The exporter's server on a free port of 127.0.0.1, bound; serving once started."""

    def __init__(self, config: Config) -> None:
        open_ledger(config.ledger_url, init=True).close()
        self.registry, self.collector = build_registry(config, queue_ttl=3600)
        self.httpd = listen("127.0.0.1", 0, metrics_app(self.registry))
        self.port = self.httpd.server_address[1]
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
        self.httpd.server_close()
        self.collector.ledger.close()


@pytest.fixture
def server(config: Config) -> Iterator[Server]:
    srv = Server(config)
    try:
        yield srv
    finally:
        srv.close()


def test_a_burst_of_connections_waits_in_the_listen_queue(server: Server) -> None:
    """While the server has not accepted anything yet, the kernel completes the handshake
    of every connection of a burst (they wait in the listen queue); with a queue of 5, all
    but 6 would have their SYNs dropped and time out here."""
    clients = []
    try:
        for _ in range(BURST):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        server.start()
        for s in clients:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        answers = [s.makefile("rb").readline() for s in clients]
        assert answers == [b"HTTP/1.0 200 OK\r\n"] * BURST
    finally:
        for s in clients:
            s.close()


def test_head_is_answered_like_get_without_a_body(server: Server) -> None:
    server.start()
    port = server.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    got = conn.getresponse()
    body = got.read()
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("HEAD", "/metrics")
    head = conn.getresponse()
    assert head.status == 200
    assert head.getheader("Content-Type") == got.getheader("Content-Type")
    assert int(head.getheader("Content-Length")) > 0 and body
    assert head.read() == b""
    conn.close()


def baton_exporter(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "",
           "BATON_DATABASE_URL": "", "BATON_SLURM_BACKEND": "local"}
    return subprocess.run([sys.executable, "-m", "baton", "exporter", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_port_in_use_is_one_line(config: Config) -> None:
    open_ledger(config.ledger_url, init=True).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(baton_exporter(config, "--port", str(port)))
    assert line.startswith("baton: error: ") and f"127.0.0.1:{port}" in line
    assert "in use" in line


@pytest.mark.parametrize("host", ["no-such-host.invalid", "203.0.113.7", "300.1.1.1"])
def test_a_bad_host_is_one_line(config: Config, host: str) -> None:
    open_ledger(config.ledger_url, init=True).close()
    line = one_error_line(baton_exporter(config, "--host", host, "--port", "0"))
    assert line.startswith("baton: error: ") and host in line


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_bad_port_is_a_usage_error(config: Config, port: str, tmp_path: Path) -> None:
    proc = baton_exporter(config, "--port", port)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--port" in proc.stderr.strip().splitlines()[-1]


def test_help_shows_the_defaults(config: Config) -> None:
    proc = baton_exporter(config, "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for default in ("127.0.0.1", "9108", "30"):
        assert f"(default: {default})" in text, proc.stdout


@pytest.mark.parametrize("ttl", ["-1", "nan", "inf", "soon"])
def test_a_bad_queue_ttl_is_a_usage_error(config: Config, ttl: str) -> None:
    proc = baton_exporter(config, "--queue-ttl", ttl)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--queue-ttl" in proc.stderr.strip().splitlines()[-1]
