"""Benchmark 2's whole-sensor figures: ``training_sensor`` and ``evaluation_sensor`` from
sensors/signal_sensors.py, called as the daemon calls them (``build_sensor_context`` with a
temporary Dagster instance holding the experiments' partitions, the cursor of the previous
tick and baton's resources) over the drive and ledger of bench/drive_fill.py. Timed: the
sensor function (drive, ledger queries, Dagster instance calls, heartbeat); not timed:
building the context, writing the new signal and what the daemon and the runs would do
afterwards (add the partition, confirm the requested runs), done so that the next tick
starts settled again."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import insert

from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger
from baton.ledger.schema import evaluation_jobs, facts, signals, training_runs
from baton.signals import EvalComplete
from bench.common import FsCalls, Result, say
from bench.context import Context
from bench.drive_fill import experiment_name

BENCH = "2 sensor tick"
KINDS = {"training_sensor": ["training_complete"],
         "evaluation_sensor": ["eval_complete", "eval_failed"]}


@dataclass(frozen=True)
class Naive:
    """The naive glob scan's cost at this size (the baseline), per sensor."""

    idle: float
    idle_calls: int
    new: float
    new_calls: int


class Site:
    """The code location's two signal sensors against a temporary Dagster instance, with
    baton's resources on the benchmark's drive and ledger (``BATON_CONFIG`` set for the
    benchmark's duration)."""

    def __init__(self, ctx: Context, root: Path, drive: DriveLayout, ledger: Ledger) -> None:
        from dagster import DagsterInstance

        self.drive, self.ledger = drive, ledger
        config = root / "baton.yaml"
        config.write_text(yaml.safe_dump({
            "shared_drive": str(drive.root), "state_dir": str(root / "state"),
            "database_url": ledger.url,
            "sensors": {"interval_seconds": 30, "debounce_seconds": 2.0,
                        "full_rescan_seconds": 600,
                        # the tick asks for its submission: sbatch is not the tick's cost
                        "submit_in_tick": False}}))
        saved = {k: os.environ.get(k) for k in ("BATON_CONFIG", "SHARED_DRIVE",
                                                "BATON_STATE_DIR", "BATON_DATABASE_URL")}
        for var in saved:
            os.environ.pop(var, None)
        os.environ["BATON_CONFIG"] = str(config)
        from baton.config import load_config
        from resources import LedgerResource, MLflowResource, SharedDriveResource, SlurmResource
        from sensors.signal_sensors import build_signal_sensors

        settings = load_config(config)
        (root / "dagster").mkdir(exist_ok=True)
        self.instance = DagsterInstance.local_temp(tempdir=str(root / "dagster"))

        def restore() -> None:
            self.instance.dispose()
            for var, value in saved.items():
                os.environ.pop(var, None)
                if value is not None:
                    os.environ[var] = value

        ctx.at_exit(restore)
        self.sensors = {s.name: s for s in build_signal_sensors(settings)
                        if s.name in ("training_sensor", "evaluation_sensor")}
        self.resources = {"ledger": LedgerResource(settings=settings, url=ledger.url),
                          "drive": SharedDriveResource(settings=settings,
                                                       root=str(drive.root)),
                          "mlflow": MLflowResource(settings=settings),
                          "slurm": SlurmResource(settings=settings, backend="local")}
        self.cursors: dict[str, str | None] = dict.fromkeys(self.sensors)
        self.partitions = 0

    def add_partitions(self, stop: int) -> None:
        """The experiments' partitions, as the training sensor registered them."""
        names = [experiment_name(i) for i in range(self.partitions, stop)]
        for i in range(0, len(names), 10_000):
            self.instance.add_dynamic_partitions("experiments", names[i:i + 10_000])
        self.partitions = stop

    def tick(self, name: str, cursor: str | None = None, fs: FsCalls | None = None
             ) -> tuple[Any, float]:
        """One tick with the sensor's last cursor (or ``cursor``); returns the result and
        the seconds the sensor function took. The cursor it returns is kept."""
        from dagster import build_sensor_context

        with build_sensor_context(  # the resources' nested settings live in its scope
                instance=self.instance, resources=self.resources,
                cursor=cursor if cursor is not None else self.cursors[name]) as context, \
                fs.active() if fs else contextlib.nullcontext():
            t = time.perf_counter()
            result = self.sensors[name](context)
            elapsed = time.perf_counter() - t
        if result.cursor is not None:
            self.cursors[name] = result.cursor
        return result, elapsed

    def settle(self, result: Any) -> None:
        """What follows a tick that asked for something: the daemon adds the partitions
        and launches the runs; the next tick confirms the model event and the runs (here
        recorded directly as the facts that tick would record)."""
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name,
                                                 list(request.partition_keys or []))
        for request in result.run_requests or []:  # a batch run confirms each request
            ops = (request.run_config or {}).get("ops", {}).values()
            for key in [k for op in ops for k in op["config"]["requests"]] or \
                    [request.run_key]:
                self.ledger.record_fact(f"run:{key}", "run_requested")
        from dagster import AssetMaterialization

        for event in result.asset_events or []:
            if isinstance(event, AssetMaterialization):
                value = event.metadata.get("signal_key")
                key = getattr(value, "value", value)
                self.ledger.record_fact(f"model:{key}", "model_reported", event.partition)

    def settle_all(self, name: str) -> None:
        """Tick (a full pass first) until nothing is left to ask: what the benchmark's
        earlier parts added gets confirmed, and the cursor carries the marks."""
        self.cursors[name] = None
        for _ in range(5):
            result, _ = self.tick(name)
            if not (result.run_requests or result.asset_events
                    or result.dynamic_partitions_requests):
                return
            self.settle(result)
        raise RuntimeError(f"{name} did not settle: {result}")


def new_evaluation(site: Site, name: str) -> None:
    """An experiment whose evaluation is queued (its training settled), then its
    ``.eval_complete`` lands (with its inbox marker), past the debounce."""
    now = datetime.now(UTC)
    drive, key = site.drive, f"training_complete:{name}:bench"
    ckpt = str(drive.experiment(name).final_dir)
    with site.ledger.write() as conn:
        conn.execute(insert(signals).values(
            idempotency_key=key, kind="training_complete", status="accepted",
            path=str(drive.experiment(name).training_signal), experiment=name, seen_at=now))
        run = conn.execute(insert(training_runs).values(
            experiment_name=name, status="completed", completed_at=now, signal_key=key,
            checkpoint_path=ckpt)).inserted_primary_key[0]
        conn.execute(insert(facts), [dict(key=f"{p}{key}", kind=k, experiment=name,
                                          created_at=now)
                                     for p, k in (("model:", "model_reported"),
                                                  ("run:evaluation_job:", "run_requested"))])
        conn.execute(insert(evaluation_jobs).values(
            experiment_name=name, training_run_id=run, status="queued", trigger_key=key,
            checkpoint_path=ckpt, slurm_job_id="999", submitted_at=now))
    site.instance.add_dynamic_partitions("experiments", [name])
    path = publish(drive, EvalComplete(timestamp=now, experiment=name, job_id="999",
                                       status="complete"))
    past = time.time() - 10
    os.utime(path, (past, past))


def measure(site: Site, name: str, n: int, new_signal: Callable[[str], None],
            names: Iterator[str], naive: Naive) -> list[Result]:
    """Idle ticks (each carrying the previous tick's cursor, with its marks), ticks that
    find one new signal, and the periodic full pass (no marks, the drive rescanned)."""
    site.settle_all(name)
    repeat = 5 if n >= 100_000 else 9
    few = max(3, repeat // 2)

    def idle_tick(fs: FsCalls | None = None) -> float:
        result, elapsed = site.tick(name, fs=fs)
        if result.run_requests or result.asset_events or result.dynamic_partitions_requests:
            raise RuntimeError(f"{name} was not idle: {result}")
        return elapsed

    idle = sorted(idle_tick() for _ in range(repeat))[repeat // 2]
    fs_idle = FsCalls(site.drive.root)
    idle_tick(fs_idle)

    def with_new(fs: FsCalls | None = None) -> float:
        new_signal(next(names))
        result, elapsed = site.tick(name, fs=fs)
        if not result.run_requests:
            raise RuntimeError(f"{name} did not act on the new signal: {result}")
        site.settle(result)
        site.tick(name)  # the marks move past what was just confirmed
        return elapsed

    new = sorted(with_new() for _ in range(few))[few // 2]
    fs_new = FsCalls(site.drive.root)
    with_new(fs_new)
    full_cursor = json.dumps({"last_full_rescan": 0})  # due, and no marks
    full = sorted(site.tick(name, cursor=full_cursor)[1] for _ in range(3))[1]
    site.settle_all(name)
    label, base = f"{name}, {n:,} experiments", "naive glob"
    say(f"  {label}: idle {idle * 1000:.2f} ms ({fs_idle.total} drive calls), new signal "
        f"{new * 1000:.1f} ms ({dict(fs_new.calls)}), full pass {full * 1000:.0f} ms; naive "
        f"{naive.idle * 1000:.1f} ms ({naive.idle_calls} calls)")
    return [
        Result(BENCH, f"{label}: idle tick (cursor with marks)", idle, "s", naive.idle, base),
        Result(BENCH, f"{label}: idle tick, drive calls", fs_idle.total, "calls",
               naive.idle_calls, base),
        Result(BENCH, f"{label}: tick with 1 new signal", new, "s", naive.new, base),
        Result(BENCH, f"{label}: tick with 1 new signal, drive calls", fs_new.total, "calls",
               naive.new_calls, base),
        Result(BENCH, f"{label}: periodic full pass", full, "s", naive.idle, base),
    ]
