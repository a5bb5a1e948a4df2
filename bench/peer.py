"""14. Side by side with Snakemake's Slurm executor, on the same real Slurm in the same run:
N experiments finish training at once (their ``.training_complete`` signals written
together), each is evaluated per checkpoint, then analysed (trivial payloads, the same
scripts for both). baton runs it through a real dagster-daemon (the code on PYTHONPATH),
Snakemake 9 through a generated Snakefile with ``--executor slurm``. For each: the Slurm
calls by command (wrapper scripts first on PATH, inherited by the daemon, its runs and
the jobs), the time from the last training signal to the last analysis done (baton: its
``analysis_report`` recorded in Dagster; Snakemake: its exit), the orchestrator's CPU
seconds and peak RSS on the submitting machine (baton: the daemon's process tree with its
runs; Snakemake: its process tree), and the jobs' own CPU (sacct TotalCPU).

``python -m bench.peer --experiments 20,100 --checkpoints 2`` runs it alone."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from baton.config import load_config
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.signals import TrainingComplete
from bench.common import Result, say
from bench.context import Context
from bench.daemon import cancel_all
from bench.peer_meter import COUNTED, SlurmCalls, TreeMeter, jobs_cpu_seconds, rss_mb
from bench.peer_snakemake import run_snakemake, write_snakefile
from bench.slurm_held import SKIPPED, slurm_available

TITLE = "side by side with Snakemake 9's Slurm executor: Slurm calls, time, CPU, memory"
BENCH = "14 peer"
INTERVAL = 5  # baton's sensors.interval_seconds (Dagster's sensor loop floor)
CHECKPOINTS = 2  # evaluations per experiment: one intermediate checkpoint and the final


@dataclass
class Side:
    """What one orchestrator did for one sweep."""

    host: Counter
    in_jobs: Counter
    seconds: float
    cpu: float
    peak_mb: float
    jobs_cpu: float
    jobs: int
    idle_mb: float | None = None
    runs: int | None = None


def train(drive: DriveLayout, exp: str, checkpoints: int) -> tuple[Path, dict[str, str]]:
    """What a training run leaves: ``checkpoints - 1`` intermediate checkpoints, the final
    model and the signal naming them; returns the signal and the checkpoints by name."""
    layout = drive.experiment(exp)
    layout.final_dir.mkdir(parents=True, exist_ok=True)
    (layout.final_dir / "model.safetensors").write_bytes(b"\0" * 1024)
    ckpts = {}
    for step in range(1, checkpoints):
        ckpt = layout.checkpoint(step * 100)
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "model.safetensors").write_bytes(b"\1" * 64)
        ckpts[ckpt.name] = str(ckpt)
    ckpts["final"] = str(layout.final_dir)
    path = publish(drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment=exp, checkpoint_path=str(layout.final_dir),
        hostname="gpu01", user="bench", final_loss=1.5, total_steps=100,
        checkpoints=[c for name, c in ckpts.items() if name != "final"] or None))
    return path, ckpts


def timeout_for(n: int, checkpoints: int) -> float:
    """A safety net, not a target: a minute per job (a loaded 2-core machine starts a
    Dagster run in 15 s), and 20 minutes more."""
    return 1200 + 60 * n * (checkpoints + 1)


def run_baton(ctx: Context, n: int, checkpoints: int) -> Side:
    from dagster import AssetKey, AssetRecordsFilter

    from tests.e2e.harness import Pipeline

    root = ctx.dir(f"peer-baton-{n}")
    calls = SlurmCalls(root / "slurm-wrappers")
    pipe = Pipeline(root, "sbatch", extra_env={"PATH": calls.path(os.environ["PATH"])})
    pipe.config_file.write_text(pipe.config_file.read_text().replace(
        "interval_seconds: 1\n", f"interval_seconds: {INTERVAL}\n"))
    pipe.config = load_config(pipe.config_file, pipe.env)
    ctx.at_exit(lambda: cancel_all(pipe))
    ctx.at_exit(pipe.stop)
    pipe.start()
    assert pipe.daemon is not None
    pipe.wait_for("the sensors' and the tracker's first ticks", lambda: {
        "training_sensor", "slurm_tracker"} <= set(pipe.ledger.heartbeats()), timeout=300)
    time.sleep(2 * INTERVAL)  # settled: the code server up, the first ticks over
    idle = rss_mb(pipe.daemon.pid)
    instance = pipe.instance()
    runs_before = instance.get_runs_count()
    say(f"  baton, {n} experiments: daemon up (tree {idle:.0f} MB idle); writing the signals")
    meter = TreeMeter(pipe.daemon.pid).start()
    begin = time.time()
    written = [train(pipe.drive, f"sweep-{i:03d}", checkpoints)[0] for i in range(n)]
    start = max(p.stat().st_mtime for p in written)
    wanted = {f"sweep-{i:03d}" for i in range(n)}
    done: dict[str, float] = {}

    def all_analysed() -> bool:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("analysis_report")), limit=n + 100).records
        done.update({r.partition_key: r.timestamp for r in records
                     if r.partition_key in wanted})
        return len(done) == n

    try:
        pipe.wait_for(f"analysis_report of all {n} experiments", all_analysed,
                      timeout=timeout_for(n, checkpoints))
    finally:
        meter.stop()
    end = max(done.values())
    runs = instance.get_runs_count() - runs_before
    host, in_jobs = calls.counts(begin, end)
    ids = calls.job_ids()
    side = Side(host, in_jobs, end - start, meter.cpu_seconds, meter.peak_rss,
                jobs_cpu_seconds(ids), len(ids), idle_mb=idle, runs=runs)
    try:
        pipe.stop()
    except subprocess.TimeoutExpired:  # a loaded machine: a minute was not enough
        pipe.kill(signal.SIGKILL)
    return side


def run_peer(ctx: Context, n: int, checkpoints: int) -> Side:
    root = ctx.dir(f"peer-snakemake-{n}")
    calls = SlurmCalls(root / "slurm-wrappers")
    drive = DriveLayout(root / "drive")
    drive.create()
    trained, ckpts = {}, {}
    for i in range(n):
        exp = f"sweep-{i:03d}"
        trained[exp], ckpts[exp] = train(drive, exp, checkpoints)
    start = max(p.stat().st_mtime for p in trained.values())
    snakefile = write_snakefile(root, drive.root, trained, ckpts)
    say(f"  Snakemake, {n} experiments: running {snakefile}")
    meter, end = run_snakemake(ctx, root, snakefile, calls, timeout_for(n, checkpoints))
    host, in_jobs = calls.counts(start, end)
    ids = calls.job_ids()
    return Side(host, in_jobs, end - start, meter.cpu_seconds, meter.peak_rss,
                jobs_cpu_seconds(ids), len(ids))


def compare(n: int, checkpoints: int, ours: Side, peer: Side) -> list[Result]:
    name = "Snakemake 9 slurm"
    tag = f"{n} exp x {checkpoints} ckpt"

    def row(figure: str, ours_v: float, peer_v: float | None, unit: str) -> Result:
        return Result(BENCH, f"{tag}: {figure}", ours_v, unit, peer_v, name)

    status = ("squeue", "sacct", "scontrol")
    results = [row(f"{cmd} calls", ours.host[cmd], peer.host[cmd], "calls")
               for cmd in COUNTED]
    results += [
        row("status queries (squeue+sacct+scontrol)", sum(ours.host[c] for c in status),
            sum(peer.host[c] for c in status), "calls"),
        row("other Slurm calls from the submitting machine",
            sum(v for k, v in ours.host.items() if k not in COUNTED),
            sum(v for k, v in peer.host.items() if k not in COUNTED), "calls"),
        row("Slurm calls from inside the jobs (srun, ...)", sum(ours.in_jobs.values()),
            sum(peer.in_jobs.values()), "calls"),
        row("jobs submitted (sbatch ids; an array counts once)", ours.jobs, peer.jobs,
            "calls"),
        row("last training signal -> last analysis done", ours.seconds, peer.seconds, "s"),
        row("orchestrator CPU (process tree, submitting machine)", ours.cpu, peer.cpu,
            "CPU s"),
        row("orchestrator peak RSS (process tree)", ours.peak_mb, peer.peak_mb, "MB"),
        row("jobs' CPU (sacct TotalCPU)", ours.jobs_cpu, peer.jobs_cpu, "CPU s"),
        row("CPU in total (orchestrator + jobs)", ours.cpu + ours.jobs_cpu,
            peer.cpu + peer.jobs_cpu, "CPU s"),
    ]
    if ours.runs is not None:
        results.append(row("Dagster runs launched", ours.runs, None, "calls"))
    if ours.idle_mb is not None:
        results.append(row("baton daemon tree RSS idle, before the signals", ours.idle_mb,
                           None, "MB"))
    return results


def sizes(ctx: Context) -> list[int]:
    return ctx.pick([5], [20, 100])


def run(ctx: Context, experiments: list[int] | None = None,
        checkpoints: int = CHECKPOINTS) -> list[Result]:
    if not slurm_available():
        say(f"  {SKIPPED}")
        return []
    results: list[Result] = []
    for n in experiments or sizes(ctx):
        peer = run_peer(ctx, n, checkpoints)
        ctx.close()  # its jobs gone before baton is measured
        say(f"  Snakemake: {peer}")
        ours = run_baton(ctx, n, checkpoints)
        ctx.close()
        say(f"  baton: {ours}")
        results += compare(n, checkpoints, ours, peer)
    return results


def main(argv: list[str] | None = None) -> int:
    import shutil

    from bench.__main__ import text_table

    p = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiments", default="20", help="comma-separated sweep sizes")
    p.add_argument("--checkpoints", type=int, default=CHECKPOINTS,
                   help=f"evaluations per experiment (default {CHECKPOINTS})")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/baton-bench-peer"))
    args = p.parse_args(argv)
    try:
        ns = [int(s) for s in args.experiments.split(",")]
    except ValueError:
        ns = []
    if not ns or min(ns) < 1 or args.checkpoints < 1:
        p.error(f"--experiments {args.experiments} --checkpoints {args.checkpoints}: "
                "whole numbers, at least 1")
    ctx = Context(quick=False, workdir=args.workdir)
    try:
        results = run(ctx, ns, args.checkpoints)
    finally:
        ctx.close()
        shutil.rmtree(args.workdir, ignore_errors=True)
    print(text_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
