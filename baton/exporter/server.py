"""Serving /metrics: a registry with baton's collector plus the HTTP server of
prometheus-client."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from baton.slurm.backend import SlurmBackend
from baton.slurm.factory import make_backend
from baton.slurm.local import LocalBackend

log = logging.getLogger(__name__)


def queue_fetcher(backend: SlurmBackend) -> Callable[[], Counter[str]]:
    """How to count this user's queued jobs by state, for either backend."""
    if isinstance(backend, LocalBackend):
        def local() -> Counter[str]:
            ids = [p.stem for p in (backend.root / "jobs").glob("*.json")]
            return Counter(s.state for s in backend.status(ids).values() if not s.terminal)
        return local

    def slurm() -> Counter[str]:
        from baton.slurm.sbatch import run_command

        proc = run_command(["squeue", "--noheader", "--me", "--array", "--format=%T"])
        if proc.returncode != 0:
            raise RuntimeError(f"squeue failed: {(proc.stderr or proc.stdout).strip()}")
        return Counter(line.strip() for line in proc.stdout.splitlines() if line.strip())
    return slurm


def build_registry(config: Config, queue_ttl: float = 30) -> tuple[CollectorRegistry,
                                                                    BatonCollector]:
    registry = CollectorRegistry(auto_describe=False)
    queue = QueueSnapshot(queue_fetcher(make_backend(config)), queue_ttl)
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
