"""7. Backfill: submitting 1,000 evaluations as one Slurm array against 1,000 single
submissions, on the real Slurm: wall time and sbatch calls. The array is measured twice:
through ``submit_jobs`` (the submission itself) and through
``baton.pipeline.submit_evaluations``, what the run of a Dagster backfill of the
``evaluation_job`` asset calls (one run for every partition: ``BackfillPolicy.single_run``),
which also looks up each experiment's training run and records each evaluation task. The
jobs are held and cancelled right after; only the submissions are timed. The submission
rate limit is lifted for all (at the default 60 per minute the singles alone would take
1,000 / 60 = 16.7 minutes by design)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import insert

from baton.config import Config
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import training_runs
from baton.pipeline.steps import submit_evaluations
from baton.pipeline.submission import submit_jobs
from baton.slurm.factory import make_backend
from baton.slurm.sbatch import SbatchBackend
from bench.common import Result, say
from bench.context import Context, scancel
from bench.slurm_held import SKIPPED, held_config, load, slurm_available

TITLE = "backfill: one array vs single submissions on real Slurm"
BENCH = "7 backfill"


def trained(config: Config, ledger: Ledger, names: list[str]) -> None:
    """The experiments' training runs, as the training sensor records them (written
    directly: setting up is not what is measured)."""
    now = datetime.now(UTC)
    for e in names:
        config.drive.experiment(e).final_dir.mkdir(parents=True, exist_ok=True)
    rows = [dict(experiment_name=e, status="completed", completed_at=now,
                 checkpoint_path=str(config.drive.experiment(e).final_dir),
                 signal_key=f"training_complete:{e}:bench") for e in names]
    with ledger.write() as conn:
        conn.execute(insert(training_runs), rows)


def run(ctx: Context) -> list[Result]:
    if not slurm_available():
        say(f"  {SKIPPED}")
        return []
    n = ctx.pick(50, 1000)
    config = load(held_config(ctx.dir("backfill")))
    ledger = open_ledger(config.ledger_url, init=True)
    backend = make_backend(config)
    assert isinstance(backend, SbatchBackend)
    calls: Counter[str] = Counter()
    run_command = backend.run

    def counted(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls[argv[0]] += 1
        return run_command(argv)

    backend.run = counted
    submitted: list[str] = []
    ctx.at_exit(lambda: scancel(submitted))

    def names(prefix: str) -> list[str]:
        return [f"{prefix}-{i:04d}" for i in range(n)]

    def items(prefix: str) -> list[tuple[str, str]]:
        finals = [config.drive.experiment(e).final_dir for e in names(prefix)]
        for final in finals:  # a submission refuses a checkpoint that is not there
            final.mkdir(parents=True, exist_ok=True)
        return [(e, str(f)) for e, f in zip(names(prefix), finals, strict=True)]

    def cancel(ids: list[str]) -> None:
        submitted.extend(ids)
        scancel(ids)

    # one array through submit_jobs
    array_items = items("array")
    t = time.perf_counter()
    out = submit_jobs(config, ledger, backend, "evaluation", array_items)
    t_array = time.perf_counter() - t
    array_calls = calls["sbatch"]
    cancel([o.job_id for o in out if o.job_id])
    say(f"  {n} as one array: {t_array:.2f}s, {array_calls} sbatch call(s)")

    # the same through what a Dagster backfill run calls
    exps = names("backfill")
    trained(config, ledger, exps)
    calls.clear()
    t = time.perf_counter()
    subs = submit_evaluations(config, ledger, backend, exps)
    t_backfill = time.perf_counter() - t
    backfill_calls = calls["sbatch"]
    cancel([j for sub in subs.values() for j in sub.job_ids])
    say(f"  {n} through submit_evaluations (a backfill run): {t_backfill:.2f}s, "
        f"{backfill_calls} sbatch call(s)")

    # the baseline: one submission per experiment; only the submissions are timed
    calls.clear()
    t_single = 0.0
    batch: list[str] = []
    for item in items("single"):
        t = time.perf_counter()
        out = submit_jobs(config, ledger, backend, "evaluation", [item])
        t_single += time.perf_counter() - t
        batch += [o.job_id for o in out if o.job_id]
        if len(batch) >= 100:  # keep the queue short for everyone else (not timed)
            cancel(batch)
            batch = []
    cancel(batch)
    single_calls = calls["sbatch"]
    say(f"  {n} single: {t_single:.1f}s, {single_calls} sbatch calls")
    ledger.close()
    base = f"{n} single"
    return [
        Result(BENCH, f"submit {n} evaluations as one array: wall time", t_array, "s",
               t_single, base),
        Result(BENCH, f"submit {n} evaluations as one array: sbatch calls", array_calls,
               "calls", single_calls, base),
        Result(BENCH, f"backfill of {n} (submit_evaluations): wall time", t_backfill, "s",
               t_single, base),
        Result(BENCH, f"backfill of {n} (submit_evaluations): sbatch calls", backfill_calls,
               "calls", single_calls, base),
    ]
