"""``baton db``: create, upgrade and check the ledger (``init`` also lays out the drive);
rebuild a lost ledger's history from the drive and Slurm's accounting, or adopt the
drive's results as the past of a new one; back it up and restore it, archive its settled
history, VACUUM it, and prune Slurm's logs (baton/maintenance; the same functions run
on the Dagster schedules of schedules/)."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from baton.cli import argtypes
from baton.cli.common import config_from

if TYPE_CHECKING:
    from baton.layout import DriveLayout


def cmd_db(args: argparse.Namespace) -> int:
    from baton.ledger import Ledger, display_url

    config = config_from(args)
    if args.db_command == "init":  # the drive first: a site it cannot set up gets no ledger
        print(_lay_out(config.drive))
    ledger = Ledger(config.ledger_url, create=args.db_command == "init")  # only init creates
    try:
        if args.db_command in ("init", "upgrade"):
            before, after = ledger.init()
            what = "created" if before is None else ("upgraded" if before != after
                                                     else "already at head")
            print(f"ledger {display_url(config.ledger_url)}: {what} (schema {after})")
            return 0
        ledger.revision()  # a missing or unreachable ledger: one line, not a report
        report = ledger.check()
        print(f"ledger {display_url(config.ledger_url)}")
        print("\n".join(report.lines()))
        return 0 if report.ok else 1
    finally:
        ledger.close()


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Replay the drive's signals and scripts, matched with accounting, into a ledger
    that holds no job (``baton db init`` makes one); submits nothing."""
    from baton.ledger import display_url, open_ledger
    from baton.pipeline.recovery import rebuild_ledger
    from baton.slurm.factory import make_backend

    config = config_from(args)
    ledger = open_ledger(config.ledger_url)
    try:
        report = rebuild_ledger(config, ledger, make_backend(config))
    finally:
        ledger.close()
    print(f"ledger {display_url(config.ledger_url)}: rebuilt from {config.drive.root} and "
          "Slurm's accounting")
    print("\n".join(report.lines()))
    return 1 if report.skipped else 0


def cmd_adopt(args: argparse.Namespace) -> int:
    """Release experiments the daemon holds (the drive has results the ledger does not
    know): they are evaluated again, as new."""
    from baton.errors import BatonError
    from baton.ledger import open_ledger

    if bool(args.all) == bool(args.experiments):
        raise BatonError("name the experiments to adopt, or --all for the whole drive")
    config = config_from(args)
    ledger = open_ledger(config.ledger_url)
    try:
        new = ledger.adopt(None if args.all else args.experiments)
    finally:
        ledger.close()
    what = "the whole drive" if args.all else ", ".join(args.experiments)
    print(f"adopted {what}: the daemon evaluates its experiments as new" if new else
          f"{what}: already adopted")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from baton.maintenance.backups import backup

    result = backup(config_from(args), args.to)
    print(f"backed up to {result.path} ({result.size} bytes, verified)")
    if result.removed:
        print(f"rotated out {len(result.removed)} older backup(s)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from baton.ledger import display_url
    from baton.maintenance.backups import restore

    config = config_from(args)
    revision, note = restore(config, args.file, force=args.force)
    print(f"ledger {display_url(config.ledger_url)}: restored from {args.file} (schema "
          f"{revision})" + (f"; {note}" if note else ""))
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from baton.maintenance.archive import archive

    config = config_from(args)
    older = args.older_than or timedelta(days=config.retention.archive_after_days)
    result = archive(config, older, vacuum=not args.no_vacuum)
    print("\n".join(result.lines()))
    return 0


def cmd_vacuum(args: argparse.Namespace) -> int:
    from baton.maintenance.vacuum import vacuum

    before, after = vacuum(config_from(args))
    print(f"ledger vacuumed: {before} -> {after} bytes")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from baton.maintenance.logprune import prune

    print(prune(config_from(args)).line())
    return 0


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([hdw])$")


@argtypes.usage_error
def age(value: str) -> timedelta:
    """An age: a number and h, d or w (``90d``)."""
    m = _AGE.match(value.strip())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not an age above 0 like 90d, 12h or 2w")
    unit = {"h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: float(m.group(1))})


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
    db.add_parser("rebuild", help="rebuild a lost ledger's history (jobs, evaluations, "
                  "analyses) from the shared drive and Slurm's accounting, into a ledger "
                  "that holds no job; submits nothing").set_defaults(func=cmd_rebuild)
    adopt = db.add_parser("adopt", help="release experiments the daemon holds because the "
                          "drive has results the ledger does not know: evaluate them again")
    adopt.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                       type=argtypes.name("experiment name"))
    adopt.add_argument("--all", action="store_true",
                       help="adopt the whole drive, every experiment held now or later")
    adopt.set_defaults(func=cmd_adopt)

    _register_upkeep(db)


def _register_upkeep(db: argparse._SubParsersAction) -> None:
    backup = db.add_parser("backup", help="copy the ledger while it is in use (SQLite's "
                           "backup API, pg_dump for PostgreSQL), verify the copy and rotate "
                           "the folder (backup.keep_daily, backup.keep_weekly)")
    backup.add_argument("--to", type=Path, metavar="DIR",
                        help="the folder (default: backup.dir)")
    backup.set_defaults(func=cmd_backup)
    restore = db.add_parser("restore", help="replace the ledger with a backup, all or "
                            "nothing; refuses while a daemon's sensors tick on it")
    restore.add_argument("file", type=Path, metavar="FILE")
    restore.add_argument("--force", action="store_true",
                         help="restore even though a daemon seems to use the ledger")
    restore.set_defaults(func=cmd_restore)
    arch = db.add_parser("archive", help="move settled history (finished jobs and their "
                         "rows, old status events, signals whose files are gone) to Parquet "
                         "under the state folder, still shown by `baton sql`; then VACUUM")
    arch.add_argument("--older-than", type=age, metavar="AGE", default=None,
                      help="settled before this long ago, e.g. 90d (default: "
                           "retention.archive_after_days)")
    arch.add_argument("--no-vacuum", action="store_true", help="skip the VACUUM after it")
    arch.set_defaults(func=cmd_archive)
    db.add_parser("vacuum", help="give the space of deleted rows back (VACUUM; VACUUM "
                  "ANALYZE on PostgreSQL)").set_defaults(func=cmd_vacuum)
    db.add_parser("prune", help="compress, then delete, the Slurm logs of successful jobs, "
                  "and their scripts once archived (retention.logs_compress_after_days, "
                  "logs_delete_after_days); failures' are kept").set_defaults(func=cmd_prune)
