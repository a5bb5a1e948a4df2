"""Serving the status pages with uvicorn: the socket bound here first (a port in use or a
host that is not this machine's is one line, not a traceback), TLS and basic auth from the
same web config as the exporter's, the ledger opened read-only."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import uvicorn

from baton.config import Config
from baton.ledger import open_ledger
from baton.listening import cannot_listen, family_of
from baton.web.app import build_app
from baton.webauth import Passwords, load_web_config, tls_context

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (IPv4 or IPv6, as the host resolves)."""
    family = family_of("web", host, port)
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise cannot_listen("web", host, port, exc) from None


def serve(config: Config, host: str, port: int, web_config: Path | None = None,
          root_path: str = "", refresh_seconds: float = 30) -> None:
    web = load_web_config(web_config) if web_config is not None else None
    tls = tls_context(web) if web is not None else None
    passwords = Passwords(web.users) if web is not None and web.users else None
    ledger = open_ledger(config.ledger_url, read_only=True)
    try:
        sock = bind(host, port)
        app = build_app(config, ledger, passwords, refresh_seconds)
        server = uvicorn.Server(uvicorn.Config(
            app, root_path=root_path, log_config=None, access_log=False, lifespan="off",
            server_header=False, timeout_keep_alive=10,
            ssl_context_factory=(lambda *_: tls) if tls is not None else None,
            ssl_certfile=str(web.tls.cert_file) if web and web.tls else None))
        bound = sock.getsockname()[1]
        url = f"{'https' if tls else 'http'}://{host}:{bound}/"
        auth = " (basic auth)" if passwords else ""
        proxied = f" (links under {root_path}/, for a proxy)" if root_path else ""
        log.info("baton web on %s%s%s", url, auth, proxied)
        print(f"serving {url}{auth}{proxied} (Ctrl-C stops)", flush=True)
        server.run(sockets=[sock])
    finally:
        ledger.close()
