"""``baton status``: status reports from any script (``report`` is dispatched before
argparse, see ``baton.cli.main``)."""

from __future__ import annotations

import argparse
import sys

from baton.cli import argtypes
from baton.cli.common import config_from
from baton.textsafe import printable


def cmd_status(args: argparse.Namespace) -> int:
    """Ingest the spool, then show the ledger's reports; a spool that cannot be read now,
    or files set aside, are said on stderr and what the ledger holds is still shown."""
    from baton.jobstatus.ingest import ingest, set_aside_files
    from baton.jobstatus.report import drive_spool, rejected_folder
    from baton.ledger import open_ledger

    config = config_from(args)
    ledger = open_ledger(config.ledger_url)
    drive = config.shared_drive
    try:
        ingest(drive, ledger)
        waiting = set_aside_files(drive)
    except OSError as exc:
        warn(f"the spool {drive_spool(drive)} was not ingested now: {exc}")
    else:
        if waiting:
            warn(f"{waiting} status report file(s) could not be ingested: they wait in "
                 f"{rejected_folder(drive)}, each with a .reason")
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


def warn(text: str) -> None:
    """One line on stderr, escaped: it may hold names from the drive."""
    print(f"baton: warning: {printable(text)}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("status", help="status reports from any script").add_subparsers(
        dest="status_command", required=True, metavar="SUBCOMMAND")
    st.add_parser("report", help="report a status; never fails, returns within a second",
                  add_help=False)
    st.add_parser("list", help="each project's and job's last status").set_defaults(
        func=cmd_status)
    p = st.add_parser("history", help="every report of a project (and job)")
    p.add_argument("--project", required=True, type=argtypes.name("project"))
    p.add_argument("--job", type=argtypes.name("job"))
    p.add_argument("--limit", type=argtypes.count, default=200,
                   help="the latest this many reports (default 200)")
    p.set_defaults(func=cmd_status)

