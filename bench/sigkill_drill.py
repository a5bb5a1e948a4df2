"""``python -m bench.sigkill_drill [--signals 30] [--kills 3] [--seed N]``: the SIGKILL
drill of issue 14 on the real Slurm, at full size and with random kills (the test suite's
tests/e2e/test_e2e_sigkill.py places three kills deterministically with 5 signals).

``--signals`` training signals land at once; the dagster-daemon's whole process group is
SIGKILLed ``--kills`` times at random moments while `submit_evaluation` runs are in
flight (one of them, at random, by the sbatch wrapper just before or just after a real
sbatch), and restarted 2 s later each time. The evaluation jobs are held until the
ledger holds every experiment's task, then released. The drill passes when every
experiment has exactly one evaluation, in the ledger and in Slurm (by its comment token),
and its `evaluation_metrics`. Prints one line; exits 1 on a violation."""

from __future__ import annotations

import argparse
import random
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

from dagster import DagsterRunStatus, RunsFilter

from baton.dagster_instance import RunMonitoring
from bench.context import scancel
from tests.e2e.harness import Pipeline
from tests.e2e.sbatch_killer import evaluation_tasks_in_slurm, install

JOB = "submit_evaluations"  # one run submits what a tick found due (sensors.batch)
IN_FLIGHT = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
MONITORING = RunMonitoring(start_timeout_seconds=30, max_runtime_seconds=60,
                           poll_interval_seconds=3)


def in_flight(p: Pipeline) -> bool:
    return bool(p.instance().get_run_records(
        RunsFilter(job_name=JOB, statuses=IN_FLIGHT), limit=1))


def kill_at_random(p: Pipeline, rng: random.Random, timeout: float = 600) -> bool:
    """SIGKILL the daemon's group a random 0-5 s after a submitting run is in flight (or
    see the sbatch wrapper do it); False when no run was in flight any more."""
    deadline = time.monotonic() + timeout
    while not in_flight(p):
        if p.daemon is not None and p.daemon.poll() is not None:
            return True  # the wrapper killed it
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    time.sleep(rng.uniform(0, 5))
    p.kill(signal.SIGKILL, group=True)
    return True


def revive(p: Pipeline) -> bool:
    """Restart the daemon 2 s after a kill of the sbatch wrapper that came late."""
    if p.daemon is not None and p.daemon.poll() is not None:
        p.daemon = None
        time.sleep(2)
        p.start()
    return False


def drill(tmp: Path, signals: int, kills: int, seed: int) -> tuple[list[str], str]:
    """The drill's violations, and what was killed (the daemon's kills; the sbatch
    wrapper's, from its log)."""
    rng = random.Random(seed)
    token = secrets.token_hex(3)
    exps = [f"drill{i}-{token}" for i in range(signals)]
    release = tmp / "release"
    wrapper_call = rng.randint(1, max(1, signals // 3))
    env = {**install(tmp, f"{wrapper_call}:{rng.choice(['before', 'after'])}"),
           "FAKE_EVAL_HOLD": ",".join(exps), "FAKE_EVAL_RELEASE": str(release)}
    p = Pipeline(tmp, "sbatch", env, slurm_config="  stale_claim_seconds: 20\n",
                 monitoring=MONITORING)
    done = 0
    p.start()
    try:
        for exp in exps:
            p.train(exp)
        for _ in range(kills):
            if not kill_at_random(p, rng):
                break
            done += 1
            if p.daemon is not None:
                p.daemon.wait(60)
            p.daemon = None
            time.sleep(2)
            p.start()
        p.wait_for("every experiment's evaluation task", lambda: revive(p) or all(
            any(t.slurm_job_id for t in p.ledger.evaluation_tasks(e)) for e in exps),
            timeout=1200)
        release.touch()
        for exp in exps:
            p.wait_for(f"evaluation_metrics of {exp}",
                       lambda e=exp: revive(p) or p.materialized("evaluation_metrics", e),
                       timeout=900)
    finally:
        release.touch()
        p.stop()
        scancel([j.job_id for j in p.ledger.jobs() if j.job_id and j.state in (
            "PENDING", "RUNNING")])
    calls = (tmp / "sbatch-calls.log").read_text().splitlines() \
        if (tmp / "sbatch-calls.log").exists() else []
    by_wrapper = [c for c in calls if "killed" in c]
    what = (f"{done} kills of the daemon's process group (the sbatch wrapper's: "
            f"{', '.join(by_wrapper) or 'none'}; {len(calls)} sbatch calls)")
    return violations(p, tmp, exps), what


def violations(p: Pipeline, tmp: Path, exps: list[str]) -> list[str]:
    """What breaks "exactly one evaluation per experiment", in the ledger and in Slurm
    (the tasks the drill's own sbatch calls submitted, by their comment tokens)."""
    out = []
    in_slurm = evaluation_tasks_in_slurm(tmp)
    for exp in exps:
        rows = p.ledger.jobs(experiment=exp, stage="evaluation")
        held = [(r.job_id, (r.metadata or {}).get("token")) for r in rows]
        if len(rows) != 1 or not set(held) <= set(in_slurm):
            out.append(f"{exp}: ledger {held}")
    if len(in_slurm) != len(exps):
        out.append(f"{len(in_slurm)} evaluation tasks in Slurm for {len(exps)} experiments")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sigkill_drill")
    parser.add_argument("--signals", type=int, default=30)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="baton-drill-") as tmp:
        bad, what = drill(Path(tmp), args.signals, args.kills, seed)
    took = time.monotonic() - started
    if bad:
        print(f"drill (seed {seed}, {what}): {len(bad)} of {args.signals} experiments not "
              "evaluated exactly once:\n  " + "\n  ".join(bad))
        return 1
    print(f"drill (seed {seed}): {args.signals} signals, {what}: every experiment "
          f"evaluated exactly once ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
