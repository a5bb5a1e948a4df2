"""Benchmark jobs that Slurm accepts but never runs: every script carries ``--hold``, so
the node stays free for everyone else; the benchmark cancels them afterwards."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from baton.config import Config, load_config


def held_template(folder: Path) -> Path:
    """baton's own job template with ``#SBATCH --hold`` after the shebang."""
    from importlib.resources import files

    text = (files("baton.slurm") / "templates" / "job.sh.j2").read_text()
    shebang, rest = text.split("\n", 1)
    path = folder / "held_job.sh.j2"
    path.write_text(f"{shebang}\n#SBATCH --hold\n{rest}")
    return path


SKIPPED = "no running Slurm (sbatch on PATH and sinfo answering): skipped"


def slurm_available() -> bool:
    """Slurm installed *and* running: ``sbatch`` on PATH and ``sinfo`` reaching the
    controller (installed but stopped, sinfo fails and the Slurm benchmarks are skipped,
    as ``./dev bench`` says)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo"], capture_output=True, timeout=30,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def held_config(root: Path, **sensors: float) -> Path:
    """A baton.yaml for real Slurm whose evaluation and analysis jobs are held."""
    root.mkdir(parents=True, exist_ok=True)
    template = held_template(root)
    stage = {"time": "00:01:00", "mem": "100M", "cpus": 1, "command": "true",
             "template": str(template)}
    doc = {"shared_drive": str(root / "drive"), "state_dir": str(root / "state"),
           # the benchmarks measure baton, not the call budget that paces it on a site
           "slurm": {"backend": "sbatch", "submit_per_minute": 100_000,
                     "calls_per_second": 1000, "calls_burst": 100_000},
           "sensors": {"interval_seconds": 1, "debounce_seconds": 0.2,
                       "full_rescan_seconds": 600, **sensors},
           "stages": {"evaluation": stage, "analysis": stage}}
    path = root / "baton.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def load(path: Path) -> Config:
    config = load_config(path, {})
    config.drive.create()
    return config
