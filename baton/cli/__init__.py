"""The ``baton`` command. Sub-commands import what they need when they run, so that
``baton`` starts fast on compute nodes."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from baton.cli import (
    alerts_cmd,
    campaign_cmd,
    config_cmd,
    db_cmd,
    logs_cmd,
    plan_cmd,
    signal_cmd,
    slurm_cmd,
    status_cmd,
    supervise_cmd,
    web_cmd,
    work_cmd,
)
from baton.errors import BatonError
from baton.textsafe import printable

Handler = Callable[[argparse.Namespace], int]
GROUPS = (signal_cmd, work_cmd, status_cmd, campaign_cmd, db_cmd, slurm_cmd, logs_cmd,
          supervise_cmd, config_cmd, plan_cmd, alerts_cmd, web_cmd)


class Parser(argparse.ArgumentParser):
    """argparse's usage errors quote the bad value: shown escaped, it cannot forge lines."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="baton", description="Run and watch the training -> evaluation -> analysis "
        "pipeline on Slurm.")
    parser.add_argument("--config", help="baton.yaml to use (default: $BATON_CONFIG, "
                        "./baton.yaml, or the embedded defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def status_report_args(argv: list[str]) -> list[str] | None:
    """The arguments of ``status report`` when ``argv`` asks for it, after any global
    options (``--config X``, ``--config=X``, ``-v``, abbreviations argparse accepts); else
    None. The report takes its drive from ``--drive`` or ``$SHARED_DRIVE`` only: it reads
    no configuration, so the global options do not change what it does."""
    i = 0
    while i < len(argv):
        name, has_value, _ = argv[i].partition("=")
        if re.fullmatch(r"-v+", argv[i]) or (len(name) > 2 and not has_value
                                              and "--verbose".startswith(name)):
            i += 1
        elif len(name) > 2 and "--config".startswith(name):
            i += 1 if has_value else 2
        else:
            break
    return argv[i + 2:] if argv[i:i + 2] == ["status", "report"] else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    report_args = status_report_args(argv)
    if report_args is not None:  # the fast path: no config, no database; never fails
        from baton.jobstatus.report import main as report_main

        return report_main(report_args)
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except BatonError as exc:  # one line, whatever the input it names holds
        print(f"baton: error: {printable(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
