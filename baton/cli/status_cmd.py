"""``baton status``: status reports from any script (``report`` is dispatched before
argparse, see ``baton.cli.main``)."""

from __future__ import annotations

import argparse

from baton.cli.common import config_from


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
    for r in rows:
        progress = "" if r.progress is None else f"{r.progress:5.1f}%"
        print(f"{r.reported_at:%Y-%m-%dT%H:%M:%SZ}  {r.project:<20} {r.job:<24} "
              f"{r.status:<9} {progress:>6}  {r.message or ''}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("status", help="status reports from any script").add_subparsers(
        dest="status_command", required=True, metavar="SUBCOMMAND")
    st.add_parser("report", help="report a status; never fails, returns within a second",
                  add_help=False)
    st.add_parser("list", help="each project's and job's last status").set_defaults(
        func=cmd_status)
    p = st.add_parser("history", help="every report of a project (and job)")
    p.add_argument("--project", required=True)
    p.add_argument("--job")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_status)

