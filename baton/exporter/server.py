"""Serving /metrics and /healthz: a registry with baton's collector, prometheus-client's
WSGI app, and a threading HTTP server of our own around it: a listen queue deep enough for
a burst of scrapers (the standard library's is 5: the kernel drops the SYNs beyond it, and
each dropped one costs its client a second), GET and HEAD only, a deadline for each
request (a client that sends its request byte by byte is cut off, not given a thread for
ever), TLS and basic auth from a web config (webconfig.py), and a port in use or a host
that is not this machine's said in one line."""

from __future__ import annotations

import io
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from baton.config import Config
from baton.errors import BatonError
from baton.exporter.collector import BatonCollector, QueueSnapshot, tracked_queue
from baton.exporter.folds import FULL_EVERY_SECONDS
from baton.ledger import open_ledger
from baton.listening import cannot_listen, family_of
from baton.webauth import Passwords, load_web_config, tls_context

log = logging.getLogger(__name__)
LISTEN_QUEUE = 1024  # the kernel caps it at net.core.somaxconn
# from the accept, for the TLS handshake and the request line and headers; then for each
# write of the answer (Prometheus' own scrape_timeout is 10 s)
REQUEST_SECONDS = 10.0
ROUTES = ("/metrics", "/healthz")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def build_registry(config: Config, queue_ttl: float = 30,
                   full_every: float = FULL_EVERY_SECONDS
                   ) -> tuple[CollectorRegistry, BatonCollector]:
    registry = CollectorRegistry(auto_describe=False)
    ledger = open_ledger(config.ledger_url, read_only=True)
    queue = QueueSnapshot(lambda: tracked_queue(ledger), queue_ttl)
    collector = BatonCollector(config, ledger, queue, full_every=full_every)
    registry.register(collector)
    return registry, collector


def metrics_app(registry: CollectorRegistry) -> WSGIApp:
    """prometheus-client's app, which answers HEAD with 405: here HEAD is GET without the
    body (its headers, Content-Length included)."""
    app = make_wsgi_app(registry)

    def with_head(environ: dict[str, Any], start_response: Callable[..., Any]
                  ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "HEAD":
            return app(environ, start_response)
        seen: list[Any] = []
        body = b"".join(app({**environ, "REQUEST_METHOD": "GET"},
                            lambda status, headers, *_: seen.append((status, headers))))
        status, headers = seen[0]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return []

    return with_head


def exporter_app(registry: CollectorRegistry, passwords: Passwords | None = None
                 ) -> WSGIApp:
    """/metrics and /healthz, GET and HEAD, behind the web config's basic auth if any: a
    Prometheus scrape needs nothing else, and nothing else is offered."""
    metrics = metrics_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def answer(status: str, *headers: tuple[str, str]) -> Iterable[bytes]:
            body = status.split(" ", 1)[1].encode() + b"\n"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                    ("Content-Length", str(len(body))), *headers])
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

        if passwords is not None and not passwords.check(environ.get("HTTP_AUTHORIZATION")):
            return answer("401 Unauthorized",
                          ("WWW-Authenticate", 'Basic realm="baton exporter", charset="UTF-8"'))
        path = environ.get("PATH_INFO")
        if path not in ROUTES:
            return answer("404 Not Found")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return answer("405 Method Not Allowed", ("Allow", "GET, HEAD"))
        if path == "/healthz":
            return answer("200 OK")
        return metrics(environ, start_response)

    return app


_request = threading.local()  # the deadline of the request its thread serves


class _Deadline(io.RawIOBase):
    """A socket read against the request's deadline: each read may wait only what is left
    of it, so a trickle of bytes cannot stretch the request."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Server(ThreadingWSGIServer):
    request_queue_size = LISTEN_QUEUE
    request_seconds = REQUEST_SECONDS
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the request's thread: the TLS handshake (a total timeout in Python's ssl),
        then the request, both before the deadline."""
        _request.deadline = time.monotonic() + self.request_seconds
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.request_seconds)
        with self.tls.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that was too slow, went away or failed the handshake is its own
        business (a debug line); anything else is a bug of ours, logged with its trace."""
        exc = sys.exception()
        if isinstance(exc, OSError):
            log.debug("exporter: request from %s dropped: %s", client_address[0], exc)
        else:
            log.error("exporter: request from %s failed", client_address[0], exc_info=exc)


class _Handler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the standard one, without the deadline
        self.rfile = io.BufferedReader(_Deadline(self.connection, _request.deadline))

    def parse_request(self) -> bool:
        """Once the headers are in, each write of the answer has the whole timeout again
        (a read left the socket's timeout at what remained of the deadline)."""
        parsed = super().parse_request()
        self.connection.settimeout(self.server.request_seconds)  # type: ignore[attr-defined]
        return parsed

    def log_message(self, format: str, *args: Any) -> None:
        """Prometheus scrapes every few seconds: no line per request."""


def listen(host: str, port: int, app: WSGIApp, tls: ssl.SSLContext | None = None,
           request_seconds: float = REQUEST_SECONDS) -> WSGIServer:
    """A server bound to ``host:port`` (IPv4 or IPv6, as the host resolves), not yet
    serving, speaking TLS with ``tls``; :class:`BatonError` naming the address when it
    cannot be had."""
    family = family_of("exporter", host, port)
    server_class = type("MetricsServer", (_Server,), {
        "address_family": family, "tls": tls, "request_seconds": request_seconds})
    try:
        return make_server(host, port, app, server_class, handler_class=_Handler)
    except OSError as exc:
        raise cannot_listen("exporter", host, port, exc) from None


def serve(config: Config, host: str, port: int, queue_ttl: float,
          web_config: Path | None = None, full_every: float = FULL_EVERY_SECONDS) -> None:
    web = load_web_config(web_config) if web_config is not None else None
    tls = tls_context(web) if web is not None else None
    passwords = Passwords(web.users) if web is not None and web.users else None
    registry, collector = build_registry(config, queue_ttl, full_every)
    try:
        httpd = listen(host, port, exporter_app(registry, passwords), tls)
    except BatonError:
        collector.ledger.close()
        raise
    collector.snapshot.start()
    bound = httpd.server_address[1]
    url = f"{'https' if tls else 'http'}://{host}:{bound}/metrics"
    auth = " (basic auth)" if passwords else ""
    log.info("baton exporter on %s%s", url, auth)
    print(f"serving {url}{auth} (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()  # until Ctrl-C
    finally:
        httpd.server_close()
        collector.ledger.close()
