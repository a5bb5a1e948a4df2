"""``baton slurm``: submit, inspect and cancel jobs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from baton.cli import argtypes
from baton.cli.common import config_from
from baton.errors import BatonError


def cmd_slurm_submit(args: argparse.Namespace) -> int:
    from baton.ledger import open_ledger
    from baton.pipeline.submission import submit_jobs
    from baton.slurm.factory import make_backend

    if (wrong := _usage_problem(args)) is not None:
        args.parser.error(wrong)
    config = config_from(args)
    backend = make_backend(config, args.backend)
    if args.script:
        if args.campaign:
            raise BatonError("--campaign is for stage jobs (--stage), which the ledger "
                             "records; a script is submitted as it is")
        return _submit_script(args, config, backend)
    items = [(e, args.checkpoint or "") for e in args.experiment]
    ledger = open_ledger(config.ledger_url)
    # a stage job by hand answers each experiment's latest training generation
    generations = {e: run.generation for e in args.experiment
                   if (run := ledger.training_run(e)) is not None and run.generation}
    outcomes = submit_jobs(config, ledger, backend, args.stage, items, attempt=args.attempt or 1,
                           campaign=args.campaign, mem=args.mem, time=args.time,
                           generations=generations)
    code = 0
    for o in outcomes:
        if o.job_id is None:  # another submitter holds the claim and has no job id yet
            print(f"{o.experiment}: not submitted: ledger row {o.row_id} holds this "
                  "submission, still being submitted by another process", file=sys.stderr)
            code = 1
            continue
        verb = "submitted" if o.submitted_now else "already submitted"
        print(f"{o.experiment}: {verb} as job {o.job_id} ({backend.name}, ledger row "
              f"{o.row_id})")
    return code


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What the command line asks that one kind of submission would silently ignore, in
    words (argparse's usage error); None when every option given is used."""
    if args.script and args.stage:
        return "give a script or --stage, not both"
    if args.script:
        given = [o for o, v in (("--experiment", args.experiment),
                                ("--checkpoint", args.checkpoint),
                                ("--attempt", args.attempt)) if v is not None]
        return f"{', '.join(given)}: for stage jobs (--stage), not a script" if given else None
    if not args.stage:
        return "give a script, or --stage and --experiment"
    if not args.experiment:
        return "--stage needs --experiment"
    if args.array:
        return "--array is for a script; a stage job becomes an array by repeating " \
               "--experiment"
    if args.partition:
        return "--partition is for a script; a stage job's partition is set in baton.yaml " \
               "(stages.STAGE.partition or slurm.partition)"
    if args.stage == "analysis" and args.checkpoint:
        return "--checkpoint is for the evaluation stage; an analysis takes none"
    return None


def _submit_script(args: argparse.Namespace, config, backend) -> int:
    """Submit a plain script and record it in the ledger (a row per job or array task, of
    stage ``script``), so that ``baton slurm status`` and the tracker follow it."""
    import secrets

    from baton.ledger import open_ledger
    from baton.ledger.slurm_jobs import SCRIPT_STAGE
    from baton.slurm.spec import spec_from_script

    path = Path(args.script)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatonError(f"{path}: cannot read script: {exc}") from None
    spec = spec_from_script(text, default_name=path.stem, time=args.time, mem=args.mem,
                            array=args.array, partition=args.partition or
                            config.slurm.partition, account=config.slurm.account)
    ledger = open_ledger(config.ledger_url)  # before Slurm hears of it: nothing unrecorded
    token = f"baton-{secrets.token_hex(10)}"
    if spec.comment is None:  # to find the job again if this process dies before recording
        spec = spec.with_(comment=token)
    tasks = spec.array_tasks or [None]
    rows = [ledger.claim_submission(
        f"{SCRIPT_STAGE}:{token}" + ("" if task is None else f":{task}"),
        stage=SCRIPT_STAGE, experiment="", backend=backend.name, req_cpus=spec.cpus,
        req_mem_mb=spec.mem_mb, req_time_s=spec.time_seconds,
        metadata={"script": str(path.resolve()), "name": spec.name}).row_id for task in tasks]
    if spec.comment == token:
        ledger.note_token(rows, token)
    try:
        submitted = backend.submit(spec, path.resolve())
    except (BatonError, OSError) as exc:
        for row_id in rows:
            ledger.mark_submit_failed(row_id, str(exc))
        raise
    for row_id, job_id, task in zip(rows, submitted.ids(), tasks, strict=True):
        ledger.mark_submitted(row_id, job_id, script_path=str(path.resolve()),
                              array_job_id=None if task is None else submitted.job_id,
                              array_task_id=task)
    print(submitted.job_id)
    return 0


def cmd_slurm_status(args: argparse.Namespace) -> int:
    from baton.ledger import open_ledger
    from baton.slurm.factory import make_backend

    config = config_from(args)
    backend = make_backend(config, args.backend)
    ids = args.job_ids
    if not ids:
        ids = [r.job_id for r in open_ledger(config.ledger_url).unfinished_jobs()]
    statuses = backend.status(ids)
    if args.json:
        print(json.dumps({k: _status_doc(v) for k, v in statuses.items()}, indent=2))
    elif statuses:
        print(f"{'JOBID':<14}{'STATE':<15}{'EXIT':<7}{'NODE':<14}{'MAXRSS':>10}  NAME")
        for jid, s in statuses.items():
            exit_ = "" if s.exit_code is None else f"{s.exit_code}:{s.exit_signal or 0}"
            rss = "" if s.max_rss_mb is None else f"{s.max_rss_mb:.0f}M"
            print(f"{jid:<14}{s.state:<15}{exit_:<7}{s.node or '':<14}{rss:>10}  "
                  f"{s.name or ''}")
    elif not ids:
        print("no jobs")
    unknown = [j for j in args.job_ids if not _answered(j, statuses)]
    if unknown:
        raise BatonError(f"no such job(s): {' '.join(unknown)} (Slurm does not know them)")
    return 0


def _answered(job_id: str, statuses: dict) -> bool:
    """``job_id`` is answered for: itself, or (an array asked for as a whole) its tasks."""
    return job_id in statuses or any(
        s.array_job_id == job_id or s.raw_job_id == job_id for s in statuses.values())


def _status_doc(status) -> dict:
    from dataclasses import asdict

    return {k: v.isoformat() if hasattr(v, "isoformat") else v
            for k, v in asdict(status).items()}


def cmd_slurm_cancel(args: argparse.Namespace) -> int:
    from baton.slurm.factory import make_backend

    backend = make_backend(config_from(args), args.backend)
    refused = backend.cancel(args.job_ids) or {}
    accepted = [j for j in args.job_ids if j not in refused]
    if accepted:
        print(f"cancel requested: {' '.join(accepted)}")
    if refused:
        raise BatonError("not cancelled: " + "; ".join(
            f"{j} ({why})" for j, why in refused.items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sl = sub.add_parser("slurm", help="submit, inspect and cancel jobs").add_subparsers(
        dest="slurm_command", required=True, metavar="SUBCOMMAND")
    backend_help = "sbatch or local (default: slurm.backend in baton.yaml, auto)"
    p = sl.add_parser("submit", help="submit a script, or a stage job rendered from its "
                      "template (recorded in the ledger)")
    p.add_argument("script", nargs="?", help="a batch script with #SBATCH directives")
    p.add_argument("--stage", choices=["evaluation", "analysis"])
    p.add_argument("--experiment", action="append", type=argtypes.name("experiment"),
                   help="repeat for an array job")
    p.add_argument("--checkpoint", help="checkpoint to evaluate (evaluation stage; an "
                   "existing path on the shared drive)")
    p.add_argument("--attempt", type=argtypes.count,
                   help="the attempt, from 1 (default: 1)")
    p.add_argument("--campaign", type=argtypes.name("campaign"),
                   help="the campaign the job belongs to (registered, inactive, if new)")
    p.add_argument("--time", type=argtypes.time_limit, help="time limit, e.g. 02:00:00 (not 0)")
    p.add_argument("--mem", type=argtypes.memory_request, help="memory, e.g. 32G (not 0)")
    p.add_argument("--array", help="array spec for a script, e.g. 0-9%%2")
    p.add_argument("--partition")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_slurm_submit, parser=p)
    p = sl.add_parser("status", help="state of jobs (default: the ledger's unfinished jobs)")
    p.add_argument("job_ids", nargs="*", metavar="JOBID")
    p.add_argument("--json", action="store_true")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_slurm_status)
    p = sl.add_parser("cancel", help="cancel jobs")
    p.add_argument("job_ids", nargs="+", metavar="JOBID")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_slurm_cancel)

