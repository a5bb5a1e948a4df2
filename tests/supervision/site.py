"""A site for the supervisor's tests: a drive, a SQLite ledger and the real local backend,
with one evaluation stage whose command the test gives (and ``resubmit_failed`` on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from baton.config import Config, load_config
from baton.ledger import Ledger, open_ledger
from baton.slurm.factory import make_backend


def local_site(tmp_path: Path, command: str) -> tuple[Config, Ledger, Any, Path]:
    """(config, ledger, backend, the final checkpoint of ``exp1``, made on the drive)."""
    doc = {"shared_drive": str(tmp_path / "drive"), "state_dir": str(tmp_path / "state"),
           "database_url": f"sqlite:///{tmp_path / 'ledger.db'}",
           "slurm": {"backend": "local", "local_max_concurrent": 2},
           "stages": {"evaluation": {"time": "00:10:00", "mem": "100M", "cpus": 1,
                                     "command": command,
                                     "supervision": {"resubmit_failed": True}}}}
    (tmp_path / "baton.yaml").write_text(yaml.safe_dump(doc))
    config = load_config(tmp_path / "baton.yaml")
    config.drive.create()
    ledger = open_ledger(config.ledger_url, init=True)
    backend = make_backend(config, "local")
    final = config.drive.experiment("exp1").final_dir
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"\1")
    return config, ledger, backend, final
