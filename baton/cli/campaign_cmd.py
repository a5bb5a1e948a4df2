"""``baton campaign``: the curators' control plane (list, activate, deactivate, set)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from baton.cli import argtypes
from baton.cli.common import config_from
from baton.errors import BatonError
from baton.textsafe import printable, unstorable

DISPLAY_NAME_LIMIT = 255  # characters: the ledger's column
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1


def _when(value: str) -> datetime:
    """ISO 8601 date or time; UTC when no zone is given (the ledger keeps UTC, so it must
    have one: 0001-01-01T00:00+05:00 has none)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2026-12-24 or "
            "2026-12-24T18:00:00+01:00)") from None
    try:
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{value!r} is out of range in UTC") from None


def _text(limit: int | None = None) -> Callable[[str], str]:
    """Curator text shown on one line of a table and a dashboard: valid UTF-8, no control
    character (a terminal would obey it), at most ``limit`` characters."""
    def check(value: str) -> str:
        problem = unstorable(value)
        if problem is None and (control := _CONTROL.search(value)):
            problem = (f"contains a control character ({printable(control.group())}) at "
                       f"position {control.start()}")
        if problem is None and limit is not None and len(value) > limit:
            problem = f"has {len(value)} characters, at most {limit} are kept"
        if problem:
            raise argparse.ArgumentTypeError(f"'{printable(value)[:60]}' {problem}")
        return value
    return check


def _day(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d}" if when else "-"


def cmd_list(args: argparse.Namespace) -> int:
    from baton.exporter.dashboard import dashboard_state
    from baton.ledger import open_ledger
    from baton.ledger.campaigns import completion

    ledger = open_ledger(config_from(args).ledger_url)
    if args.unknown:
        rows = ledger.unknown_types_seen()
        if not rows:
            print("no unknown campaign types")
        for u in rows:  # text from signals and the curators, shown escaped
            print(f"{printable(u.type):<16} campaign {printable(u.tag):<24} seen "
                  f"{u.occurrences}x, last {u.last_seen:%Y-%m-%dT%H:%M:%SZ}  "
                  f"({printable(u.source)})")
        return 0
    rows = ledger.list_campaigns(active_only=not args.all)
    if not rows:
        print("no active campaigns (see all with --all; activate with `baton campaign "
              "activate TAG`)" if not args.all else "no campaigns registered yet")
        return 0
    done = completion(rows, ledger.campaign_progress(dashboard_state, keep=lambda _: False))
    print(f"{'PRI':>4}  {'CAMPAIGN':<24} {'TYPE':<10} {'ACTIVE':<7} {'DONE':>11} "
          f"{'%':>5}  {'STARTED':<10} {'END':<10}  NAME / NOTES")
    for r in rows:
        finished, expected = done[(r.tag, r.type)]
        pct = f"{100 * finished / expected:.0f}" if expected else "-"
        text = printable(" / ".join(t for t in (r.display_name, r.notes) if t))
        print(f"{r.priority:>4}  {printable(r.tag):<24} {printable(r.type):<10} "
              f"{'yes' if r.active else 'no':<7} "
              f"{f'{finished}/{expected}':>11} {pct:>5}  {_day(r.started_at):<10} "
              f"{_day(r.expected_end):<10}  {text}")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    from baton.ledger import open_ledger

    values: dict[str, Any] = {}
    if args.campaign_command == "activate":
        values["active"] = True
    elif args.campaign_command == "deactivate":
        values["active"] = False
    else:
        for key in ("display_name", "priority", "started_at", "expected_end",
                    "expected_jobs"):
            if getattr(args, key) is not None:
                values[key] = getattr(args, key)
        if args.note is not None:
            values["notes"] = args.note or None
        if not values:
            raise BatonError("nothing to set: give --display-name, --priority, --note, "
                             "--started, --expected-end or --expected-jobs")
    ledger = open_ledger(config_from(args).ledger_url)
    for r in ledger.update_campaign(args.tag, args.type, **values):
        print(f"campaign {printable(r.tag)} ({printable(r.type)}): "
              f"{'active' if r.active else 'inactive'}, priority {r.priority}"
              + (f", expected jobs {r.expected_jobs}" if r.expected_jobs is not None else "")
              + (f", '{printable(r.display_name)}'" if r.display_name else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    camp = sub.add_parser("campaign", help="the campaign control plane: what the dashboards "
                          "show, in which order").add_subparsers(
        dest="campaign_command", required=True, metavar="SUBCOMMAND")
    p = camp.add_parser("list", help="active campaigns in priority order, with completion")
    p.add_argument("--all", action="store_true", help="inactive campaigns too")
    p.add_argument("--unknown", action="store_true",
                   help="campaign types seen in signals but not in baton.yaml campaigns.types")
    p.set_defaults(func=cmd_list)
    for name, text in (("activate", "show a campaign on the dashboards"),
                       ("deactivate", "hide a campaign from the dashboards")):
        p = camp.add_parser(name, help=text)
        p.add_argument("tag", type=argtypes.name("campaign"))
        p.add_argument("--type", type=argtypes.name("campaign type"),
                       help="only this type of the campaign (default: all)")
        p.set_defaults(func=cmd_set)
    p = camp.add_parser("set", help="display name, priority, note, dates, expected jobs")
    p.add_argument("tag", type=argtypes.name("campaign"))
    p.add_argument("--type", type=argtypes.name("campaign type"),
                   help="only this type of the campaign (default: all)")
    p.add_argument("--display-name", dest="display_name", type=_text(DISPLAY_NAME_LIMIT),
                   help=f"one line of text, at most {DISPLAY_NAME_LIMIT} characters")
    p.add_argument("--priority", type=argtypes.integer, help="lower shows first (default 0)")
    p.add_argument("--note", type=_text(), help="one line of free text shown by `baton "
                   "campaign list` ('' clears it)")
    p.add_argument("--started", dest="started_at", type=_when, help="ISO date or time")
    p.add_argument("--expected-end", dest="expected_end", type=_when, help="ISO date or time")
    p.add_argument("--expected-jobs", dest="expected_jobs", type=argtypes.non_negative,
                   help="jobs the campaign should run (default: one per experiment and "
                   "stage, one evaluation per checkpoint)")
    p.set_defaults(func=cmd_set)
