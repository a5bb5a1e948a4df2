"""The ``baton`` command. Sub-commands import what they need when they run, so that
``baton`` starts fast on compute nodes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from baton.cli import campaign, config, db, signal, slurm, status, supervise, work
from baton.errors import BatonError

Handler = Callable[[argparse.Namespace], int]
GROUPS = (signal, work, status, campaign, db, slurm, supervise, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baton", description="Run and watch the training -> evaluation -> analysis "
        "pipeline on Slurm.")
    parser.add_argument("--config", help="baton.yaml to use (default: $BATON_CONFIG, "
                        "./baton.yaml, or the embedded defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["status", "report"]:  # the fast path: no config, no database
        from baton.status import main as report_main

        return report_main(argv[2:])
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except BatonError as exc:
        print(f"baton: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
