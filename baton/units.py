"""Slurm's units: memory (``32G``, ``4000M``) and time (``1-02:03:04``), both ways."""

from __future__ import annotations

import re

_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)(?:[nc])?$", re.IGNORECASE)
_MEM_REQUEST = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
_FACTOR_MB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_memory_mb(text: str) -> float:
    """``32G`` -> 32768.0 MB. sacct's ``4000Mn``/``4000Mc`` suffixes are accepted."""
    m = _MEM.match(text.strip())
    if not m:
        raise ValueError(f"invalid memory {text!r}: use a number with K, M, G or T (e.g. 32G)")
    return float(m.group(1)) * _FACTOR_MB[m.group(2).upper()]


def parse_memory_request_mb(text: str) -> float:
    """A memory request as sbatch's ``--mem`` takes it: a whole positive number with K, M,
    G or T. ``0`` is refused: Slurm reads it as all of a node's memory."""
    m = _MEM_REQUEST.match(text.strip())
    if not m:
        raise ValueError(f"invalid memory {text!r}: use a whole number with K, M, G or T "
                         "(e.g. 32G)")
    mb = float(m.group(1)) * _FACTOR_MB[m.group(2).upper()]
    if mb <= 0:
        raise ValueError(f"memory {text!r} is not allowed: Slurm reads 0 as all of a node's "
                         "memory; give an amount (e.g. 32G)")
    return mb


def format_memory(mb: float) -> str:
    """A whole-MB value for ``--mem`` (rounded up: never ask for less than meant)."""
    whole = int(-(-mb // 1))
    return f"{whole // 1024}G" if whole % 1024 == 0 else f"{whole}M"


def parse_time_seconds(text: str) -> int:
    """Slurm time formats: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``. ``--time=30`` means 30 minutes, as in sbatch."""
    t = text.strip()
    if not t or not re.fullmatch(r"[\d:.-]+", t):
        raise ValueError(f"invalid time {text!r}: use MM, HH:MM:SS or D-HH:MM:SS")
    days = 0
    if "-" in t:
        d, _, t = t.partition("-")
        if not d.isdigit():
            raise ValueError(f"invalid time {text!r}: use MM, HH:MM:SS or D-HH:MM:SS")
        days = int(d)
        parts = t.split(":")
        # D-HH, D-HH:MM, D-HH:MM:SS
        while len(parts) < 3:
            parts.append("0")
    else:
        parts = t.split(":")
        if len(parts) == 1:
            parts = ["0", parts[0], "0"]  # minutes
        elif len(parts) == 2:
            parts = ["0", *parts]  # MM:SS
    if len(parts) != 3 or not all(re.fullmatch(r"\d+(\.\d+)?", p) for p in parts):
        raise ValueError(f"invalid time {text!r}: use MM, HH:MM:SS or D-HH:MM:SS")
    h, m, s = (float(p) for p in parts)
    return int(days * 86400 + h * 3600 + m * 60 + s)


def parse_time_limit_seconds(text: str) -> int:
    """A time limit as sbatch's ``--time`` takes it (whole numbers only). ``0`` is refused:
    Slurm reads it as no limit at all."""
    if "." in text:
        raise ValueError(f"invalid time {text!r}: use whole numbers, MM, HH:MM:SS or "
                         "D-HH:MM:SS")
    seconds = parse_time_seconds(text)
    if seconds <= 0:
        raise ValueError(f"time limit {text!r} is not allowed: Slurm reads 0 as no limit; "
                         "give a limit (e.g. 02:00:00)")
    return seconds


def format_time(seconds: float) -> str:
    """Seconds -> ``D-HH:MM:SS`` (or ``HH:MM:SS`` under a day), rounded up to a second."""
    total = int(-(-seconds // 1))
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    hms = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}-{hms}" if days else hms


def parse_cpu_seconds(text: str) -> float | None:
    """sacct TotalCPU: ``MM:SS.mmm``, ``HH:MM:SS``, ``D-HH:MM:SS``; empty -> None."""
    t = text.strip()
    if not t:
        return None
    days = 0
    if "-" in t:
        d, _, t = t.partition("-")
        days = int(d)
    parts = [float(p) for p in t.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts
    return days * 86400 + h * 3600 + m * 60 + s
