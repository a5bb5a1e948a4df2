"""``baton status``: status reports from any script (``report`` is dispatched before
argparse, see ``baton.cli.main``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from baton.cli.common import config_from
from baton.errors import InvalidName
from baton.layout import validate_name
from baton.textsafe import printable


def cmd_status(args: argparse.Namespace) -> int:
    from baton.jobstatus.ingest import ingest
    from baton.ledger import open_ledger

    config = config_from(args)
    ledger = open_ledger(config.ledger_url)
    ingest(config.shared_drive, ledger)
    if args.status_command == "history":
        rows = ledger.status_history(args.project, args.job, args.limit)
    else:
        rows = ledger.last_reports()
    if not rows:
        print("no status reports")
    for r in rows:  # the reporters' text, shown escaped: a terminal must not obey it
        progress = "" if r.progress is None else f"{r.progress:5.1f}%"
        print(f"{r.reported_at:%Y-%m-%dT%H:%M:%SZ}  {printable(r.project):<20} "
              f"{printable(r.job):<24} {printable(r.status):<9} {progress:>6}  "
              f"{printable(r.message)}")
    return 0


def _count(value: str) -> int:
    """A number of reports to show: 1 to 2**31 - 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= n < 2**31:
        raise argparse.ArgumentTypeError(f"{value!r} is not between 1 and {2**31 - 1}")
    return n


def _name(what: str) -> Callable[[str], str]:
    """A project or job name as every report has one (anything else is a usage error)."""
    def check(value: str) -> str:
        try:
            return validate_name(value, what)
        except InvalidName as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return check


def register(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("status", help="status reports from any script").add_subparsers(
        dest="status_command", required=True, metavar="SUBCOMMAND")
    st.add_parser("report", help="report a status; never fails, returns within a second",
                  add_help=False)
    st.add_parser("list", help="each project's and job's last status").set_defaults(
        func=cmd_status)
    p = st.add_parser("history", help="every report of a project (and job)")
    p.add_argument("--project", required=True, type=_name("project"))
    p.add_argument("--job", type=_name("job"))
    p.add_argument("--limit", type=_count, default=200,
                   help="the latest this many reports (default 200)")
    p.set_defaults(func=cmd_status)

