"""The exporter behind a web config, served for real over TCP: basic auth (no credentials
and wrong ones 401 with a challenge, the right ones 200), TLS with a self-signed
certificate, GET and HEAD on /metrics and /healthz only, a client that trickles its request
or never finishes its handshake cut off at the deadline while others are served, and a bad
file one line from `baton exporter`."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.config import Config
from baton.exporter.server import build_registry, exporter_app, listen
from baton.ledger import open_ledger
from baton.webauth import Passwords, load_web_config, tls_context
from tests.conftest import one_error_line
from tests.exporter.test_exporter_http import baton_exporter
from tests.exporter.web_config_files import PASSWORD, USER, self_signed, web_config

DEADLINE = 1.0  # the test server's request_seconds


class Served:
    """The exporter's app and server on a free port, serving in a thread."""

    def __init__(self, config: Config, folder: Path, *, tls: bool, auth: bool) -> None:
        open_ledger(config.ledger_url, init=True).close()
        web = load_web_config(web_config(folder, tls=tls, auth=auth))
        self.registry, self.collector = build_registry(config, queue_ttl=3600)
        self.httpd = listen("127.0.0.1", 0, exporter_app(
            self.registry, Passwords(web.users) if web.users else None), tls_context(web),
            request_seconds=DEADLINE)
        self.port = self.httpd.server_address[1]
        self.client_tls = None
        if tls:
            self.client_tls = ssl.create_default_context(cafile=folder / "exporter.crt")
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def request(self, method: str, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)
                ) -> tuple[http.client.HTTPResponse, bytes]:
        if self.client_tls is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "localhost", self.port, timeout=30, context=self.client_tls)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {}
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(
                ":".join(auth).encode()).decode()
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            return response, response.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.collector.ledger.close()


@pytest.fixture
def served(config: Config, tmp_path: Path) -> Iterator[Served]:
    srv = Served(config, tmp_path, tls=True, auth=True)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def plain(config: Config, tmp_path: Path) -> Iterator[Served]:
    srv = Served(config, tmp_path, tls=False, auth=False)
    try:
        yield srv
    finally:
        srv.close()


def test_credentials_are_asked_for_and_checked_over_tls(served: Served) -> None:
    for auth in (None, (USER, "wrong"), ("nobody", PASSWORD), (USER, "")):
        response, body = served.request("GET", "/metrics", auth)
        assert response.status == 401, auth
        assert response.getheader("WWW-Authenticate", "").startswith('Basic realm=')
        assert b"baton_" not in body
    response, body = served.request("GET", "/metrics")
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/plain")
    assert b"# TYPE baton_" in body


def test_the_server_speaks_only_tls_with_its_certificate(served: Served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:  # plain HTTP to the TLS port: no answer in clear
        conn.request("GET", "/metrics")
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.getresponse()
    finally:
        conn.close()
    untrusting = http.client.HTTPSConnection("localhost", served.port, timeout=10,
                                             context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting.request("GET", "/healthz")
    untrusting.close()
    assert served.request("GET", "/healthz")[0].status == 200  # the server lives on


def test_only_get_and_head_on_metrics_and_healthz(served: Served) -> None:
    response, body = served.request("GET", "/healthz")
    assert (response.status, body) == (200, b"OK\n")
    response, body = served.request("HEAD", "/healthz")
    assert (response.status, body) == (200, b"")
    response, body = served.request("HEAD", "/metrics")
    assert response.status == 200 and body == b""
    assert int(response.getheader("Content-Length")) > 0
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response, _ = served.request(method, "/metrics")
        assert response.status == 405, method
        assert response.getheader("Allow") == "GET, HEAD"
    for path in ("/", "/metrics/x", "/favicon.ico", "/debug/pprof"):
        assert served.request("GET", path)[0].status == 404, path
    assert served.request("GET", "/nowhere", None)[0].status == 401  # auth comes first


def test_without_a_web_config_the_routes_hold_and_nothing_is_asked(plain: Served) -> None:
    response, body = plain.request("GET", "/metrics", None)
    assert response.status == 200 and b"# TYPE baton_" in body
    assert plain.request("POST", "/healthz", None)[0].status == 405
    assert plain.request("GET", "/", None)[0].status == 404


def cut_off_after(port: int, trickle: bytes) -> float:
    """Seconds from connecting until the server closes the connection while it is sent
    ``trickle`` one byte each 0.1 s (the whole of it would take len/10 seconds); inf if it
    never does."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(0.1)
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1024) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except OSError:  # reset by the server
                return time.monotonic() - start
    return float("inf")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_slow_client_is_cut_off_at_the_deadline_while_others_are_served(
        config: Config, tmp_path: Path, tls: bool) -> None:
    """A request line and headers sent byte by byte (plain), or a TLS ClientHello record
    (its header announces 512 bytes) trickled: the server closes the connection once its
    deadline has passed, long before the trickle ends, and answers others meanwhile."""
    srv = Served(config, tmp_path, tls=tls, auth=True)
    if tls:
        trickle = b"\x16\x03\x01\x02\x00\x01" + b"\x00" * 220
    else:
        trickle = b"GET /metrics HTTP/1.0\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    try:
        results: list[float] = []
        threads = [threading.Thread(target=lambda: results.append(cut_off_after(srv.port,
                                                                               trickle)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        assert srv.request("GET", "/metrics")[0].status == 200  # served meanwhile
        for t in threads:
            t.join(60)
        # the trickle would take 23 s; cut off after the deadline (1 s) and before 10 s
        assert len(results) == 3 and all(DEADLINE <= r < 10 for r in results), results
    finally:
        srv.close()


def test_a_bad_web_config_is_one_line_at_start(config: Config, tmp_path: Path) -> None:
    open_ledger(config.ledger_url, init=True).close()
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  prometheus: hunter2\n")
    line = one_error_line(baton_exporter(config, "--port", "0", "--web-config", str(bad)))
    assert line == (f"baton: error: web config {bad}: basic_auth_users.prometheus: not a "
                    "bcrypt hash (make one with htpasswd -nBC 10 USER, or bcrypt.hashpw)")
    bad.write_text("tls_server_config:\n  cert_file: gone.crt\n  key_file: gone.key\n")
    line = one_error_line(baton_exporter(config, "--port", "0", "--web-config", str(bad)))
    assert line.startswith(f"baton: error: web config {bad}: cert_file {tmp_path}/gone.crt")
    line = one_error_line(baton_exporter(config, "--port", "0", "--web-config",
                                         str(tmp_path / "none.yml")))
    assert line.startswith(f"baton: error: web config {tmp_path / 'none.yml'}: cannot read")


def test_client_certificates_are_required_when_the_file_says_so(config: Config,
                                                               tmp_path: Path) -> None:
    open_ledger(config.ledger_url, init=True).close()
    self_signed(tmp_path)
    client_crt, client_key = self_signed(tmp_path, "client")
    stranger_crt, stranger_key = self_signed(tmp_path, "stranger")  # signed by no one known
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: exporter.crt\n  key_file: exporter.key\n"
                    "  client_ca_file: client.crt\n"
                    "  client_auth_type: RequireAndVerifyClientCert\n")
    registry, collector = build_registry(config, queue_ttl=3600)
    httpd = listen("127.0.0.1", 0, exporter_app(registry), tls_context(load_web_config(path)),
                   request_seconds=DEADLINE)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def status(cert: tuple[Path, Path] | None) -> int:
        context = ssl.create_default_context(cafile=tmp_path / "exporter.crt")
        if cert is not None:
            context.load_cert_chain(*cert)
        conn = http.client.HTTPSConnection("localhost", httpd.server_address[1], timeout=10,
                                           context=context)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status
        except (ssl.SSLError, ConnectionError):
            return 0
        finally:
            conn.close()

    try:
        assert status(None) == 0
        assert status((stranger_crt, stranger_key)) == 0
        assert status((client_crt, client_key)) == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
        collector.ledger.close()
