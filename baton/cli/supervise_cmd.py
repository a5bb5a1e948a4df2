"""``baton supervise``: see and steer the supervisor's repairs."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from baton.cli import argtypes
from baton.cli.common import config_from


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _resources(sup: Any) -> str:
    from baton.units import format_memory, format_time

    if sup.new_mem_mb is None:
        return "-"
    return f"{format_memory(sup.new_mem_mb)} {format_time(sup.new_time_s)}"


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from baton.ledger import open_ledger

    config = config_from(args)
    return config, open_ledger(config.ledger_url)


def cmd_list(args: argparse.Namespace) -> int:

    _, ledger = _open(args)
    rows = ledger.list_supervisions(limit=args.limit, stage=args.stage, experiment=args.experiment,
                                    open_only=args.open)
    if not rows:
        print("no supervisions")
        return 0
    print(f"{'ID':>4}  {'CREATED (UTC)':<19}  {'EXPERIMENT':<16} {'STAGE':<10} {'JOB':<9} "
          f"{'TRY':>3}  {'REASON':<12} {'ACTION':<8} {'DISPATCH':<10} {'REPAIR':<9} "
          f"EXECUTION")
    for r in rows:
        print(f"{r.id:>4}  {_when(r.created_at):<19}  {r.experiment[:16]:<16} {r.stage:<10} "
              f"{r.job_id or '-':<9} {r.attempt:>3}  {r.reason:<12} {r.action:<8} "
              f"{r.dispatch_status:<10} {r.repair_job_id or '-':<9} {r.execution_status}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from baton.errors import BatonError

    _, ledger = _open(args)
    r = ledger.supervision(args.id)
    if r is None:
        raise BatonError(f"no supervision {args.id} (baton supervise list shows them)")
    fields = [
        ("supervision", r.id), ("experiment", r.experiment), ("stage", r.stage),
        ("checkpoint", r.checkpoint or "-"),
        ("job", f"{r.job_id} (ledger row {r.job_row}, attempt {r.attempt})"),
        ("reason", r.reason), ("action", r.action), ("why", r.note or "-"),
        ("requested by", r.requested_by), ("new resources", _resources(r)),
        ("dispatch", r.dispatch_status + (f": {r.dispatch_error}" if r.dispatch_error
                                          else "")),
        ("repair job", f"{r.repair_job_id} (ledger row {r.repair_row}, attempt "
                       f"{r.attempt + 1})" if r.repair_row else "-"),
        ("execution", r.execution_status), ("created", _when(r.created_at)),
        ("dispatched", _when(r.dispatched_at)), ("finished", _when(r.finished_at)),
    ]
    for name, value in fields:
        print(f"{name + ':':<15}{value}")
    if r.script:
        print("script:\n" + "\n".join("  " + line for line in r.script.splitlines()))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from baton.slurm.factory import make_backend
    from baton.supervision.actions import retry

    config, ledger = _open(args)
    new = retry(config, ledger, make_backend(config, args.backend), args.id,
                mem_mb=args.mem, time_s=args.time)
    r = ledger.supervision(new)
    if r.dispatch_status != "dispatched":
        later = ("; the supervisor tries again on a later tick" if r.dispatch_status ==
                 "retrying" else "")
        print(f"supervision {new}: resubmitting job {r.job_id} failed: {r.dispatch_error}"
              f"{later}")
        return 1
    print(f"supervision {new}: job {r.job_id} resubmitted as job {r.repair_job_id} "
          f"(attempt {r.attempt + 1}, {_resources(r)})")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from baton.slurm.factory import make_backend
    from baton.supervision.actions import cancel

    config, ledger = _open(args)
    print(cancel(ledger, make_backend(config, args.backend), args.id))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("supervise", help="see and steer the repairs of failed and late "
                        "jobs").add_subparsers(dest="supervise_command", required=True,
                                               metavar="SUBCOMMAND")
    backend_help = "sbatch or local (default: slurm.backend in baton.yaml, auto)"
    p = sp.add_parser("list", help="supervisions, newest first")
    p.add_argument("--open", action="store_true",
                   help="only repairs in flight, late jobs, and give-ups and failed "
                   "dispatches not handled")
    p.add_argument("--stage", choices=["evaluation", "analysis"])
    p.add_argument("--experiment")
    p.add_argument("--limit", type=argtypes.count, default=50)
    p.set_defaults(func=cmd_list)
    p = sp.add_parser("show", help="one supervision: decision, rendered script, statuses")
    p.add_argument("id", type=argtypes.count, metavar="ID")
    p.set_defaults(func=cmd_show)
    p = sp.add_parser("retry", help="resubmit now as a new attempt, even if the policy "
                      "gave up")
    p.add_argument("id", type=argtypes.count, metavar="ID")
    p.add_argument("--mem", type=argtypes.memory_mb, help="memory for the new attempt, e.g. 64G")
    p.add_argument("--time", type=argtypes.time_s,
                   help="time limit for the new attempt, e.g. 04:00:00")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_retry)
    p = sp.add_parser("cancel", help="cancel the repair job (or the late job), or dismiss "
                      "a give-up")
    p.add_argument("id", type=argtypes.count, metavar="ID")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_cancel)
