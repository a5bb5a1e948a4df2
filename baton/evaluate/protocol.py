"""What an evaluator is: user code that, given a loaded checkpoint and a dataset, yields
result rows. Named in eval.yaml by an import path (``pkg.module:Class``) or by the name of
an entry point in the ``baton.evaluators`` group."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, TypedDict

from baton.errors import BatonError

ENTRY_POINT_GROUP = "baton.evaluators"


class Row(TypedDict, total=False):
    metric: str  # required: accuracy, perplexity, ...
    value: float  # required
    item_group: str  # e.g. subject_verb_agreement
    form: str  # e.g. singular
    detail: Mapping[str, Any]  # optional: what goes into predictions/{dataset}.parquet


class Evaluator(Protocol):
    def datasets(self) -> list[str]:
        """The datasets this evaluator knows (eval.yaml may choose a subset)."""
        ...

    def load(self, checkpoint: Path) -> Any:
        """Load the checkpoint once per dataset worker."""
        ...

    def evaluate(self, model: Any, dataset: str) -> Iterable[Row]:
        """Yield rows as they come: the harness streams them to Parquet."""
        ...


def load_evaluator(name: str, options: Mapping[str, Any] | None = None) -> Evaluator:
    """``pkg.module:Attr`` or an entry point name; a class is called with ``options``."""
    target: Any
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise BatonError(f"cannot import evaluator {name!r}: {exc}") from None
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise BatonError(f"no evaluator named {name!r} (entry points in "
                             f"{ENTRY_POINT_GROUP}: {', '.join(known) or 'none'}; or give "
                             "module:attribute)")
        target = found[0].load()
    evaluator = target(**(options or {})) if isinstance(target, type) else target
    for method in ("datasets", "load", "evaluate"):
        if not callable(getattr(evaluator, method, None)):
            raise BatonError(f"evaluator {name!r} has no {method}() method")
    return evaluator
