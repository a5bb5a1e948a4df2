"""2. Sensor tick cost vs the size of the drive: an idle tick and a tick with one new
signal, with 100 / 10,000 / 100,000 experiment folders, against a naive scan that globs
every experiment's signal file. Time, and calls on the drive (each one a round trip on
NFS)."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from baton.inbox import publish
from baton.layout import TRAINING_SIGNAL, DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import signals
from baton.scan import Scanner, checkpoint_problem
from baton.signals import TrainingComplete, read_signal, write_signal
from bench.common import FsCalls, Result, say
from bench.context import Context

TITLE = "sensor tick cost vs drive size (inbox vs naive glob)"
KIND = ["training_complete"]
VALIDATORS = {"training_complete": checkpoint_problem}


def populate(drive: DriveLayout, ledger: Ledger, start: int, stop: int) -> None:
    """Experiments ``start..stop`` trained and already recorded: a folder, its signal,
    its ledger row (written directly: setting up is not what is measured)."""
    rows = []
    now = datetime.now(UTC)
    for i in range(start, stop):
        name = f"exp-{i:06d}"
        folder = drive.models / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / TRAINING_SIGNAL
        path.write_text(json.dumps({"schema_version": 1, "experiment": name,
                                    "timestamp": now.isoformat(), "hostname": "gpu01",
                                    "user": "u", "checkpoint_path": str(folder)}))
        rows.append(dict(idempotency_key=f"training_complete:{name}:x", kind=KIND[0],
                         path=str(path), status="accepted", experiment=name,
                         file_mtime=path.lstat().st_mtime, seen_at=now))
        if len(rows) == 10_000 or i == stop - 1:
            with ledger.write() as conn:
                conn.execute(insert(signals), rows)
            rows = []


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


def naive_tick(drive: DriveLayout, ledger: Ledger) -> int:
    """The baseline: glob every experiment's signal file, stat it, handle what is new."""
    known = ledger.known_signal_files(KIND[0])
    new = 0
    for path in drive.models.glob(f"*/{TRAINING_SIGNAL}"):
        if known.get(str(path)) != path.lstat().st_mtime:
            sf = read_signal(path, drive, kind=KIND[0])
            if checkpoint_problem(sf) is None and ledger.accept_signal(sf):
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
             ) -> list[Result]:
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
    return [
        Result("2 sensor tick", f"idle tick, {label}", idle_b, "s", idle_n, base),
        Result("2 sensor tick", f"idle tick, {label}: drive calls", fs_idle_b.total, "calls",
               fs_idle_n.total, base),
        Result("2 sensor tick", f"tick with 1 new signal, {label}", new_b, "s", new_n, base),
        Result("2 sensor tick", f"tick with 1 new signal, {label}: drive calls",
               fs_new_b.total, "calls", fs_new_n.total, base),
        Result("2 sensor tick", f"periodic full rescan, {label}", full, "s", idle_n, base),
    ]


def run(ctx: Context) -> list[Result]:
    root = ctx.dir("scan")
    drive = DriveLayout(root / "drive")
    drive.create()
    ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
    names = (f"new-{i:06d}" for i in itertools.count())
    results: list[Result] = []
    have = 0
    try:
        for n in ctx.pick([100, 2_000], [100, 10_000, 100_000]):
            say(f"  populating {n:,} experiment folders")
            populate(drive, ledger, have, n)
            have = n
            results += one_size(drive, ledger, n, names)
    finally:
        ledger.close()
    return results
