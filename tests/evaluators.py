"""User-code evaluators for the harness tests (imported by path, as users do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class Counting:
    """Yields ``rows`` rows per dataset without holding them; ``broken`` raises midway."""

    def __init__(self, rows: int = 100, broken: str | None = None) -> None:
        self.rows = rows
        self.broken = broken

    def datasets(self) -> list[str]:
        return ["alpha", "beta", "gamma"]

    def load(self, checkpoint: Path) -> str:
        return checkpoint.name

    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        for i in range(self.rows):
            if dataset == self.broken and i == self.rows // 2:
                raise RuntimeError(f"{dataset} broke at row {i}")
            yield {"metric": "accuracy", "value": float(i % 2), "item_group": f"g{i % 3}",
                   "form": "f"}


class NotANumber(Counting):
    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        yield {"metric": "accuracy", "value": "high"}
