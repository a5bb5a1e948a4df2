"""The ledger's numbers are computed off the scrape: a quick computation is fresh for every
scrape, a slow one never holds a scrape past its wait (the last result is served, with its
age), a heavy one is not repeated before the exporter has rested, and a failure is
reported, not served as if fresh."""

from __future__ import annotations

import threading

import pytest

from baton.exporter.snapshot import Snapshot, Stale


def test_a_quick_computation_is_fresh_for_every_scrape() -> None:
    calls = []
    snap = Snapshot(lambda: calls.append(1) or len(calls))
    assert [snap.get()[0] for _ in range(5)] == [1, 2, 3, 4, 5]


def test_a_slow_computation_never_holds_the_scrape() -> None:
    gates = [threading.Event() for _ in range(10)]  # computation i ends when gate i opens
    calls = []

    def compute() -> int:
        i = len(calls)
        calls.append(i)
        gates[i].wait()
        return i

    snap = Snapshot(compute, wait=0.05, rest_factor=0)  # no rest: the next one starts at once
    with pytest.raises(Stale, match="still being computed for the first time"):
        snap.get()  # the first computation is still running: nothing to serve yet
    gates[0].set()
    assert snap.get()[0] == 0  # the first result, waited for or served while the next runs
    value, age = snap.get()  # the next computation is blocked: the last result is served
    assert (value, len(calls)) == (0, 2) and age >= 0
    gates[1].set()
    with snap.cond:
        assert snap.cond.wait_for(lambda: snap.generation == 2, timeout=30)
    assert snap.get()[0] == 1  # the new result is served once its computation ended
    for gate in gates:
        gate.set()


def test_a_heavy_computation_is_not_repeated_before_the_rest() -> None:
    gate = threading.Event()
    calls = []

    def compute() -> int:
        calls.append(1)
        gate.wait()
        return len(calls)

    # longer than the wait: heavy; the rest is a million times as long as it took
    snap = Snapshot(compute, wait=0.01, rest_factor=1e6)
    with pytest.raises(Stale):
        snap.get()
    gate.set()
    with snap.cond:
        assert snap.cond.wait_for(lambda: snap.generation == 1, timeout=30)
    assert [snap.get()[0] for _ in range(3)] == [1, 1, 1]
    assert len(calls) == 1


def test_a_failed_computation_is_reported_then_recovered() -> None:
    fail = [True]

    def compute() -> str:
        if fail[0]:
            raise OSError("database is locked")
        return "ok"

    snap = Snapshot(compute)
    with pytest.raises(Stale, match="OSError: database is locked"):
        snap.get()
    fail[0] = False
    assert snap.get()[0] == "ok"
