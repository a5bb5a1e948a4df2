"""The example evaluator: minimal pairs (accuracy: the grammatical sentence is more
probable) and held-out text (perplexity), for checkpoints of the example model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from baton.evaluate.protocol import Row
from baton.example.grammar import minimal_pairs, shipped_corpus
from baton.example.model import TinyLM

HELDOUT_FROM = 5400  # the example trainer trains on the corpus before this line


class ExampleEvaluator:
    def __init__(self, pairs_per_group: int = 100, fail_dataset: str | None = None) -> None:
        self.pairs_per_group = pairs_per_group
        self.fail_dataset = fail_dataset  # for tests and the demo: one dataset that breaks

    def datasets(self) -> list[str]:
        return ["minimal_pairs", "heldout"]

    def load(self, checkpoint: Path) -> TinyLM:
        return TinyLM.load(checkpoint)

    def evaluate(self, model: TinyLM, dataset: str) -> Iterator[Row]:
        if dataset == self.fail_dataset:
            raise RuntimeError(f"{dataset}: failing on purpose (fail_dataset)")
        if dataset == "minimal_pairs":
            for i, pair in enumerate(minimal_pairs(self.pairs_per_group)):
                good, bad = model.log_prob(pair.good), model.log_prob(pair.bad)
                yield Row(metric="accuracy", value=float(good > bad), item_group=pair.item_group,
                          form=pair.form, detail={"item": i, "good": pair.good, "bad": pair.bad,
                                                  "logp_good": good, "logp_bad": bad})
        elif dataset == "heldout":
            sentences = shipped_corpus()[HELDOUT_FROM:]
            for start in range(0, len(sentences), 100):
                chunk = sentences[start:start + 100]
                yield Row(metric="perplexity", value=model.perplexity(chunk),
                          item_group=f"chunk-{start // 100:02d}", form="text")
        else:
            raise ValueError(f"unknown dataset {dataset!r}; known: {self.datasets()}")
