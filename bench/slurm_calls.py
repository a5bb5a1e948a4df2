"""Benchmark 12: baton's Slurm calls per hour at steady state, 1,000 jobs queued (held:
nothing changes), this branch's tracker and exporter against the base commit's, in the
same run on the same queue. Every Slurm command either runs goes through a counting
wrapper placed first on PATH, so both are counted the same way, by what really ran."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
from collections import Counter
from io import BytesIO
from pathlib import Path

import yaml

from baton.ledger import open_ledger
from bench.common import Result, say
from bench.context import Context, scancel
from bench.slurm_held import SKIPPED, held_config, load, slurm_available

TITLE = "Slurm calls per hour at steady state, 1,000 held jobs: this tracker vs the base's"
BENCH = "12 slurm calls"
BASE = "7e7418e"  # the last commit before issue 19's tracker (and its call budget)
COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel")
INTERVAL = 15  # sensors.interval_seconds' default
QUEUE_TTL = 30  # the exporter's --queue-ttl default: one queue reading per 30 s of scrapes
ROOT = Path(__file__).resolve().parents[1]


def wrappers(folder: Path, log: Path) -> Path:
    """A folder of ``sbatch``, ``squeue``, ... that run the real command, then note its
    name, who ran it (``BENCH_WHO``), and when it started and ended in ``log``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        real = shutil.which(name)
        assert real, name
        path = folder / name
        path.write_text(f'#!/bin/bash\nstart=$EPOCHREALTIME\n{real} "$@"\nrc=$?\n'
                        f'echo "{name} ${{BENCH_WHO:-other}} $start $EPOCHREALTIME" >> {log}\n'
                        'exit $rc\n')
        path.chmod(0o755)
    return folder


def base_tree(folder: Path) -> Path:
    """The base commit's code, exported (``git archive``), beside this one."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", BASE], capture_output=True,
                         check=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(folder, filter="data")
    return folder


def base_config(path: Path) -> Path:
    """The same baton.yaml without the settings the base commit does not know (its call
    budget: it had none)."""
    doc = yaml.safe_load(path.read_text())
    for key in ("calls_per_second", "calls_burst"):
        doc["slurm"].pop(key, None)
    out = path.with_name("base.yaml")
    out.write_text(yaml.safe_dump(doc))
    return out


def held_arrays(config_dir: Path, arrays: int, tasks: int) -> list[str]:
    """``arrays`` held arrays of ``tasks`` tasks (one sbatch each): their task ids."""
    script = config_dir / "held.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    ids = []
    for _ in range(arrays):
        out = subprocess.run(["sbatch", "--parsable", "--hold", f"--array=0-{tasks - 1}",
                              "--time=00:01:00", "--mem=10M", f"--output={config_dir}/%A_%a",
                              str(script)], capture_output=True, text=True, check=True)
        job = out.stdout.strip().split(";")[0]
        ids += [f"{job}_{t}" for t in range(tasks)]
    return ids


def measure(tree: Path, config: Path, ledger_url: str, polls: int, work: Path,
            bin_dir: Path, log: Path) -> tuple[Counter[tuple[str, str]], dict]:
    log.write_text("")
    out = work / f"{tree.name}.json"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(tree), "BATON_CONFIG": ""}
    subprocess.run([sys.executable, str(ROOT / "bench" / "slurm_calls_worker.py"),
                    str(config), ledger_url, str(polls), str(out)], env=env, cwd=tree,
                   check=True, timeout=1800)
    calls: Counter[tuple[str, str]] = Counter()
    took: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        name, who, start, end = line.split()
        calls[name, who] += 1
        took[who] += float(end) - float(start)
    return calls, {**json.loads(out.read_text()), "took": took}


def per(calls: Counter[tuple[str, str]], who: str) -> int:
    return sum(n for (_, w), n in calls.items() if w == who)


def run(ctx: Context) -> list[Result]:
    if not slurm_available():
        say(f"  {SKIPPED}")
        return []
    arrays, tasks = (2, 50) if ctx.quick else (10, 100)
    polls = 2 if ctx.quick else 5
    work = ctx.dir("slurm_calls")
    config_path = held_config(work)
    config = load(config_path)
    ledger = open_ledger(config.ledger_url, init=True)
    ids = held_arrays(work, arrays, tasks)
    ctx.at_exit(lambda: scancel(ids))
    for i, job in enumerate(ids):  # the ledger's rows, as the submitter records them
        claim = ledger.claim_submission(f"script:bench-{i}", stage="script",
                                        experiment="bench", backend="sbatch")
        array, _, task = job.partition("_")
        ledger.mark_submitted(claim.row_id, job, array_job_id=array, array_task_id=int(task))
    ledger.close()
    n = len(ids)
    say(f"  {n} held jobs queued; measuring the base ({BASE}) and this tree, {polls} polls")
    log = work / "calls.log"
    bin_dir = wrappers(work / "bin", log)
    base_calls, base_run = measure(base_tree(work / "base"), base_config(config_path),
                                   config.ledger_url, polls, work, bin_dir, log)
    new_calls, new_run = measure(ROOT, config_path, config.ledger_url, polls, work,
                                 bin_dir, log)
    say(f"  base: {dict(base_calls)}; this: {dict(new_calls)}")
    base_poll = per(base_calls, "tracker") / polls
    new_poll = per(new_calls, "tracker") / polls
    # the time Slurm's commands ran (the controller's and slurmdbd's work, as seen from
    # here); a whole sensor tick adds Dagster's own set-up, the same for both
    base_dur = base_run["took"]["tracker"] / polls
    new_dur = new_run["took"]["tracker"] / polls
    # the tracker's own measure of its poll, which sets its interval (5 x, at least 15 s)
    polled = [json.loads(c)["duration"] for c in new_run["cursors"] if c]
    new_interval = max(INTERVAL, 5 * statistics.median(polled)) if polled else INTERVAL
    base_hour = base_poll * 3600 / INTERVAL
    new_hour = new_poll * 3600 / new_interval
    base_exp = per(base_calls, "exporter") * 3600 / QUEUE_TTL
    new_exp = per(new_calls, "exporter") * 3600 / QUEUE_TTL
    kinds = ", ".join(f"{c} {k}" for (k, w), c in sorted(new_calls.items()) if w == "tracker")
    base_kinds = ", ".join(f"{c} {k}" for (k, w), c in sorted(base_calls.items())
                           if w == "tracker")
    b = f"base {BASE}"
    return [
        Result(BENCH, f"tracker: Slurm calls per poll, {n:,} held jobs (this: {kinds}; "
               f"base: {base_kinds}, over {polls} polls)", new_poll, "calls", base_poll, b),
        Result(BENCH, "tracker: time its Slurm commands ran, per poll", new_dur, "s",
               base_dur, b),
        Result(BENCH, f"tracker: Slurm calls per hour (interval {INTERVAL}s; this one "
               f"polls every {new_interval:.0f}s)", new_hour, "calls", base_hour, b),
        Result(BENCH, f"exporter: Slurm calls per hour (one queue reading per {QUEUE_TTL}s)",
               new_exp, "calls", base_exp, b),
        Result(BENCH, "installation: Slurm calls per hour at steady state (tracker + "
               "exporter)", new_hour + new_exp, "calls", base_hour + base_exp, b),
    ]
