"""One rounding convention and one way of naming an aggregate, for everything the analysis
writes (the report, its CSV and LaTeX tables, the campaign summary): a reader comparing
two numbers from two files compares the same thing, at the same precision."""

from __future__ import annotations

import math
from typing import Any

DECIMALS = 3  # every fractional number, whatever its size: 0.390, 0.570, 24.680
FINAL = "final checkpoint"
MEAN_OVER_CHECKPOINTS = "mean over checkpoints"


def rounded(value: float) -> float:
    """``value`` at the convention's precision (what the CSV files hold)."""
    return round(float(value), DECIMALS)


def fmt(value: Any) -> str:
    """How a cell is shown (HTML, LaTeX): floats with ``DECIMALS`` decimals, trailing
    zeros kept so a column lines up; NaN as an empty cell; anything else as text."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{DECIMALS}f}"
    return "" if value is None else str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def labelled(name: str, aggregation: str) -> str:
    """``heldout/perplexity (final checkpoint)``: an aggregate says how it was taken."""
    return f"{name} ({aggregation})"
