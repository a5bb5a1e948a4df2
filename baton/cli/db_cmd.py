"""``baton db``: create, upgrade and check the ledger (``init`` also lays out the drive)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from baton.cli.common import config_from, safe_url

if TYPE_CHECKING:
    from baton.layout import DriveLayout


def cmd_db(args: argparse.Namespace) -> int:
    from baton.ledger import Ledger

    config = config_from(args)
    if args.db_command == "init":  # the drive first: a site it cannot set up gets no ledger
        print(_lay_out(config.drive))
    ledger = Ledger(config.ledger_url, create=args.db_command == "init")  # only init creates
    try:
        if args.db_command in ("init", "upgrade"):
            before, after = ledger.init()
            what = "created" if before is None else ("upgraded" if before != after
                                                     else "already at head")
            print(f"ledger {safe_url(config.ledger_url)}: {what} (schema {after})")
            return 0
        ledger.revision()  # a missing or unreachable ledger: one line, not a report
        report = ledger.check()
        print(f"ledger {safe_url(config.ledger_url)}")
        print("\n".join(report.lines()))
        return 0 if report.ok else 1
    finally:
        ledger.close()


def _lay_out(drive: DriveLayout) -> str:
    """Create the drive's folders where they are missing (the first job's log folder among
    them); returns what was done, in words."""
    from baton.errors import BatonError

    missing = [f for f in drive.top_level() if not f.is_dir()]
    try:
        drive.create()
    except OSError as exc:
        where = exc.filename or drive.root
        raise BatonError(f"cannot lay out the shared drive {drive.root}: {where}: "
                         f"{exc.strerror or exc}") from None
    return (f"drive {drive.root}: created {len(missing)} folder(s) of its layout" if missing
            else f"drive {drive.root}: layout present")


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the ledger database").add_subparsers(
        dest="db_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("init", "create the ledger (or bring it to the current schema) and "
                                "the shared drive's folders where they are missing"),
                       ("upgrade", "apply pending schema migrations"),
                       ("check", "integrity and schema check; exit 1 on a problem")):
        db.add_parser(name, help=text).set_defaults(func=cmd_db)

