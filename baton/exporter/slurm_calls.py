"""baton's own Slurm calls, as every process of the installation counted them in the state
folder (baton/slurm/budget.py): what the budget's alert and an admin watch. A read of one
small file, which its writers replace whole: never a Slurm call of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Metric

from baton.config import Config
from baton.slurm.budget import ProcessKind, read_calls

COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel")


def slurm_call_metrics(config: Config) -> Iterator[Metric]:
    counts = read_calls(config.state_dir)
    # every command and process kind from zero, so that a rate exists before the first call
    zeros = {(c, p): 0 for c in COMMANDS for p in get_args(ProcessKind)}
    fam = CounterMetricFamily("baton_slurm_calls", "Slurm commands baton ran (each retry "
                              "too), by command and kind of process (daemon, run, "
                              "exporter, command)", labels=["command", "process"])
    for (command, process), n in sorted({**zeros, **counts}.items()):
        fam.add_metric([command, process], n)
    yield fam
