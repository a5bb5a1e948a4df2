"""The backend baton.yaml asks for: sbatch on a cluster, the local runner on a laptop."""

from __future__ import annotations

from baton.config import Config
from baton.slurm.backend import SlurmBackend, choose_backend_name
from baton.slurm.budget import CallBudget, ProcessKind
from baton.slurm.local import LocalBackend
from baton.slurm.ratelimit import RateLimiter
from baton.slurm.sbatch import SbatchBackend
from baton.slurm.version import slurm_version


def make_backend(config: Config, name: str | None = None, process: ProcessKind = "command"
                 ) -> SlurmBackend:
    """``process`` is the kind of process calling Slurm, as the call counts say it (a
    sensor's polls, in the daemon, are skipped rather than wait long for the budget)."""
    chosen = choose_backend_name(name or config.slurm.backend)
    if chosen == "local":
        return LocalBackend(config.state_dir, config.slurm.local_max_concurrent)
    limiter = RateLimiter(config.state_dir / "sbatch.rate", config.slurm.submit_per_minute)
    budget = CallBudget(config.state_dir, config.slurm.calls_per_second,
                        config.slurm.calls_burst, process)
    return SbatchBackend(rate_limiter=limiter, attempts=config.slurm.retries,
                         base_delay=config.slurm.retry_base_seconds, budget=budget,
                         poll_wait=config.slurm.poll_wait_seconds if process == "daemon"
                         else None, ids_per_call=config.slurm.ids_per_call,
                         version=slurm_version())
