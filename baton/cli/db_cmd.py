"""``baton db``: create, upgrade and check the ledger."""

from __future__ import annotations

import argparse

from baton.cli.common import config_from, safe_url


def cmd_db(args: argparse.Namespace) -> int:
    from baton.ledger import Ledger

    config = config_from(args)
    ledger = Ledger(config.ledger_url, create=args.db_command == "init")  # only init creates
    try:
        if args.db_command in ("init", "upgrade"):
            before, after = ledger.init()
            what = "created" if before is None else ("upgraded" if before != after
                                                     else "already at head")
            print(f"ledger {safe_url(config.ledger_url)}: {what} (schema {after})")
            return 0
        report = ledger.check()
        print(f"ledger {safe_url(config.ledger_url)}")
        print("\n".join(report.lines()))
        return 0 if report.ok else 1
    finally:
        ledger.close()


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the ledger database").add_subparsers(
        dest="db_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("init", "create the ledger (or bring it to the current schema)"),
                       ("upgrade", "apply pending schema migrations"),
                       ("check", "integrity and schema check; exit 1 on a problem")):
        db.add_parser(name, help=text).set_defaults(func=cmd_db)

