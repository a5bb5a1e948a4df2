"""8. Footprint: resident memory of the dagster-daemon (with its code server), the web UI
(with its code server) and the exporter, idle and with 200 Slurm jobs in flight. The
design says the second must not grow with the jobs; the seed's watcher budget was 100 MB.
Run processes the daemon launches come and go and are not counted, nor a code server
that is being replaced."""

from __future__ import annotations

import contextlib
import statistics
import time

from baton.ledger import open_ledger
from baton.pipeline.submission import submit_jobs
from baton.slurm.factory import make_backend
from bench.common import Result, say
from bench.context import Context, scancel
from bench.daemon import Exporter, start_pipeline
from bench.slurm_held import SKIPPED, slurm_available
from tests.e2e.harness import Webserver

TITLE = "resident memory of daemon, web UI and exporter with 0 and 200 jobs in flight"
BUDGET_MB = 100.0
JOBS = 200


def tree_rss_mb(pid: int) -> float:
    """A process and its descendants, leaving out Dagster run workers (transient) and, of
    the code servers, all but the newest: the daemon reloads its workspace every 60 s
    (RELOAD_WORKSPACE_INTERVAL in dagster/_daemon/controller.py), starting a fresh code
    server before the old one exits, so for a few seconds up to a minute two run at once."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total, servers = 0, []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            cmd = " ".join(p.cmdline())
            if "execute_run" in cmd:
                continue
            if "api grpc" in cmd:
                servers.append((p.create_time(), p.memory_info().rss))
            else:
                total += p.memory_info().rss
    return (total + (max(servers)[1] if servers else 0)) / 1e6


def sample(pids: dict[str, int], exporter: Exporter, seconds: float) -> dict[str, float]:
    """Median RSS per service over ``seconds``, scraping the exporter as Prometheus does."""
    seen: dict[str, list[float]] = {k: [] for k in pids}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        exporter.scrape()
        for name, pid in pids.items():
            seen[name].append(tree_rss_mb(pid))
        time.sleep(2)
    return {k: statistics.median(v) for k, v in seen.items()}


def run(ctx: Context) -> list[Result]:
    if not slurm_available():
        say(f"  {SKIPPED}")
        return []
    settle = ctx.pick(20, 60)
    pipe = start_pipeline(ctx, "footprint", interval=5)
    web = Webserver(pipe)
    ctx.at_exit(web.stop)
    exporter = Exporter(pipe)
    ctx.at_exit(exporter.stop)
    assert pipe.daemon is not None
    pids = {"dagster-daemon + code server": pipe.daemon.pid,
            "dagster-webserver + code server": web.proc.pid, "baton exporter": exporter.proc.pid}
    say(f"  idle: sampling for {settle}s")
    idle = sample(pids, exporter, settle)
    config = pipe.config
    ledger = open_ledger(config.ledger_url)
    finals = [config.drive.experiment(f"fly-{i:03d}").final_dir for i in range(JOBS)]
    for final in finals:  # a submission refuses a checkpoint that is not there
        final.mkdir(parents=True, exist_ok=True)
    items = [(f"fly-{i:03d}", str(final)) for i, final in enumerate(finals)]
    out = submit_jobs(config, ledger, make_backend(config), "evaluation", items)
    ids = [o.job_id for o in out if o.job_id]
    ctx.at_exit(lambda: scancel(ids))
    say(f"  {len(ids)} held jobs in flight (array {ids[0].split('_')[0]}); sampling for "
        f"{settle}s while the tracker polls them")
    busy = sample(pids, exporter, settle)
    tracked = pipe.ledger.heartbeats()
    say(f"  idle {idle}; with {JOBS} jobs {busy}; tracker beat at {tracked.get('slurm_tracker')}")
    scancel(ids)
    ledger.close()
    results = []
    for name in pids:
        results += [
            Result("8 footprint", f"{name}, 0 jobs", idle[name], "MB", BUDGET_MB,
                   "seed watcher budget"),
            Result("8 footprint", f"{name}, {JOBS} jobs in flight", busy[name], "MB",
                   idle[name], "same, 0 jobs"),
        ]
    return results
