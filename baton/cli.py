"""The ``baton`` command. Sub-commands import what they need when they run, so that
``baton`` starts fast on compute nodes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from baton.errors import BatonError

Handler = Callable[[argparse.Namespace], int]


def _config(args: argparse.Namespace):
    from baton.config import load_config
    from baton.logs import setup_logging

    config = load_config(getattr(args, "config", None))
    setup_logging(config.logging, verbose=getattr(args, "verbose", False))
    return config


# --- baton signal ------------------------------------------------------------------------
def cmd_signal_validate(args: argparse.Namespace) -> int:
    from baton.layout import DriveLayout
    from baton.signals import read_signal

    drive = DriveLayout(Path(args.drive)) if args.drive else _config(args).drive
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

    rows = open_ledger(_config(args).ledger_url).quarantined(limit=args.limit)
    if not rows:
        print("no quarantined signals")
    for r in rows:
        print(f"{r.seen_at:%Y-%m-%dT%H:%M:%SZ}  {r.kind:<18} {r.path}\n    {r.reason}")
    return 0


# --- baton db ----------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace) -> int:
    from baton.ledger import Ledger

    config = _config(args)
    ledger = Ledger(config.ledger_url)
    try:
        if args.db_command in ("init", "upgrade"):
            before, after = ledger.init()
            what = "created" if before is None else ("upgraded" if before != after
                                                     else "already at head")
            print(f"ledger {_safe_url(config.ledger_url)}: {what} (schema {after})")
            return 0
        report = ledger.check()
        print(f"ledger {_safe_url(config.ledger_url)}")
        print("\n".join(report.lines()))
        return 0 if report.ok else 1
    finally:
        ledger.close()


def _safe_url(url: str) -> str:
    """The URL without its password: nothing secret in logs or output."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- baton slurm -------------------------------------------------------------------------
def cmd_slurm_submit(args: argparse.Namespace) -> int:
    from baton.ledger import open_ledger
    from baton.slurm.service import make_backend, submit_jobs

    config = _config(args)
    backend = make_backend(config, args.backend)
    if args.script:
        return _submit_script(args, config, backend)
    if not args.stage or not args.experiment:
        raise BatonError("give a script, or --stage and --experiment")
    items = [(e, args.checkpoint or "") for e in args.experiment]
    ledger = open_ledger(config.ledger_url)
    outcomes = submit_jobs(config, ledger, backend, args.stage, items, attempt=args.attempt,
                           mem=args.mem, time=args.time)
    for o in outcomes:
        verb = "submitted" if o.submitted_now else "already submitted"
        print(f"{o.experiment}: {verb} as job {o.job_id} ({backend.name}, ledger row "
              f"{o.row_id})")
    return 0


def _submit_script(args: argparse.Namespace, config, backend) -> int:
    from baton.slurm.spec import spec_from_script

    path = Path(args.script)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatonError(f"{path}: cannot read script: {exc}") from None
    spec = spec_from_script(text, default_name=path.stem, time=args.time, mem=args.mem,
                            array=args.array, partition=args.partition or
                            config.slurm.partition, account=config.slurm.account)
    submitted = backend.submit(spec, path.resolve())
    print(submitted.job_id)
    return 0


def cmd_slurm_status(args: argparse.Namespace) -> int:
    from baton.ledger import open_ledger
    from baton.slurm.service import make_backend

    config = _config(args)
    backend = make_backend(config, args.backend)
    ids = args.job_ids
    if not ids:
        ids = [r.job_id for r in open_ledger(config.ledger_url).unfinished_jobs()]
    statuses = backend.status(ids)
    if args.json:
        print(json.dumps({k: _status_doc(v) for k, v in statuses.items()}, indent=2))
        return 0
    if not statuses:
        print("no jobs" if not ids else f"no such job(s): {' '.join(ids)}")
        return 0 if not ids else 1
    print(f"{'JOBID':<14}{'STATE':<15}{'EXIT':<7}{'NODE':<14}{'MAXRSS':>10}  NAME")
    for jid, s in statuses.items():
        exit_ = "" if s.exit_code is None else f"{s.exit_code}:{s.exit_signal or 0}"
        rss = "" if s.max_rss_mb is None else f"{s.max_rss_mb:.0f}M"
        print(f"{jid:<14}{s.state:<15}{exit_:<7}{s.node or '':<14}{rss:>10}  {s.name or ''}")
    return 0


def _status_doc(status) -> dict:
    from dataclasses import asdict

    return {k: v.isoformat() if hasattr(v, "isoformat") else v
            for k, v in asdict(status).items()}


def cmd_slurm_cancel(args: argparse.Namespace) -> int:
    from baton.slurm.service import make_backend

    backend = make_backend(_config(args), args.backend)
    backend.cancel(args.job_ids)
    print(f"cancel requested: {' '.join(args.job_ids)}")
    return 0


# --- the work: evaluate, example training, the hook ----------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from baton.evaluate.harness import evaluate

    ok, path = evaluate(_config(args), args.experiment, args.checkpoint,
                        Path(args.eval_config) if args.eval_config else None)
    print(f"{'complete' if ok else 'FAILED'}: {path}")
    return 0 if ok else 1


def cmd_analyze(args: argparse.Namespace) -> int:
    from baton.analyze.run import analyze

    compare = [c for c in args.compare.split(",") if c] if args.compare is not None else None
    ok, path = analyze(_config(args), args.experiment, compare)
    print(f"{'complete' if ok else 'FAILED'}: {path}")
    return 0 if ok else 1


def cmd_example_train(args: argparse.Namespace) -> int:
    from baton.example.model import Hyper
    from baton.example.train import train_example

    hyper = Hyper(dim=args.dim, hidden=args.hidden, lr=args.lr, epochs=args.epochs,
                  seed=args.seed, checkpoint_every=args.checkpoint_every)
    path = train_example(_config(args), args.experiment, hyper, args.campaign)
    print(path or "training finished, but the signal could not be written (see the log)")
    return 0 if path else 1


def cmd_signal_training_complete(args: argparse.Namespace) -> int:
    from baton.hook import training_complete

    path = training_complete(args.experiment, args.checkpoint, campaign=args.campaign,
                             final_loss=args.final_loss, total_steps=args.total_steps,
                             num_epochs=args.num_epochs, config_path=args.config_path,
                             git_commit=args.git_commit, mlflow_run_id=args.mlflow_run_id,
                             checkpoints=args.extra_checkpoint, config=_config(args))
    print(path or "could not write the signal (see the log)")
    return 0 if path else 1


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from baton.sqlviews import connect, refresh

    config = _config(args)
    if args.views:
        path = refresh(config)
        print(f"views written: {path}\nuse them with: duckdb -init {path}")
        return 0
    if not args.query:
        raise BatonError("give a query, e.g. baton sql \"SELECT * FROM jobs LIMIT 5\"")
    con = connect(config)
    try:
        rel = con.sql(args.query)
    except duckdb.Error as exc:
        raise BatonError(f"query failed: {exc}") from None
    if rel is None:
        return 0
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(rel.columns)
        writer.writerows(rel.fetchall())
    elif args.format == "json":
        rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
        print(json.dumps(rows, indent=2, default=str))
    else:
        rel.show(max_width=200, max_rows=args.max_rows)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from baton.demo import run_demo

    return run_demo(Path(args.home) if args.home else None, once=args.once,
                    backend=args.backend, timeout=args.timeout)


def cmd_signal_analysis_complete(args: argparse.Namespace) -> int:
    import os

    from baton.evaluate.harness import job_tag
    from baton.inbox import publish
    from baton.signals import AnalysisComplete, utcnow

    config = _config(args)
    exp = config.drive.experiment(args.experiment)
    signal = AnalysisComplete(
        timestamp=utcnow(), experiment=args.experiment, job_id=job_tag(), status=args.status,
        report_path=str(Path(args.report).resolve()) if args.report else None,
        outputs=[str(Path(o).resolve()) for o in args.output or []] or None,
        error_message=args.error)
    folder = Path(os.environ.get("BATON_SIGNAL_DIR") or exp.reports_dir)
    print(publish(config.drive, signal, folder / ".analysis_complete"))
    return 0


def cmd_exporter(args: argparse.Namespace) -> int:
    from baton.exporter.server import serve

    serve(_config(args), args.host, args.port, args.queue_ttl)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from baton.ledger import open_ledger
    from baton.ledger.schema import status_events as ev
    from baton.status import ingest

    config = _config(args)
    ledger = open_ledger(config.ledger_url)
    ingest(config.shared_drive, ledger)
    with ledger.read() as conn:
        if args.status_command == "history":
            q = select(ev).where(ev.c.project == args.project).order_by(ev.c.reported_at)
            if args.job:
                q = q.where(ev.c.job == args.job)
            rows = conn.execute(q.limit(args.limit)).all()
        else:
            last = select(ev.c.project, ev.c.job, func.max(ev.c.id).label("id")).group_by(
                ev.c.project, ev.c.job).subquery()
            rows = conn.execute(select(ev).join(last, ev.c.id == last.c.id).order_by(
                ev.c.project, ev.c.job)).all()
    if not rows:
        print("no status reports")
    for r in rows:
        progress = "" if r.progress is None else f"{r.progress:5.1f}%"
        print(f"{r.reported_at:%Y-%m-%dT%H:%M:%SZ}  {r.project:<20} {r.job:<24} "
              f"{r.status:<9} {progress:>6}  {r.message or ''}")
    return 0


# --- baton config ------------------------------------------------------------------------
def cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    config = _config(args)
    doc = json.loads(config.model_dump_json())
    if config.database_url:
        doc["database_url"] = _safe_url(config.database_url)
    print(f"# from {config.source} and the environment")
    print(yaml.safe_dump(doc, sort_keys=False), end="")
    return 0


# --- the parser --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baton", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="baton.yaml to use (default: $BATON_CONFIG, "
                        "./baton.yaml, or the embedded defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_signal_quarantined)

    p = sig.add_parser("training-complete", help="the training hook from a shell: write "
                       ".training_complete atomically and log to MLflow; never fails the caller "
                       "for MLflow")
    p.add_argument("--experiment", required=True)
    p.add_argument("--checkpoint", required=True, help="the final checkpoint folder")
    p.add_argument("--extra-checkpoint", action="append",
                   help="an intermediate checkpoint to evaluate too (repeatable)")
    p.add_argument("--campaign")
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

    p = sub.add_parser("evaluate", help="evaluate one checkpoint (what the evaluation Slurm "
                       "job runs): Parquet metrics, MLflow, .eval_complete/.eval_failed")
    p.add_argument("--experiment", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", dest="eval_config", help="eval.yaml (default: "
                   "config/evaluation/base_eval.yaml on the drive, else the example evaluator)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("analyze", help="analyse one experiment (what the analysis Slurm job "
                       "runs): figures, tables, HTML report, manifest, .analysis_complete")
    p.add_argument("--experiment", required=True)
    p.add_argument("--compare", help="comma-separated experiments to compare with (default: "
                   "the other experiments of its campaign)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("sql", help="ad-hoc SQL (DuckDB) over the views metrics, predictions, "
                       "jobs, signals, training_runs, evaluation_jobs, analysis_jobs, ...")
    p.add_argument("query", nargs="?")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--max-rows", type=int, default=50)
    p.add_argument("--views", action="store_true",
                   help="only (re)write views.sql for the duckdb CLI and say where it is")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("demo", help="the whole pipeline on this machine: MLflow, Dagster, a "
                       "small campaign through evaluation and analysis")
    p.add_argument("--once", action="store_true",
                   help="exit when every report is written (non-zero if a stage failed)")
    p.add_argument("--home", help="where the demo keeps its drive, state and logs "
                   "(default: ~/.local/share/baton/demo)")
    p.add_argument("--backend", choices=["auto", "sbatch", "local"], default="auto")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before giving up")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("exporter", help="serve Prometheus metrics computed from the ledger, "
                       "the Slurm queue and the drive")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9108)
    p.add_argument("--queue-ttl", type=float, default=30,
                   help="seconds one Slurm queue snapshot serves every scrape")
    p.set_defaults(func=cmd_exporter)

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

    ex = sub.add_parser("example", help="the built-in example model").add_subparsers(
        dest="example_command", required=True, metavar="SUBCOMMAND")
    p = ex.add_parser("train", help="train the NumPy example model on the shipped corpus, "
                      "save checkpoints to the drive and call the training hook")
    p.add_argument("--experiment", required=True)
    p.add_argument("--campaign")
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.set_defaults(func=cmd_example_train)

    db = sub.add_parser("db", help="the ledger database").add_subparsers(
        dest="db_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("init", "create the ledger (or bring it to the current schema)"),
                       ("upgrade", "apply pending schema migrations"),
                       ("check", "integrity and schema check; exit 1 on a problem")):
        db.add_parser(name, help=text).set_defaults(func=cmd_db)

    sl = sub.add_parser("slurm", help="submit, inspect and cancel jobs").add_subparsers(
        dest="slurm_command", required=True, metavar="SUBCOMMAND")
    backend_help = "sbatch or local (default: slurm.backend in baton.yaml, auto)"
    p = sl.add_parser("submit", help="submit a script, or a stage job rendered from its "
                      "template (recorded in the ledger)")
    p.add_argument("script", nargs="?", help="a batch script with #SBATCH directives")
    p.add_argument("--stage", choices=["evaluation", "analysis"])
    p.add_argument("--experiment", action="append", help="repeat for an array job")
    p.add_argument("--checkpoint", help="checkpoint to evaluate (evaluation stage)")
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--time", help="time limit, e.g. 02:00:00")
    p.add_argument("--mem", help="memory, e.g. 32G")
    p.add_argument("--array", help="array spec for a script, e.g. 0-9%%2")
    p.add_argument("--partition")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_slurm_submit)
    p = sl.add_parser("status", help="state of jobs (default: the ledger's unfinished jobs)")
    p.add_argument("job_ids", nargs="*", metavar="JOBID")
    p.add_argument("--json", action="store_true")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_slurm_status)
    p = sl.add_parser("cancel", help="cancel jobs")
    p.add_argument("job_ids", nargs="+", metavar="JOBID")
    p.add_argument("--backend", choices=["sbatch", "local"], help=backend_help)
    p.set_defaults(func=cmd_slurm_cancel)

    cfg = sub.add_parser("config", help="the resolved configuration").add_subparsers(
        dest="config_command", required=True, metavar="SUBCOMMAND")
    cfg.add_parser("show", help="print the configuration in effect").set_defaults(
        func=cmd_config_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["status", "report"]:  # the fast path: no config, no database
        from baton.status import main as report_main

        return report_main(argv[2:])
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except BatonError as exc:
        print(f"baton: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
