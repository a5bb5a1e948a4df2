"""``baton signal``: validate signal files, list quarantined ones, write signals from a shell."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from baton.cli import argtypes
from baton.cli.common import config_from
from baton.errors import BatonError


def cmd_signal_validate(args: argparse.Namespace) -> int:
    from baton.layout import DriveLayout
    from baton.signals import read_signal

    drive = DriveLayout(Path(args.drive)) if args.drive else config_from(args).drive
    failures = 0
    for file in args.files:
        try:
            sf = read_signal(file, drive, kind=args.kind)
        except BatonError as exc:
            print(f"REJECTED {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"ok {file}: {sf.kind} for experiment {sf.signal.experiment!r} "
              f"(key {sf.idempotency_key})")
    return 1 if failures else 0


def cmd_signal_quarantined(args: argparse.Namespace) -> int:
    from baton.ledger import open_ledger

    rows = open_ledger(config_from(args).ledger_url).quarantined(limit=args.limit)
    if not rows:
        print("no quarantined signals")
    for r in rows:
        print(f"{r.seen_at:%Y-%m-%dT%H:%M:%SZ}  {r.kind:<18} {r.path}\n    {r.reason}")
    return 0


def cmd_signal_training_complete(args: argparse.Namespace) -> int:
    """The hook's work; a signal the sensors would refuse is not written, and why is the
    command's error (exit 1)."""
    from baton.hook import announce_training

    path = announce_training(args.experiment, args.checkpoint, campaign=args.campaign,
                             campaign_type=args.campaign_type,
                             final_loss=args.final_loss, total_steps=args.total_steps,
                             num_epochs=args.num_epochs, config_path=args.config_path,
                             git_commit=args.git_commit, mlflow_run_id=args.mlflow_run_id,
                             checkpoints=args.extra_checkpoint, config=config_from(args))
    print(path)
    return 0


def cmd_signal_analysis_complete(args: argparse.Namespace) -> int:
    """Announce an analysis; a signal the analysis sensor would quarantine (a report or
    output off the drive) is not written, and why is the command's error."""
    from pydantic import ValidationError

    from baton.evaluate.harness import job_tag
    from baton.inbox import publish
    from baton.signals import AnalysisComplete, check_signal, describe_validation_error, utcnow

    config = config_from(args)
    exp = config.drive.experiment(args.experiment)
    try:
        signal = AnalysisComplete(
            timestamp=utcnow(), experiment=args.experiment, job_id=job_tag(),
            status=args.status,
            report_path=str(Path(args.report).resolve()) if args.report else None,
            outputs=[str(Path(o).resolve()) for o in args.output or []] or None,
            error_message=args.error)
    except ValidationError as exc:
        raise BatonError(f"analysis signal of {args.experiment!r}: "
                         f"{describe_validation_error(exc)}") from None
    target = Path(os.environ.get("BATON_SIGNAL_DIR") or exp.reports_dir) / ".analysis_complete"
    check_signal(target, signal, config.drive)
    try:
        print(publish(config.drive, signal, target))
    except OSError as exc:
        raise BatonError(f"{target}: could not be written: {exc.strerror or exc}") from None
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sig = sub.add_parser("signal", help="validate signal files, list quarantined ones")
    sig = sig.add_subparsers(dest="signal_command", required=True, metavar="SUBCOMMAND")
    p = sig.add_parser("validate", help="check signal files strictly; exit 1 if any is bad")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--kind", choices=["training_complete", "eval_complete", "eval_failed",
                                      "analysis_complete"],
                   help="the signal kind when the file name does not tell it")
    p.add_argument("--drive", help="the shared drive (default: SHARED_DRIVE / baton.yaml)")
    p.set_defaults(func=cmd_signal_validate)
    p = sig.add_parser("quarantined", help="signals the watcher rejected, and why")
    p.add_argument("--limit", type=argtypes.count, default=50,
                   help="at most this many, newest first (default: %(default)s)")
    p.set_defaults(func=cmd_signal_quarantined)

    p = sig.add_parser("training-complete", help="the training hook from a shell: write "
                       ".training_complete atomically and log to MLflow; never fails the caller "
                       "for MLflow")
    p.add_argument("--experiment", required=True)
    p.add_argument("--checkpoint", required=True, help="the final checkpoint folder")
    p.add_argument("--extra-checkpoint", action="append",
                   help="an intermediate checkpoint to evaluate too (repeatable)")
    p.add_argument("--campaign")
    p.add_argument("--campaign-type", help="the campaign's type (baton.yaml campaigns.types)")
    p.add_argument("--final-loss", type=float)
    p.add_argument("--total-steps", type=int)
    p.add_argument("--num-epochs", type=int)
    p.add_argument("--config-path")
    p.add_argument("--git-commit")
    p.add_argument("--mlflow-run-id")
    p.set_defaults(func=cmd_signal_training_complete)

    p = sig.add_parser("analysis-complete", help="announce an analysis another tool did "
                       "(e.g. an R targets pipeline)")
    p.add_argument("--experiment", required=True)
    p.add_argument("--report", help="the report file (HTML or PDF)")
    p.add_argument("--output", action="append", help="another output file (repeatable)")
    p.add_argument("--status", choices=["complete", "failed"], default="complete")
    p.add_argument("--error", help="what went wrong, with --status failed")
    p.set_defaults(func=cmd_signal_analysis_complete)

