"""``baton web``: the read-only status pages (experiments, queue, failures, status reports,
campaigns, job logs) served from the ledger."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from baton.cli.argtypes import usage_error, whole
from baton.cli.common import config_from


def cmd_web(args: argparse.Namespace) -> int:
    from baton.web.serving import serve

    serve(config_from(args), args.host, args.port, args.web_config, args.root_path,
          args.refresh)
    return 0


@usage_error
def root_path(value: str) -> str:
    """A URL path prefix such as /baton (what a reverse proxy serves the pages under)."""
    if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        raise ValueError(f"{value!r} is not a path prefix like /baton (no trailing slash)")
    return value


@usage_error
def seconds(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 86400:
        raise ValueError(f"{value!r} is not between 0 (never) and 86400 seconds")
    return number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="serve read-only status pages of experiments, the queue, "
                       "failures, status reports, campaigns and job logs")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on "
                   "(default 127.0.0.1)")
    p.add_argument("--port", type=whole(0, 65535), default=8090, help="port (default 8090)")
    p.add_argument("--web-config", type=Path, help="TLS and basic auth, in the format of "
                   "Prometheus' exporter-toolkit (the same file as `baton exporter`'s)")
    p.add_argument("--root-path", type=root_path, default="",
                   help="the path prefix a reverse proxy serves the pages under, e.g. /baton")
    p.add_argument("--refresh", type=seconds, default=30.0,
                   help="seconds between live updates of a page's table (0: none; default 30)")
    p.set_defaults(func=cmd_web)
