"""2. Sensor tick cost vs the size of the drive: an idle tick and a tick with one new
signal, with 100 / 10,000 / 100,000 experiment folders, against a naive scan that globs
every experiment's signal file. Time, and calls on the drive (each one a round trip on
NFS). Measured twice: ``Scanner.tick`` alone (the part that touches the drive), and the
whole ``training_sensor`` and ``evaluation_sensor`` tick (bench/sensor_tick.py: the drive,
the ledger's queries over the experiments' settled history, the Dagster instance)."""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.pipeline.scan import CANONICAL, Scanner, checkpoint_problem
from baton.signals import EvalComplete, TrainingComplete, read_signal, write_signal
from bench.common import FsCalls, Result, say
from bench.context import Context
from bench.drive_fill import populate
from bench.sensor_tick import KINDS, Naive, Site, measure, new_evaluation

TITLE = "sensor tick cost vs drive size (inbox, whole sensors vs naive glob)"
KIND = ["training_complete"]
VALIDATORS = {"training_complete": checkpoint_problem}


def new_signal(drive: DriveLayout, name: str, announce: bool) -> Path:
    """What a training run leaves: a checkpoint and its signal (with its inbox marker when
    written through baton), old enough to be past the debounce."""
    exp = drive.experiment(name)
    exp.final_dir.mkdir(parents=True, exist_ok=True)
    (exp.final_dir / "model.bin").write_bytes(b"\0" * 64)
    sig = TrainingComplete(timestamp=datetime.now(UTC), experiment=name, hostname="gpu01",
                           user="u", checkpoint_path=str(exp.final_dir))
    path = publish(drive, sig) if announce else write_signal(exp.training_signal, sig)
    past = time.time() - 10
    os.utime(path, (past, past))
    return path


def bare_evaluation(drive: DriveLayout, name: str) -> Path:
    """An ``.eval_complete`` written by any tool (no marker), past the debounce."""
    path = write_signal(drive.experiment(name).eval_complete_signal, EvalComplete(
        timestamp=datetime.now(UTC), experiment=name, job_id="999", status="complete"))
    past = time.time() - 10
    os.utime(path, (past, past))
    return path


def naive_tick(drive: DriveLayout, ledger: Ledger, kinds: list[str] = KIND) -> int:
    """The baseline: glob every experiment's signal files of ``kinds`` (where Scanner's
    full rescan looks), stat each, handle what is new."""
    new = 0
    for kind in kinds:
        known = ledger.known_signal_files(kind)
        parts, patterns = CANONICAL[kind]
        for pattern in patterns:
            for path in drive.root.joinpath(*parts).glob(pattern):
                if known.get(str(path)) != path.lstat().st_mtime:
                    sf = read_signal(path, drive, kind=kind)
                    check = VALIDATORS.get(kind)
                    if (check is None or check(sf) is None) and ledger.accept_signal(sf):
                        new += 1
    return new


def _median_time(fn: Callable[[], object], repeat: int,
                 before: Callable[[], object] = lambda: None) -> float:
    """Median seconds of ``fn``, calling ``before`` untimed ahead of each call."""
    times = []
    for _ in range(repeat):
        before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _counted(drive: DriveLayout, fn: Callable[[], object]) -> FsCalls:
    fs = FsCalls(drive.root)
    with fs.active():
        fn()
    return fs


def one_size(drive: DriveLayout, ledger: Ledger, n: int, names: Iterator[str]
             ) -> tuple[list[Result], Naive]:
    scanner = Scanner(drive, ledger, debounce_seconds=2.0, validators=VALIDATORS)
    repeat = 5 if n >= 100_000 else 9

    def ours() -> None:
        scanner.tick(KIND)

    def naive() -> None:
        naive_tick(drive, ledger)

    def announced() -> None:  # a new signal written through baton (with its marker)
        new_signal(drive, next(names), announce=True)

    def bare() -> None:  # a new signal written by any tool (no marker)
        new_signal(drive, next(names), announce=False)

    few = max(3, repeat // 2)
    idle_b, idle_n = _median_time(ours, repeat), _median_time(naive, few)
    new_b, new_n = _median_time(ours, few, announced), _median_time(naive, few, bare)
    full = _median_time(lambda: scanner.tick(KIND, full=True), few)
    fs_idle_b, fs_idle_n = _counted(drive, ours), _counted(drive, naive)
    announced()
    fs_new_b = _counted(drive, ours)
    bare()
    fs_new_n = _counted(drive, naive)
    label, base = f"{n:,} experiments", "naive glob"
    say(f"  {label}: idle {idle_b * 1000:.2f} ms ({fs_idle_b.total} calls) vs naive "
        f"{idle_n * 1000:.1f} ms ({fs_idle_n.total} calls, {fs_idle_n.entries} entries "
        f"listed); new: {dict(fs_new_b.calls)} vs {dict(fs_new_n.calls)}")
    bench = "2 sensor tick"
    return [
        Result(bench, f"Scanner idle tick, {label}", idle_b, "s", idle_n, base),
        Result(bench, f"Scanner idle tick, {label}: drive calls", fs_idle_b.total, "calls",
               fs_idle_n.total, base),
        Result(bench, f"Scanner tick with 1 new signal, {label}", new_b, "s", new_n, base),
        Result(bench, f"Scanner tick with 1 new signal, {label}: drive calls",
               fs_new_b.total, "calls", fs_new_n.total, base),
        Result(bench, f"Scanner periodic full rescan, {label}", full, "s", idle_n, base),
    ], Naive(idle_n, fs_idle_n.total, new_n, fs_new_n.total)


def naive_evaluation(drive: DriveLayout, ledger: Ledger, n: int, names: Iterator[str]
                     ) -> Naive:
    """The naive glob over the evaluation signals (the evaluation sensor's baseline)."""
    few = 3 if n >= 100_000 else 4

    def naive() -> None:
        naive_tick(drive, ledger, KINDS["evaluation_sensor"])

    def bare() -> None:
        bare_evaluation(drive, next(names))

    idle, new = _median_time(naive, few), _median_time(naive, few, bare)
    fs_idle = _counted(drive, naive)
    bare()
    return Naive(idle, fs_idle.total, new, _counted(drive, naive).total)


def run(ctx: Context) -> list[Result]:
    root = ctx.dir("scan")
    drive = DriveLayout(root / "drive")
    drive.create()
    ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}", init=True)
    names = (f"new-{i:06d}" for i in itertools.count())
    trained = (f"tick-train-{i:06d}" for i in itertools.count())
    evaluated = (f"tick-eval-{i:06d}" for i in itertools.count())
    results: list[Result] = []
    have = 0
    try:
        site = Site(ctx, root, drive, ledger)
        for n in ctx.pick([100, 2_000], [100, 10_000, 100_000]):
            say(f"  populating {n:,} experiments (drive, ledger history, partitions)")
            populate(drive, ledger, have, n)
            site.add_partitions(n)
            have = n
            scanner_results, naive_training = one_size(drive, ledger, n, names)
            results += scanner_results
            results += measure(site, "training_sensor", n,
                               lambda name: new_signal(drive, name, announce=True), trained,
                               naive_training)
            results += measure(site, "evaluation_sensor", n,
                               lambda name: new_evaluation(site, name), evaluated,
                               naive_evaluation(drive, ledger, n, names))
    finally:
        ledger.close()
    return results
