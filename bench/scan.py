"""2. Sensor tick cost vs the size of the drive: an idle tick and a tick with one new
signal, with 100 / 10,000 / 100,000 experiment folders, against a naive scan that globs
every experiment's signal file. Time, and calls on the drive (each one a round trip on
NFS)."""

from __future__ import annotations

import json
import os
import time
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


def _measure(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds; ``fn(i)`` gets the repetition number (for fresh signals)."""
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def _counted(drive: DriveLayout, fn) -> FsCalls:  # type: ignore[no-untyped-def]
    fs = FsCalls(drive.root)
    with fs.active():
        fn()
    return fs


def one_size(ctx: Context, n: int, state: dict[str, int]) -> list[Result]:
    drive, ledger = state["drive"], state["ledger"]  # type: ignore[index]
    scanner = Scanner(drive, ledger, debounce_seconds=2.0, validators=VALIDATORS)
    repeat = 5 if n >= 100_000 else 9
    serial = state.setdefault("serial", 0)  # type: ignore[arg-type]

    def fresh(announce: bool) -> str:
        nonlocal serial
        serial += 1
        name = f"new-{serial:06d}"
        new_signal(drive, name, announce)
        return name

    def baton_new(_: int) -> None:
        assert len(scanner.tick(KIND).accepted) == 1

    def naive_new(_: int) -> None:
        assert naive_tick(drive, ledger) == 1

    results = []
    idle_b = _measure(lambda _: scanner.tick(KIND), repeat)
    idle_n = _measure(lambda _: naive_tick(drive, ledger), max(3, repeat // 2))
    fs_idle_b = _counted(drive, lambda: scanner.tick(KIND))
    fs_idle_n = _counted(drive, lambda: naive_tick(drive, ledger))
    # a tick that finds one new signal: a fresh one before every timed tick
    times_b, times_n = [], []
    for _ in range(max(3, repeat // 2)):
        fresh(True)
        times_b.append(_measure(baton_new, 1))
        fresh(False)
        times_n.append(_measure(naive_new, 1))
    fresh(True)
    fs_new_b = _counted(drive, lambda: scanner.tick(KIND))
    fresh(False)
    fs_new_n = _counted(drive, lambda: naive_tick(drive, ledger))
    full = _measure(lambda _: scanner.tick(KIND, full=True), max(3, repeat // 2))
    state["serial"] = serial
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    label = f"{n:,} experiments"
    naive = "naive glob"
    results += [
        Result("2 sensor tick", f"idle tick, {label}", idle_b, "s", idle_n, naive),
        Result("2 sensor tick", f"idle tick, {label}: drive calls", fs_idle_b.total, "calls",
               fs_idle_n.total, naive),
        Result("2 sensor tick", f"tick with 1 new signal, {label}", med(times_b), "s",
               med(times_n), naive),
        Result("2 sensor tick", f"tick with 1 new signal, {label}: drive calls",
               fs_new_b.total, "calls", fs_new_n.total, naive),
        Result("2 sensor tick", f"periodic full rescan, {label}", full, "s", idle_n, naive),
    ]
    say(f"  {label}: idle {idle_b * 1000:.2f} ms ({fs_idle_b.total} calls) vs naive "
        f"{idle_n * 1000:.1f} ms ({fs_idle_n.total} calls, {fs_idle_n.entries} entries "
        f"listed); new: {dict(fs_new_b.calls)} vs {dict(fs_new_n.calls)}")
    return results


def run(ctx: Context) -> list[Result]:
    sizes = ctx.pick([100, 2_000], [100, 10_000, 100_000])
    root = ctx.dir("scan")
    drive = DriveLayout(root / "drive")
    drive.create()
    ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
    state: dict = {"drive": drive, "ledger": ledger}
    results: list[Result] = []
    have = 0
    try:
        for n in sizes:
            say(f"  populating {n:,} experiment folders")
            populate(drive, ledger, have, n)
            have = n
            results += one_size(ctx, n, state)
    finally:
        ledger.close()
    return results
