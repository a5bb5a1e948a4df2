"""Benchmark 15 (issue 15): a sweep finishes. N training signals are written at once into
a real dagster-daemon's drive; the pipeline runs to the last analysis recorded in Dagster,
on the real Slurm and on the local backend. Measured for ``sensors.batch: true`` (one run
per tick that has work, one array for the evaluations due) against the baseline
``sensors.batch: false`` (a run per signal and stage) in the same run: sbatch calls
(counted by a wrapper first on the daemon's PATH, the real sbatch behind it), Dagster runs
the sensors launched (the schedules' runs left out), time to the last evaluation accepted
by Slurm, time to the last ``analysis_report`` materialized, and the peak resident memory
and CPU seconds of the daemon's process tree (its code servers and runs included)."""

from __future__ import annotations

import contextlib
import time

from dagster import AssetKey, AssetRecordsFilter, RunsFilter

from bench.common import Result, say
from bench.context import Context, scancel
from bench.slurm_held import slurm_available
from tests.e2e.harness import Pipeline
from tests.e2e.sbatch_killer import install

TITLE = "a burst of training signals: one run and one array per tick vs a run per signal"
BENCH = "15 burst"
INTERVAL = 5  # the sensors.interval_seconds


WHOLE = 100  # up to this many signals the flow is followed to its last report
BASELINE_CAP = 600.0  # seconds the per-signal baseline is given beyond WHOLE


def run(ctx: Context) -> list[Result]:
    sizes = ctx.pick([10], [10, 100, 1000])
    backends = ["sbatch", "local"] if slurm_available() else ["local"]
    results: list[Result] = []
    for backend in backends:
        for n in sizes:
            figures = {}
            for batch in (True, False):
                figures[batch] = one(ctx, backend, n, batch)
                ctx.close()  # the daemon stops and its jobs are cancelled
            results += _compare(backend, n, figures[True], figures[False])
    return results


def one(ctx: Context, backend: str, n: int, batch: bool) -> dict[str, float]:
    """One burst of ``n`` signals. Up to ``WHOLE`` signals it is followed to the last
    report; beyond, to the last evaluation accepted (a thousand evaluations and analyses
    are most of an hour of jobs on two cores, not orchestration), and the per-signal
    baseline is stopped after ``BASELINE_CAP`` seconds with what it submitted by then."""
    name = f"burst-{backend}-{n}-{'batch' if batch else 'per-signal'}"
    root = ctx.dir(name)
    pipe = Pipeline(root, backend, install(root, ""))
    pipe.config_file.write_text(pipe.config_file.read_text().replace(
        "sensors:\n  interval_seconds: 1\n",
        f"sensors:\n  interval_seconds: {INTERVAL}\n  batch: {str(batch).lower()}\n"))
    ctx.at_exit(lambda: scancel([r.job_id for r in pipe.ledger.jobs() if r.job_id]))
    ctx.at_exit(pipe.stop)
    pipe.start()
    pipe.wait_for("the training sensor's first tick",
                  lambda: "training_sensor" in pipe.ledger.heartbeats(), timeout=300)
    assert pipe.daemon is not None
    tree = Tree(pipe.daemon.pid)
    idle = tree.sample_rss(10)
    cpu0 = tree.cpu_seconds()
    exps = [f"{name}-{i:04d}" for i in range(n)]
    start = time.time()
    for exp in exps:
        pipe.train(exp)
    say(f"  {name}: {n} signals written in {time.time() - start:.2f}s")
    whole = n <= WHOLE
    cap = None if batch or whole else start + BASELINE_CAP
    peak = idle
    done = 0
    instance = pipe.instance()
    deadline = time.monotonic() + 600 + 6 * n
    while done < n and (cap is None or time.time() < cap):
        assert time.monotonic() < deadline, f"{name}: {done}/{n} after the deadline\n" \
            + pipe.log_tail()
        peak = max(peak, tree.rss_mb())
        done = len(_reports(instance, n)) if whole else len(_accepted(pipe))
        time.sleep(1)
    cpu = tree.cpu_seconds() - cpu0
    evals = _accepted(pipe)
    runs = [r.dagster_run for r in instance.get_run_records(RunsFilter())
            if "dagster/schedule_name" not in r.dagster_run.tags]
    calls = root / "sbatch-calls.log"
    eval_arrays = len({r.script_path for r in evals})  # one rendered script per sbatch
    figures = {
        "sbatch calls, evaluations": float(eval_arrays),
        "Dagster runs launched by the sensors": float(len(runs)),
        "daemon tree RSS, idle": idle,
        "daemon tree RSS, peak": peak,
        "daemon tree CPU seconds": cpu,
    }
    if len(evals) < n:  # the baseline, stopped at its cap
        figures["evaluations accepted when stopped"] = float(len(evals))
    else:
        figures["time to the last evaluation accepted"] = \
            max(r.submitted_at.timestamp() for r in evals) - start
    if whole:
        figures["sbatch calls, all"] = float(
            len(calls.read_text().splitlines()) if calls.exists() else eval_arrays
            + len({r.script_path for r in pipe.ledger.jobs(stage="analysis")}))
        figures["time to the last analysis_report in Dagster"] = \
            max(r.timestamp for r in _reports(instance, n)) - start
    say(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    return figures


def _reports(instance, n: int) -> list:  # type: ignore[no-untyped-def,type-arg]
    """The latest ``analysis_report`` materialization of each partition."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("analysis_report")), limit=n + 10).records
    return list({r.partition_key: r for r in records}.values())


def _accepted(pipe: Pipeline) -> list:  # type: ignore[type-arg]
    return [r for r in pipe.ledger.jobs(stage="evaluation") if r.submitted_at and r.job_id]


def _compare(backend: str, n: int, new: dict[str, float], old: dict[str, float]
             ) -> list[Result]:
    where = "Slurm" if backend == "sbatch" else "local backend"
    stopped = old.get("evaluations accepted when stopped")
    name = "sensors.batch: false" if stopped is None else \
        f"sensors.batch: false, stopped after {BASELINE_CAP:.0f} s with {stopped:.0f} of " \
        f"{n} evaluations accepted"
    out = []
    for figure, value in new.items():
        if figure.startswith("sbatch") and backend != "sbatch":
            continue
        unit = "MB" if "RSS" in figure else "s" if ("time" in figure or "CPU" in figure) \
            else "calls" if figure.startswith("sbatch") else "runs"
        out.append(Result(BENCH, f"{n} signals, {where}: {figure}", value, unit,
                          old.get(figure), name))
    out.append(Result(BENCH, f"{n} signals, {where}: peak RSS / idle RSS",
                      new["daemon tree RSS, peak"] / new["daemon tree RSS, idle"], "",
                      old["daemon tree RSS, peak"] / old["daemon tree RSS, idle"], name))
    return out


class Tree:
    """The daemon's process tree: its code servers and the runs it launched."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)

    def _procs(self) -> list:  # type: ignore[type-arg]
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            return [self.root, *self.root.children(recursive=True)]
        return []

    def rss_mb(self) -> float:
        import psutil

        total = 0
        for p in self._procs():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / 1e6

    def sample_rss(self, seconds: float) -> float:
        """The highest RSS over ``seconds`` of idle ticks."""
        found = 0.0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = max(found, self.rss_mb())
            time.sleep(0.5)
        return found

    def cpu_seconds(self) -> float:
        """CPU of the live processes and of the children each has reaped (a run's
        process, once it ended, is counted by the daemon that waited for it)."""
        import psutil

        total = 0.0
        for p in self._procs():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total
