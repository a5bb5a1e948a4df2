"""``baton alerts``: the Prometheus alert rules rendered from the configuration in effect."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from baton.cli.common import config_from
from baton.errors import BatonError


def cmd_alerts_render(args: argparse.Namespace) -> int:
    from baton.alert_rules import render
    from baton.fsio import atomic_write

    text = render(config_from(args))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if not out.parent.is_dir():  # a rules file goes where Prometheus reads it: not made up
        raise BatonError(f"--out {out}: folder {out.parent} does not exist")
    try:
        atomic_write(out, text.encode())
    except OSError as exc:
        raise BatonError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    alerts = sub.add_parser("alerts", help="Prometheus alert rules").add_subparsers(
        dest="alerts_command", required=True, metavar="SUBCOMMAND")
    render = alerts.add_parser(
        "render", help="render the alert and recording rules from baton.yaml (its alerts "
        "section, stage time limits, sensor interval, status intervals)")
    render.add_argument("--out", metavar="FILE", help="write the rules to FILE (replaced "
                        "whole) instead of standard output; point Prometheus's rule_files "
                        "at it")
    render.set_defaults(func=cmd_alerts_render)
