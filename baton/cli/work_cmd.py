"""The work itself: ``baton evaluate``, ``analyze``, ``example train``, ``sql``, ``demo``,
``exporter``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from baton.cli import argtypes
from baton.cli.common import config_from
from baton.errors import BatonError

if TYPE_CHECKING:
    from baton.config import Config


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Inside Slurm (the pipeline's job) the results and the signal go to the experiment,
    as always. By hand they go to a folder of their own unless ``--publish``: a rerun
    must not answer, join or overwrite a live evaluation of the same experiment."""
    from baton.evaluate.harness import evaluate, hand_results_dir

    config = config_from(args)
    exp = config.drive.experiment(args.experiment)
    results = _results(args, lambda: hand_results_dir(exp))
    generation = args.generation or (
        _latest_generation(config, args.experiment) if results is None else None)
    ok, path = evaluate(config, args.experiment, args.checkpoint,
                        Path(args.eval_config) if args.eval_config else None, results,
                        generation=generation)
    return _said(ok, path, results, generation)


def _latest_generation(config: Config, experiment: str) -> int | None:
    """The training generation a published hand run answers: the experiment's latest in
    the ledger (read only; none: the first), so that a retrained experiment's rerun lands
    beside, not over, the earlier generation's rows. None in the pipeline's job, whose
    script exports it."""
    from baton.cli.common import read_only_ledger
    from baton.evaluate.harness import job_tag
    from baton.signals import OUTSIDE_SLURM

    if job_tag() != OUTSIDE_SLURM:
        return None
    ledger, _ = read_only_ledger(config)
    if ledger is None:
        return None
    try:
        run = ledger.training_run(experiment)
    finally:
        ledger.close()
    return run.generation if run is not None and run.generation else None


def _results(args: argparse.Namespace, hand_folder: Callable[[], Path]) -> Path | None:
    """Where a run's results go: ``--output``, a new hand folder when run by hand (not by
    the pipeline's job script) without ``--publish``, else None: the experiment's,
    announced."""
    from baton.evaluate.harness import job_tag
    from baton.signals import OUTSIDE_SLURM

    if args.output:
        results = Path(args.output).absolute()
        try:
            results.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BatonError(f"--output {args.output}: cannot make the folder: "
                             f"{exc.strerror or exc}") from None
        return results
    if job_tag() == OUTSIDE_SLURM and not args.publish:
        return hand_folder()
    return None


def _said(ok: bool, path: Path, results: Path | None, generation: int | None = None) -> int:
    """One line: the outcome and where the results went (or who was told)."""
    from baton.evaluate.harness import job_tag
    from baton.signals import OUTSIDE_SLURM

    outcome = "complete" if ok else "FAILED"
    if results is not None:
        print(f"{outcome}: results in {results} (not announced to the pipeline; "
              "--publish to announce a hand run)")
    elif job_tag() == OUTSIDE_SLURM:
        of = f", generation {generation}" if generation and generation > 1 else ""
        print(f"{outcome}: published as job {OUTSIDE_SLURM} (outside Slurm){of}: {path}")
    else:
        print(f"{outcome}: {path}")
    return 0 if ok else 1


def cmd_analyze(args: argparse.Namespace) -> int:
    """As ``baton evaluate``: by hand, a folder of its own unless ``--publish``."""
    from baton.analyze.run import analyze, hand_analysis_dir

    config = config_from(args)
    exp = config.drive.experiment(args.experiment)
    compare = [c for c in args.compare.split(",") if c] if args.compare is not None else None
    results = _results(args, lambda: hand_analysis_dir(exp))
    ok, path = analyze(config, args.experiment, compare, results)
    return _said(ok, path, results)


def cmd_example_train(args: argparse.Namespace) -> int:
    from baton.example.model import Hyper
    from baton.example.train import train_example

    hyper = Hyper(dim=args.dim, hidden=args.hidden, lr=args.lr, epochs=args.epochs,
                  seed=args.seed, checkpoint_every=args.checkpoint_every)
    path = train_example(config_from(args), args.experiment, hyper, args.campaign)
    print(path or "training finished, but the signal could not be written (see the log)")
    return 0 if path else 1


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from baton.analyze.sqlviews import (
        connect,
        named_views,
        read_only_sql,
        refresh,
        refuse_writes,
    )

    config = config_from(args)
    if args.views:
        path = refresh(config)
        print(f"views written: {path}\nuse them with: duckdb -init {path}")
        return 0
    if not args.query:
        raise BatonError("give a query, e.g. baton sql \"SELECT * FROM jobs LIMIT 5\"")
    try:
        refuse_writes(args.query)  # before the ledger is read: a refused query reads nothing
    except duckdb.Error as exc:
        raise BatonError(f"query failed: {duckdb_message(exc)}") from None
    con = connect(config, named_views(args.query))  # only the ledger tables it names
    try:  # rows are fetched inside: a query can fail while it runs, not only when parsed
        rel = read_only_sql(con, args.query)
        if rel is None:
            return 0
        if args.format == "table":
            rel.show(max_width=200, max_rows=args.max_rows)
            return 0
        columns, rows = rel.columns, rel.fetchall()
    except duckdb.Error as exc:
        raise BatonError(f"query failed: {duckdb_message(exc)}") from None
    finally:
        con.close()
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], indent=2,
                         default=str))
    return 0


def duckdb_message(exc: Exception) -> str:
    """DuckDB's message on one line: its first paragraph (what follows is a hint or the
    query with a caret under the error), lines joined."""
    first = str(exc).strip().split("\n\n")[0]
    return " ".join(line.strip() for line in first.splitlines() if line.strip())


def cmd_demo(args: argparse.Namespace) -> int:
    from baton.demo import run_demo

    return run_demo(Path(args.home) if args.home else None, once=args.once,
                    backend=args.backend, timeout=args.timeout, fail_dataset=args.fail_dataset)


def cmd_exporter(args: argparse.Namespace) -> int:
    from baton.exporter.server import serve

    serve(config_from(args), args.host, args.port, args.queue_ttl,
          Path(args.web_config) if args.web_config else None, args.full_every)
    return 0


def _hand_run_options(p: argparse.ArgumentParser, into: str, under: str, what: str
                      ) -> None:
    """Where a run by hand (outside Slurm) writes: by default a folder of its own,
    announced to no one, so it never answers or overwrites the pipeline's work."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--publish", action="store_true", help="run by hand (outside Slurm): "
                       f"write into the experiment's {into} and announce the signal to the "
                       "pipeline as job 0 (default: a folder of its own, hand/{UTC time}/ "
                       f"under the experiment's {under}, announced to no one)")
    where.add_argument("--output", metavar="DIR", help=f"write {what} to DIR, announced to "
                       "no one")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate one checkpoint (what the evaluation Slurm "
                       "job runs): Parquet metrics, MLflow, .eval_complete/.eval_failed")
    p.add_argument("--experiment", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", dest="eval_config", help="eval.yaml (default: "
                   "config/evaluation/base_eval.yaml on the drive, else the example evaluator)")
    _hand_run_options(p, "metrics", "evaluation folder", "the results and the signal (as "
                      "eval_complete.json / eval_failed.json)")
    p.add_argument("--generation", type=argtypes.whole(1), metavar="N",
                   help="the experiment's training generation the run answers (default: "
                   "BATON_GENERATION in the pipeline's job; by hand with --publish, the "
                   "experiment's latest in the ledger)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("analyze", help="analyse one experiment (what the analysis Slurm job "
                       "runs): figures, tables, HTML report, manifest, .analysis_complete")
    p.add_argument("--experiment", required=True)
    p.add_argument("--compare", help="comma-separated experiments to compare with (default: "
                   "the other experiments of its campaign)")
    _hand_run_options(p, "analysis folders", "reports folder", "the figures, tables, "
                      "report and the signal (as analysis_complete.json)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("sql", help="ad-hoc SQL (DuckDB) over the views metrics, predictions, "
                       "jobs, signals, training_runs, evaluation_jobs, analysis_jobs, ...")
    p.add_argument("query", nargs="?")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--max-rows", type=argtypes.count, default=50,
                   help="rows the table format shows (default: %(default)s)")
    p.add_argument("--views", action="store_true",
                   help="only (re)write views.sql for the duckdb CLI and say where it is")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("demo", help="the whole pipeline on this machine: MLflow, Dagster, the "
                       "metrics exporter, a small campaign through evaluation and analysis")
    p.add_argument("--once", action="store_true",
                   help="exit when every report is written (non-zero if a stage failed)")
    p.add_argument("--home", help="where the demo keeps its drive, state and logs "
                   "(default: ~/.local/share/baton/demo)")
    p.add_argument("--backend", choices=["auto", "sbatch", "local"], default="auto")
    p.add_argument("--timeout", type=argtypes.seconds(above_zero=True), default=1800,
                   help="seconds before giving up (default: %(default)s)")
    p.add_argument("--fail-dataset", choices=["minimal_pairs", "heldout"],
                   help="for testing: the example evaluator fails on this dataset, to see "
                   "how a failed stage is shown and reported (exit code 1 with --once)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("exporter", help="serve Prometheus metrics computed from the ledger, "
                       "the Slurm queue and the drive")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on, 0.0.0.0 or :: for every interface "
                   "(default: %(default)s)")
    p.add_argument("--port", type=argtypes.port_number, default=9108,
                   help="TCP port, 0 for any free one (default: %(default)s)")
    p.add_argument("--queue-ttl", type=argtypes.seconds(), default=30,
                   help="seconds one reading of the queue (the tracker's, in the ledger) "
                   "serves every scrape (default: %(default)s)")
    p.add_argument("--web-config", metavar="FILE", help="TLS and basic auth from FILE, in "
                   "the format of Prometheus' exporter-toolkit (node_exporter's "
                   "--web.config.file): tls_server_config, basic_auth_users with bcrypt "
                   "hashes (default: plain HTTP, no auth)")
    p.add_argument("--full-every", type=argtypes.seconds(above_zero=True), default=3600,
                   help="seconds between two full recomputations of the running totals of "
                   "the settled jobs and signals (default: %(default)s)")
    p.set_defaults(func=cmd_exporter)

    ex = sub.add_parser("example", help="the built-in example model").add_subparsers(
        dest="example_command", required=True, metavar="SUBCOMMAND")
    p = ex.add_parser("train", help="train the NumPy example model on the shipped corpus, "
                      "save checkpoints to the drive and call the training hook")
    p.add_argument("--experiment", required=True, type=argtypes.name("experiment"))
    p.add_argument("--campaign", type=argtypes.name("campaign"))
    p.add_argument("--lr", type=argtypes.positive_number, default=0.2)
    p.add_argument("--dim", type=argtypes.count, default=16)
    p.add_argument("--hidden", type=argtypes.count, default=64)
    p.add_argument("--epochs", type=argtypes.count, default=3)
    p.add_argument("--seed", type=argtypes.non_negative, default=0)
    p.add_argument("--checkpoint-every", type=argtypes.count, default=200)
    p.set_defaults(func=cmd_example_train)

