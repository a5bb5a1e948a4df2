"""Serving /metrics: a registry with baton's collector plus the HTTP server of
prometheus-client."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, start_http_server

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from baton.slurm.factory import make_backend

log = logging.getLogger(__name__)


def build_registry(config: Config, queue_ttl: float = 30) -> tuple[CollectorRegistry,
                                                                    BatonCollector]:
    registry = CollectorRegistry(auto_describe=False)
    queue = QueueSnapshot(make_backend(config).queue_states, queue_ttl)
    collector = BatonCollector(config, open_ledger(config.ledger_url), queue)
    registry.register(collector)
    return registry, collector


def serve(config: Config, host: str, port: int, queue_ttl: float) -> None:
    registry, collector = build_registry(config, queue_ttl)
    collector.snapshot.start()
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("baton exporter on http://%s:%d/metrics", host, port)
    print(f"serving http://{host}:{port}/metrics (Ctrl-C stops)", flush=True)
    try:
        while thread.is_alive():
            time.sleep(1)
    finally:
        server.shutdown()
