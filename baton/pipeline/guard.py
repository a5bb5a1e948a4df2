"""The guard of a ledger that does not know the drive's history: an experiment about to
be evaluated whose results are already on the drive, while the ledger has no evaluation of
it, is held (nothing submitted) until the operator rebuilds the ledger (``baton db
rebuild``) or adopts the drive's results as the past of a new history (``baton db
adopt``). A lost ledger then never resubmits what was done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from baton.layout import DriveLayout
from baton.ledger import Ledger
from baton.pipeline.history import results_on_drive

HOLD_MESSAGE = ("held: the drive has results the ledger does not know; run `baton db "
                "rebuild` (or `baton db adopt EXPERIMENT...`)")


def held_back(ledger: Ledger, drive: DriveLayout, rows: Sequence[Any]) -> dict[str, list[str]]:
    """Of the training runs about to be evaluated (``training_awaiting_evaluation``), the
    experiments to hold, with what the drive has of each."""
    return held(ledger, drive, sorted({r.experiment_name for r in rows}))


def held(ledger: Ledger, drive: DriveLayout, experiments: Sequence[str]
         ) -> dict[str, list[str]]:
    """Of ``experiments``, those to hold, with what the drive has of each. The drive is
    asked only about experiments the ledger has never evaluated and nobody adopted."""
    out: dict[str, list[str]] = {}
    for experiment in sorted(ledger.unguarded(list(experiments))):
        if found := results_on_drive(drive, experiment):
            out[experiment] = found
    return out
