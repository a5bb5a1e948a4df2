"""The example evaluator, held: each task drops ``{release}.held.{pid}`` and waits for the
file ``release`` before it loads its checkpoint, so a test knows a task is running and
decides when it may end. Named in the drive's eval.yaml:
``evaluator: tests.e2e.held_eval:Held`` with ``options: {release: PATH}``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from baton.example.evaluator import ExampleEvaluator

MAX_HOLD_SECONDS = 1800  # a test that forgot to release does not leave jobs for ever


class Held(ExampleEvaluator):
    def __init__(self, release: str, **options: Any) -> None:
        super().__init__(**options)
        self.release = Path(release)

    def load(self, checkpoint: Path) -> Any:
        self.release.with_name(f"{self.release.name}.held.{os.getpid()}").touch()
        deadline = time.monotonic() + MAX_HOLD_SECONDS
        while not self.release.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return super().load(checkpoint)
