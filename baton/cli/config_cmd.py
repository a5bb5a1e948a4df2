"""``baton config``: the configuration in effect."""

from __future__ import annotations

import argparse
import json

from baton.cli.common import config_from


def cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from baton.ledger import display_url

    config = config_from(args)
    doc = json.loads(config.model_dump_json())
    doc["database_url"] = display_url(config.ledger_url)  # the one in use, default included
    print(f"# from {config.source} and the environment")
    print(yaml.safe_dump(doc, sort_keys=False), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    cfg = sub.add_parser("config", help="the resolved configuration").add_subparsers(
        dest="config_command", required=True, metavar="SUBCOMMAND")
    cfg.add_parser("show", help="print the configuration in effect").set_defaults(
        func=cmd_config_show)
