"""9. ``baton exporter`` under a burst of scrapers: the time to answer one scrape (a new
connection each, as Prometheus makes them) with 20 and 50 clients at once, against
prometheus-client's own ``start_http_server`` (the standard library's listen queue of 5,
where the kernel drops the SYNs beyond it and each dropped one costs its client a
second), both serving the same registry over the same ledger."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import start_http_server

from baton.config import load_config
from baton.exporter.server import build_registry, listen, metrics_app
from baton.ledger import open_ledger
from bench.common import Result, percentile, say
from bench.context import Context

TITLE = "exporter: scrape time with 20 and 50 concurrent scrapers vs a listen queue of 5"
BENCH = "9 exporter burst"


def _scrapes(port: int, clients: int, per_client: int) -> list[float]:
    url = f"http://127.0.0.1:{port}/metrics"

    def one(_: int) -> list[float]:
        out = []
        for _ in range(per_client):
            t = time.perf_counter()
            with urllib.request.urlopen(url, timeout=60) as r:
                r.read()
            out.append(time.perf_counter() - t)
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [s for batch in pool.map(one, range(clients)) for s in batch]


def _serving(start: Callable[[], tuple[int, Callable[[], None]]], clients: int,
             per_client: int) -> list[float]:
    port, stop = start()
    try:
        _scrapes(port, 2, 2)  # warm up: the first computation of the ledger's numbers
        return _scrapes(port, clients, per_client)
    finally:
        stop()


def run(ctx: Context) -> list[Result]:
    root = ctx.dir("exporter_burst")
    config = load_config(None, {"SHARED_DRIVE": str(root / "drive"),
                                "BATON_STATE_DIR": str(root / "state"),
                                "BATON_SLURM_BACKEND": "local"})
    config.drive.create()
    ledger = open_ledger(config.ledger_url, init=True)
    for i in range(200):
        ledger.claim_submission(f"k{i}", stage="evaluation", experiment=f"e{i % 20}",
                                backend="local")
    ledger.close()
    registry, collector = build_registry(config, queue_ttl=3600)
    collector.snapshot.start()
    ctx.at_exit(collector.ledger.close)

    def ours() -> tuple[int, Callable[[], None]]:
        httpd = listen("127.0.0.1", 0, metrics_app(registry))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()
        return httpd.server_address[1], stop

    def stock() -> tuple[int, Callable[[], None]]:
        httpd, _ = start_http_server(0, addr="127.0.0.1", registry=registry)

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()
        return httpd.server_address[1], stop

    per_client = ctx.pick(5, 20)
    results = []
    for clients in (20, 50):
        mine = _serving(ours, clients, per_client)
        base = _serving(stock, clients, per_client)
        say(f"  {clients} clients: baton p50 {statistics.median(mine) * 1000:.0f} ms, p95 "
            f"{percentile(mine, 95) * 1000:.0f} ms; stock p50 "
            f"{statistics.median(base) * 1000:.0f} ms, p95 {percentile(base, 95) * 1000:.0f} ms")
        stock_name = "start_http_server (queue 5)"
        results += [
            Result(BENCH, f"{clients} concurrent scrapers, median", statistics.median(mine),
                   "s", statistics.median(base), stock_name),
            Result(BENCH, f"{clients} concurrent scrapers, p95", percentile(mine, 95), "s",
                   percentile(base, 95), stock_name),
            Result(BENCH, f"{clients} concurrent scrapers, slowest", max(mine), "s",
                   max(base), stock_name),
        ]
    return results
