"""What the cluster allows, from Slurm's own answers (pure parsers, tested on real output):
MaxArraySize (``scontrol show config``: a batch larger than it becomes several arrays
instead of a refused sbatch) and what each partition allows one job (``scontrol --oneliner
show partition``: a retry never asks for more, which Slurm would refuse or leave pending
forever). The backend asks and caches them (baton/slurm/sbatch.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from baton.slurm.parse import parse_scontrol_record
from baton.units import parse_memory_mb, parse_time_seconds

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default, when scontrol does not say
_LINE = re.compile(r"^MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)


def parse_max_array_size(config_text: str) -> int | None:
    """MaxArraySize from ``scontrol show config``'s output; None when it is not there."""
    found = _LINE.search(config_text)
    return int(found.group(1)) if found else None


UNLIMITED = {"UNLIMITED", "NONE", "INFINITE", ""}


@dataclass(frozen=True)
class PartitionLimits:
    name: str
    default: bool = False
    max_time_s: int | None = None  # MaxTime; None: unlimited
    # MaxMemPerNode, and the node's memory in a partition of one node; None: unknown
    max_mem_mb: float | None = None


def parse_partitions(output: str) -> dict[str, PartitionLimits]:
    """``scontrol --oneliner show partition`` -> limits by partition name."""
    out: dict[str, PartitionLimits] = {}
    for line in output.splitlines():
        if not line.startswith("PartitionName="):
            continue
        rec = parse_scontrol_record(line)
        name = rec["PartitionName"]
        out[name] = PartitionLimits(name, rec.get("Default") == "YES",
                                    _time(rec.get("MaxTime", "")), _mem(rec))
    return out


def _time(text: str) -> int | None:
    return None if text.upper() in UNLIMITED else parse_time_seconds(text)


def _mem(rec: dict[str, str]) -> float | None:
    """The most one job may ask on one node: MaxMemPerNode, and never more than the node
    has (known from the partition's memory TRES when it has one node)."""
    caps: list[float] = []
    per_node = rec.get("MaxMemPerNode", "").upper()
    if per_node not in UNLIMITED:
        caps.append(parse_memory_mb(per_node))  # megabytes without a unit, as Slurm says
    tres = dict(p.partition("=")[::2] for p in rec.get("TRES", "").split(",") if "=" in p)
    if rec.get("TotalNodes") == "1" and tres.get("mem"):
        caps.append(parse_memory_mb(tres["mem"]))
    return min(caps) if caps else None


def partition_for(limits: dict[str, PartitionLimits], name: str | None
                  ) -> PartitionLimits | None:
    """The partition a job asked for, else the cluster's default one."""
    if name:
        return limits.get(name)
    return next((p for p in limits.values() if p.default), None)
