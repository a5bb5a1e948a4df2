"""One baton's Slurm calls at steady state (benchmark 12), run as a script under the
PYTHONPATH of the tree measured (this branch, or the base commit's export), with counting
wrappers first on PATH: ``python bench/slurm_calls_worker.py CONFIG LEDGER_URL POLLS OUT``.
It runs the real tracker sensor POLLS times, each a fresh poll (no cursor: the base's
tracker has none, and this one's would wait its interval), then one exporter scrape; each
phase names itself to the wrappers (BENCH_WHO). It imports only what both trees have, so
one script measures both."""

from __future__ import annotations

import json
import os
import sys


def main(config_path: str, ledger_url: str, polls: int, out: str) -> None:
    from dagster import build_sensor_context
    from prometheus_client import generate_latest

    import resources
    from baton.config import load_config
    from baton.exporter.server import build_registry
    from sensors.tracker import build_tracker

    config = load_config(config_path, env={})
    tracker = build_tracker(config)
    res = {"slurm": resources.SlurmResource(settings=config, backend="sbatch"),
           "ledger": resources.LedgerResource(settings=config, url=ledger_url)}
    cursors = []
    for i in range(polls + 1):  # the first one settles the ledger: not measured
        os.environ["BENCH_WHO"] = "warmup" if i == 0 else "tracker"
        with build_sensor_context(resources=res) as ctx:  # no cursor: a poll every time
            tracker(ctx)
            if i:
                cursors.append(ctx.cursor)
    os.environ["BENCH_WHO"] = "exporter"
    registry, collector = build_registry(config)
    generate_latest(registry)
    collector.ledger.close()
    with open(out, "w") as f:
        json.dump({"cursors": cursors}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
