"""7. Backfill: submitting 1,000 evaluations as one Slurm array against 1,000 single
submissions, on the real Slurm: wall time and sbatch calls. The jobs are held and
cancelled at once; the submission rate limit is lifted for both (at the default 60 per
minute the singles alone would take 1,000 / 60 = 16.7 minutes by design)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Sequence

from baton.ledger import open_ledger
from baton.slurm.sbatch import SbatchBackend
from baton.slurm.service import make_backend, submit_jobs
from bench.common import Result, say
from bench.context import Context, scancel
from bench.slurm_held import held_config, load, slurm_available

TITLE = "backfill: one array vs single submissions on real Slurm"


def run(ctx: Context) -> list[Result]:
    if not slurm_available():
        say("  no sbatch on PATH: skipped")
        return []
    n = ctx.pick(50, 1000)
    config = load(held_config(ctx.dir("backfill")))
    ledger = open_ledger(config.ledger_url)
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

    def items(prefix: str) -> list[tuple[str, str]]:
        return [(f"{prefix}-{i:04d}", str(config.drive.experiment(f"{prefix}-{i:04d}")
                                          .final_dir)) for i in range(n)]

    t = time.perf_counter()
    out = submit_jobs(config, ledger, backend, "evaluation", items("array"))
    t_array = time.perf_counter() - t
    array_calls = calls["sbatch"]
    submitted += [o.job_id for o in out if o.job_id]
    scancel(submitted)
    say(f"  {n} as one array: {t_array:.2f}s, {array_calls} sbatch call(s)")
    calls.clear()
    t = time.perf_counter()
    batch: list[str] = []
    for item in items("single"):
        batch += [o.job_id for o in submit_jobs(config, ledger, backend, "evaluation", [item])
                  if o.job_id]
        if len(batch) >= 100:  # keep the queue short for everyone else
            submitted += batch
            scancel(batch)
            batch = []
    t_single = time.perf_counter() - t
    submitted += batch
    scancel(batch)
    single_calls = calls["sbatch"]
    say(f"  {n} single: {t_single:.1f}s, {single_calls} sbatch calls")
    ledger.close()
    return [
        Result("7 backfill", f"submit {n} evaluations: wall time", t_array, "s", t_single,
               f"{n} single"),
        Result("7 backfill", f"submit {n} evaluations: sbatch calls", array_calls, "calls",
               single_calls, f"{n} single"),
    ]
