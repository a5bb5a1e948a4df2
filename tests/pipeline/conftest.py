"""The pipeline's submissions on the real local backend, into the ledger of the test (SQLite
or PostgreSQL): every stage runs ``true`` with small resources."""

from __future__ import annotations

import pytest

from baton.config import Config
from baton.ledger import Ledger, open_ledger
from baton.slurm.local import LocalBackend


@pytest.fixture
def cfg(config: Config, ledger_url: str) -> Config:
    stages = {name: s.model_copy(update={"command": "true", "mem": "100M", "cpus": 1})
              for name, s in config.stages.items()}
    return config.model_copy(update={"database_url": ledger_url, "stages": stages})


@pytest.fixture
def ledger(cfg: Config) -> Ledger:
    return open_ledger(cfg.ledger_url, init=True)


@pytest.fixture
def backend(cfg: Config) -> LocalBackend:
    return LocalBackend(cfg.state_dir / "local")
