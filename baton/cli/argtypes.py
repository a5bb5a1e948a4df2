"""argparse types shared by the sub-commands: a bad value is argparse's usage error (exit 2,
one line naming the option and the value) before any command starts, never a traceback
from deeper down or a value the ledger, Slurm or a terminal cannot take."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
INT_MAX = 2**31 - 1  # the ledger's INTEGER columns (PostgreSQL's int4)


def usage_error(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` with its ValueError turned into argparse's usage error."""
    def check(value: str) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    check.__doc__ = parse.__doc__
    return check


def whole(low: int, high: int = INT_MAX) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if not low <= n <= high:
            raise ValueError(f"{value!r} is out of range ({low}..{high})")
        return n
    return usage_error(parse)


count = whole(1)  # an id, a --limit, a number of rows or epochs
integer = whole(-INT_MAX - 1)
non_negative = whole(0)
port_number = whole(0, 65535)  # 0: any free port


def name(what: str) -> Callable[[str], str]:
    """A name as folders, Slurm jobs and shell words take it (experiment, campaign...)."""
    from baton.layout import validate_name

    return usage_error(lambda value: validate_name(value, what))


def seconds(*, above_zero: bool = False) -> Callable[[str], float]:
    """A finite number of seconds, 0 or more (above 0 with ``above_zero``)."""
    def parse(value: str) -> float:
        try:
            n = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number of seconds") from None
        if not math.isfinite(n) or n < 0 or (above_zero and n == 0):
            raise ValueError(f"{value!r} is not a finite number of seconds "
                             f"{'above 0' if above_zero else '0 or more'}")
        return n
    return usage_error(parse)


def positive_number(value: str) -> float:
    """A finite number above 0 (a learning rate, a loss scale)."""
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not (math.isfinite(n) and n > 0):
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite number above 0")
    return n


def memory_mb(value: str) -> float:
    """``--mem`` as sbatch takes it (a whole size, not 0), in MB."""
    from baton.units import parse_memory_request_mb

    return usage_error(parse_memory_request_mb)(value)


def time_s(value: str) -> int:
    """``--time`` as sbatch takes it (not 0: that is no limit), in seconds."""
    from baton.units import parse_time_limit_seconds

    return usage_error(parse_time_limit_seconds)(value)


def memory_request(value: str) -> str:
    """``--mem`` checked as :func:`memory_mb`, kept as written for sbatch."""
    memory_mb(value)
    return value


def time_limit(value: str) -> str:
    """``--time`` checked as :func:`time_s`, kept as written for sbatch."""
    time_s(value)
    return value
