"""Serving /metrics: a registry with baton's collector, prometheus-client's WSGI app, and
a threading HTTP server of our own around it: a listen queue deep enough for a burst of
scrapers (the standard library's is 5: the kernel drops the SYNs beyond it, and each
dropped one costs its client a second), HEAD answered, and a port in use or a host that
is not this machine's said in one line."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from baton.config import Config
from baton.errors import BatonError
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from baton.slurm.factory import make_backend

log = logging.getLogger(__name__)
LISTEN_QUEUE = 1024  # the kernel caps it at net.core.somaxconn
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def build_registry(config: Config, queue_ttl: float = 30) -> tuple[CollectorRegistry,
                                                                    BatonCollector]:
    registry = CollectorRegistry(auto_describe=False)
    queue = QueueSnapshot(make_backend(config, process="exporter").queue_states, queue_ttl)
    collector = BatonCollector(config, open_ledger(config.ledger_url, read_only=True), queue)
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


class _Server(ThreadingWSGIServer):
    request_queue_size = LISTEN_QUEUE


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Prometheus scrapes every few seconds: no line per request."""


def listen(host: str, port: int, app: WSGIApp) -> WSGIServer:
    """A server bound to ``host:port`` (IPv4 or IPv6, as the host resolves), not yet
    serving; :class:`BatonError` naming the address when it cannot be had."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BatonError(f"exporter --host {host}: not a host name or address ({reason})"
                         ) from None
    server_class = type("MetricsServer", (_Server,), {"address_family": family})
    try:
        return make_server(host, port, app, server_class, handler_class=_QuietHandler)
    except OSError as exc:
        hint = {errno.EADDRINUSE: " (another process has it: choose another --port)",
                errno.EADDRNOTAVAIL: " (not an address of this machine: check --host)",
                errno.EACCES: " (ports below 1024 need privileges: choose another --port)",
                }.get(exc.errno or 0, "")
        raise BatonError(f"exporter cannot listen on {where}: {exc.strerror or exc}{hint}"
                         ) from None


def serve(config: Config, host: str, port: int, queue_ttl: float) -> None:
    registry, collector = build_registry(config, queue_ttl)
    try:
        httpd = listen(host, port, metrics_app(registry))
    except BatonError:
        collector.ledger.close()
        raise
    collector.snapshot.start()
    bound = httpd.server_address[1]
    log.info("baton exporter on http://%s:%d/metrics", host, bound)
    print(f"serving http://{host}:{bound}/metrics (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()  # until Ctrl-C
    finally:
        httpd.server_close()
        collector.ledger.close()
