"""A small neural language model in NumPy: two words of context -> embeddings -> tanh
layer -> softmax over the vocabulary. Trains on the shipped corpus in seconds on a CPU;
checkpoints are ``model.safetensors`` + ``metadata.json``, as the spec lays them out."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from baton.fsio import atomic_write

BOS, EOS_WORD, UNK = "<s>", ".", "<unk>"


@dataclass(frozen=True)
class Hyper:
    dim: int = 16
    hidden: int = 64
    lr: float = 0.2
    epochs: int = 3
    batch: int = 128
    seed: int = 0
    checkpoint_every: int = 200


def tokens(sentence: str) -> list[str]:
    words = sentence.split()
    return words if words and words[-1] == EOS_WORD else [*words, EOS_WORD]


class TinyLM:
    def __init__(self, vocab: list[str], params: dict[str, np.ndarray], hyper: Hyper) -> None:
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.p = params
        self.hyper = hyper

    @classmethod
    def init(cls, vocab: list[str], hyper: Hyper) -> TinyLM:
        rng = np.random.default_rng(hyper.seed)
        v, d, h = len(vocab), hyper.dim, hyper.hidden
        params = {
            "embed": rng.normal(0, 0.1, (v, d)).astype(np.float32),
            "w1": rng.normal(0, 1 / math.sqrt(2 * d), (2 * d, h)).astype(np.float32),
            "b1": np.zeros(h, np.float32),
            "w2": rng.normal(0, 1 / math.sqrt(h), (h, v)).astype(np.float32),
            "b2": np.zeros(v, np.float32),
        }
        return cls(vocab, params, hyper)

    def ids(self, words: Iterable[str]) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(w, unk) for w in words]

    def examples(self, sentences: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(context ids, target id) for every token of every sentence."""
        ctx, tgt = [], []
        bos = self.index[BOS]
        for s in sentences:
            ids = [bos, bos, *self.ids(tokens(s))]
            for i in range(2, len(ids)):
                ctx.append((ids[i - 2], ids[i - 1]))
                tgt.append(ids[i])
        return np.array(ctx, np.int64).reshape(-1, 2), np.array(tgt, np.int64)

    def _forward(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self.p["embed"][ctx].reshape(len(ctx), -1)
        h = np.tanh(x @ self.p["w1"] + self.p["b1"])
        logits = h @ self.p["w2"] + self.p["b2"]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return x, h, logp

    def log_prob(self, sentence: str) -> float:
        ctx, tgt = self.examples([sentence])
        return float(self._forward(ctx)[2][np.arange(len(tgt)), tgt].sum())

    def perplexity(self, sentences: list[str]) -> float:
        ctx, tgt = self.examples(sentences)
        logp = self._forward(ctx)[2][np.arange(len(tgt)), tgt]
        return float(math.exp(-logp.mean()))

    def step(self, ctx: np.ndarray, tgt: np.ndarray) -> float:
        """One SGD step on a batch; returns the batch's mean loss."""
        x, h, logp = self._forward(ctx)
        n = len(tgt)
        loss = float(-logp[np.arange(n), tgt].mean())
        grad = np.exp(logp)
        grad[np.arange(n), tgt] -= 1
        grad /= n
        g_w2 = h.T @ grad
        g_b2 = grad.sum(0)
        g_h = grad @ self.p["w2"].T * (1 - h * h)
        g_w1 = x.T @ g_h
        g_b1 = g_h.sum(0)
        g_x = (g_h @ self.p["w1"].T).reshape(n, 2, -1)
        lr = self.hyper.lr
        np.add.at(self.p["embed"], ctx, -lr * g_x)
        for name, g in (("w1", g_w1), ("b1", g_b1), ("w2", g_w2), ("b2", g_b2)):
            self.p[name] -= lr * g
        return loss

    # --- checkpoints ---------------------------------------------------------------------
    def save(self, folder: Path, **metadata: object) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.p, str(folder / "model.safetensors"))
        meta = {"vocab": self.vocab, "hyper": asdict(self.hyper), **metadata}
        atomic_write(folder / "metadata.json", json.dumps(meta, indent=2).encode())
        return folder

    @classmethod
    def load(cls, folder: Path) -> TinyLM:
        meta = json.loads((folder / "metadata.json").read_text())
        params = load_file(str(folder / "model.safetensors"))
        return cls(meta["vocab"], params, Hyper(**meta["hyper"]))


def build_vocab(sentences: Iterable[str]) -> list[str]:
    words = sorted({w for s in sentences for w in tokens(s)})
    return [BOS, UNK, *[w for w in words if w not in (BOS, UNK)]]


def train(sentences: list[str], hyper: Hyper,
          on_checkpoint: Callable[[TinyLM, int, float], None] | None = None) -> TinyLM:
    """Minibatch SGD over the sentences; ``on_checkpoint(model, step, loss)`` every
    ``checkpoint_every`` steps and at the end."""
    model = TinyLM.init(build_vocab(sentences), hyper)
    ctx, tgt = model.examples(sentences)
    rng = np.random.default_rng(hyper.seed)
    step, loss = 0, float("nan")
    for _ in range(hyper.epochs):
        order = rng.permutation(len(tgt))
        for i in range(0, len(order), hyper.batch):
            batch = order[i:i + hyper.batch]
            loss = model.step(ctx[batch], tgt[batch])
            step += 1
            if on_checkpoint and step % hyper.checkpoint_every == 0:
                on_checkpoint(model, step, loss)
    if on_checkpoint and step % hyper.checkpoint_every:
        on_checkpoint(model, step, loss)
    return model
