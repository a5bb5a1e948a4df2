"""A real Prometheus for the tests: its configuration written beside its data, its log in
``prometheus.log`` (what a failing test shows)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml


def start_prometheus(folder: Path, config: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    """``prometheus`` on 127.0.0.1:``port`` with ``config``, in a session of its own (the
    caller ends it); its files under ``folder``."""
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    with open(folder / "prometheus.log", "wb") as log:
        return subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
