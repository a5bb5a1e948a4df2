"""User-code evaluators for the harness tests (imported by path, as users do)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


class Counting:
    """Yields ``rows`` rows per dataset without holding them; ``broken`` raises midway;
    ``detail`` adds a prediction to every row."""

    def __init__(self, rows: int = 100, broken: str | None = None, detail: bool = False,
                 names: list[str] | None = None) -> None:
        self.rows = rows
        self.broken = broken
        self.detail = detail
        self.names = names or ["alpha", "beta", "gamma"]

    def datasets(self) -> list[str]:
        return self.names

    def load(self, checkpoint: Path) -> str:
        return checkpoint.name

    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        for i in range(self.rows):
            if dataset == self.broken and i == self.rows // 2:
                raise RuntimeError(f"{dataset} broke at row {i}")
            row = {"metric": "accuracy", "value": float(i % 2), "item_group": f"g{i % 3}",
                   "form": "f"}
            if self.detail:
                row["detail"] = {"item": i}
            yield row


class NotANumber(Counting):
    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        yield {"metric": "accuracy", "value": "high"}


class BadMetricName(Counting):
    """Good rows, then a metric name that is not a safe folder name."""

    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        for _ in range(3):
            yield {"metric": "accuracy", "value": 1.0}
        yield {"metric": "../escape", "value": 1.0}


class Typo(Counting):
    """A row with a misspelt key, which used to vanish silently."""

    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        yield {"metric": "accuracy", "value": 1.0, "item_gruop": "g1"}


class Dying(Counting):
    """The worker process evaluating ``dies`` exits abruptly (as if killed or out of memory)
    after writing part of its rows."""

    def __init__(self, dies: str = "beta", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.dies = dies

    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        for i, row in enumerate(super().evaluate(model, dataset)):
            if dataset == self.dies and i == self.rows // 2:
                os._exit(3)
            yield row


class FailsToConstruct(Counting):
    def __init__(self, **kwargs: object) -> None:
        raise RuntimeError("no GPU here")


class Recording(Counting):
    """Records, per dataset, the worker's pid, start and end times and BLAS settings in
    ``record_dir``. Before finishing, a dataset waits (at most ``meet_seconds``) until
    another dataset is in flight, so parallel workers overlap for sure and a serial run
    shows no overlap at all."""

    def __init__(self, record_dir: str, meet_seconds: float = 5, hold_seconds: float = 0.5,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.folder = Path(record_dir)
        self.meet_seconds = meet_seconds
        self.hold_seconds = hold_seconds

    def datasets(self) -> list[str]:
        return ["alpha", "beta", "gamma", "delta"]

    def _others_in_flight(self, dataset: str) -> bool:
        return any(p.stem != dataset and not (self.folder / f"{p.stem}.json").exists()
                   for p in self.folder.glob("*.started"))

    def evaluate(self, model: str, dataset: str) -> Iterator[dict]:
        start = time.time()
        (self.folder / f"{dataset}.started").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.meet_seconds
        while not self._others_in_flight(dataset) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(self.hold_seconds)
        yield from super().evaluate(model, dataset)
        record = {"pid": os.getpid(), "start": start, "end": time.time(),
                  "blas": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS",
                                                           "OPENBLAS_NUM_THREADS")}}
        (self.folder / f"{dataset}.json").write_text(json.dumps(record))
