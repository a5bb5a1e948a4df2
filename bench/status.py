"""6. ``baton status report``: latency of one call from a cold process, and throughput with
64 reporters at once, against the seed's bash approach (printf a JSON file, rename it)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from baton.jobstatus.report import report
from bench.common import Result, percentile, say
from bench.context import Context

TITLE = "baton status report: cold latency and 64 concurrent reporters vs bash"
CONCURRENCY = 64
# the seed's update_job_status.sh, reduced to what it does before its git sync
SEED_SCRIPT = r"""#!/bin/bash
# update_job_status.sh PROJECT JOB STATUS PROGRESS
dir="$SHARED_DRIVE/status/data"
mkdir -p "$dir"
tmp="$dir/.$1-$2.json.$$"
printf '{"project":"%s","job":"%s","status":"%s","progress":%s,"time":"%s","host":"%s"}\n' \
  "$1" "$2" "$3" "$4" "$(date -u +%FT%TZ)" "$(hostname)" > "$tmp" && mv "$tmp" "$dir/$1-$2.json"
"""


def _commands(root: Path) -> tuple[callable, callable]:  # type: ignore[valid-type]
    baton = str(Path(sys.executable).parent / "baton")
    script = root / "update_job_status.sh"
    script.write_text(SEED_SCRIPT)
    env = {"SHARED_DRIVE": str(root / "drive"), "PATH": "/usr/bin:/bin",
           "BATON_STATE_DIR": str(root / "state"), "HOME": str(root)}
    (root / "drive").mkdir(exist_ok=True)

    def ours(i: int) -> None:
        subprocess.run([baton, "status", "report", "--project", "bench", "--job", f"j{i}",
                        "--status", "running", "--progress", "50"], env=env, check=True)

    def seed(i: int) -> None:
        subprocess.run(["bash", str(script), "bench", f"j{i}", "running", "50"], env=env,
                       check=True)
    return ours, seed


def _latencies(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def _throughput(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    """Reports per second with CONCURRENCY reporters at once."""
    t = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(fn, range(n)))
    return n / (time.perf_counter() - t)


def run(ctx: Context) -> list[Result]:
    root = ctx.dir("status")
    ours, seed = _commands(root)
    n, total = ctx.pick((10, 128), (40, 640))
    lat_b, lat_s = _latencies(ours, n), _latencies(seed, n)
    inproc = _latencies(lambda i: report("bench", f"py{i}", "running", 50,
                                         drive=root / "drive"), n)
    tp_b, tp_s = _throughput(ours, total), _throughput(seed, total)
    spooled = len(list((root / "drive" / "status" / "spool").glob("*.json")))
    say(f"  cold: baton {statistics.median(lat_b) * 1000:.0f} ms, bash "
        f"{statistics.median(lat_s) * 1000:.0f} ms; in-process "
        f"{statistics.median(inproc) * 1000:.2f} ms; {CONCURRENCY} at once: baton "
        f"{tp_b:.0f}/s, bash {tp_s:.0f}/s; {spooled} events spooled")
    expected = n + n + total
    if spooled != expected:
        say(f"  WARNING: {spooled} events on the drive, expected {expected}")
    bash = "bash printf + mv"
    return [
        Result("6 status report", "cold process, median", statistics.median(lat_b), "s",
               statistics.median(lat_s), bash),
        Result("6 status report", "cold process, p95", percentile(lat_b, 95), "s",
               percentile(lat_s, 95), bash),
        Result("6 status report", "in-process report() from a Python script, median",
               statistics.median(inproc), "s", statistics.median(lat_s), "bash, cold"),
        Result("6 status report", f"throughput, {CONCURRENCY} concurrent reporters", tp_b,
               "reports/s", tp_s, bash, lower_better=False),
    ]
