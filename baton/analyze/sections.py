"""The report's three parts, each a table (and a figure of it) with a caption that says
what it shows and how it was computed: accuracy per item group, learning curves, and the
campaign side by side. Every aggregate is named by its aggregation; every number is
rounded by :mod:`baton.analyze.numbers`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baton.analyze.data import Metrics, step_of
from baton.analyze.numbers import FINAL, fmt, labelled, rounded
from baton.analyze.outputs import Section, plt, save_figure
from baton.analyze.provenance import Scalar
from baton.analyze.stats import bootstrap_ci

CHANCE = 0.5  # accuracy on two-choice minimal pairs by guessing
CI = "95% bootstrap CI"
N_BOOT = 2000
BOOT = (f"95% percentile bootstrap confidence interval of the mean ({N_BOOT} resamples of "
        "the items)")
CHANCE_TEXT = f"The dashed line is chance ({fmt(CHANCE)}: one of two sentences guessed)."


@dataclass
class Member:
    """One experiment of the comparison: its final checkpoint and hyperparameters."""

    name: str
    final: str
    final_step: int | None
    hyper: dict[str, Scalar]


def _ci_row(values: np.ndarray) -> tuple[float, float, float]:
    mean, low, high = bootstrap_ci(values, n_boot=N_BOOT)
    return rounded(mean), rounded(low), rounded(high)


def _at(final: str, step: int | None) -> str:
    return f"{final} (step {step})" if step is not None and final == "final" else final


def accuracy_by_group(m: Metrics, me: Member, figures: Path, files: list[Path]) -> Section:
    groups = m.query("SELECT DISTINCT item_group FROM m WHERE experiment = ? AND "
                     "checkpoint = ? AND metric = 'accuracy' ORDER BY 1",
                     [me.name, me.final]).column("item_group")
    rows = []
    for g in groups:
        values = m.values(me.name, me.final, g, "accuracy")
        rows.append((g, len(values), *_ci_row(values)))
    at = _at(me.final, me.final_step)
    section = Section(
        "accuracy_by_group", "Accuracy by item group",
        f"Accuracy of {me.name} per item group at its {FINAL}, {at}: the mean over the "
        f"group's items (1: the model found the grammatical sentence more probable), with "
        f"the {BOOT}.",
        ["item_group", "items", labelled("accuracy", FINAL), "95% CI low", "95% CI high"],
        rows)
    if rows:
        fig, ax = plt.subplots(figsize=(8, 4))
        means = np.array([r[2] for r in rows])
        err = np.array([[r[2] - r[3] for r in rows], [r[4] - r[2] for r in rows]])
        ax.bar(range(len(rows)), means, yerr=err, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(rows)), [r[0] for r in rows], rotation=20, ha="right")
        ax.axhline(CHANCE, color="grey", ls="--", lw=1, label=f"chance ({fmt(CHANCE)})")
        ax.legend(fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"accuracy, {FINAL} ({CI})")
        ax.set_title(f"{me.name}: minimal pairs at {at}")
        paths, section.figure, section.legend = save_figure(fig, figures, section.name)
        files += paths
        section.figure_caption = (f"Bars: the accuracy per item group at the {FINAL}; "
                                  f"whiskers: the {BOOT}. {CHANCE_TEXT}")
    return section


def learning_curve(m: Metrics, me: Member, figures: Path, files: list[Path]) -> Section:
    curve = m.query("SELECT checkpoint, dataset, metric, avg(value) AS mean, count(*) AS n "
                    "FROM m WHERE experiment = ? GROUP BY 1, 2, 3", [me.name])
    rows = [(c, step_of(c, me.final_step), "yes" if c == me.final else "", d, met,
             rounded(v), n) for c, d, met, v, n in curve.rows]
    # "final" is a copy of the last checkpoint: one point per step, the final one kept
    rows = [r for r in rows if r[2] or not any(
        o[2] and o[1] == r[1] and (o[3], o[4]) == (r[3], r[4]) for o in rows)]
    rows.sort(key=lambda r: (r[3], r[4], r[1] if r[1] is not None else -1))
    section = Section(
        "learning_curve", "Learning curves",
        f"Each dataset's metric of {me.name} at every evaluated checkpoint: the mean over "
        f"the items (rows: how many). The checkpoint marked final is the {FINAL} "
        f"({_at(me.final, me.final_step)}), the one the other tables report.",
        ["checkpoint", "step", "final", "dataset", "metric", "mean over items", "rows"], rows)
    series = sorted({(r[3], r[4]) for r in rows if r[1] is not None})
    if series:
        fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.5),
                                 squeeze=False)
        for ax, (d, met) in zip(axes[0], series, strict=True):
            pts = sorted((r[1], r[5], bool(r[2])) for r in rows
                         if (r[3], r[4]) == (d, met) and r[1] is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color="#4c72b0")
            for step, value, final in pts:
                if final:
                    ax.plot([step], [value], marker="*", ms=14, color="#c44e52", ls="",
                            label=f"{FINAL} (step {step})")
                    ax.legend(fontsize=8)
            ax.set_xlabel("training step")
            ax.set_ylabel(f"{met}, mean over items")
            ax.set_title(f"{d} / {met}")
        paths, section.figure, section.legend = save_figure(fig, figures, section.name)
        files += paths
        section.figure_caption = (
            "Each point: the mean over the items at one checkpoint, at its training step. "
            f"The star is the {FINAL} at its own step (from the training signal's "
            "total_steps), not a separate checkpoint beside the last one.")
    return section


def comparison(m: Metrics, members: list[Member], varying: list[str], figures: Path,
               files: list[Path]) -> Section:
    """Each experiment at its own final checkpoint: accuracy per item group and every
    other metric over all its items, each with a bootstrap CI; the swept hyperparameters
    (``varying``) as columns and in the legend."""
    rows: list[tuple[Any, ...]] = []
    for e in members:
        hp = tuple(str(e.hyper.get(k, "")) for k in varying)  # as set, not rounded
        f = m.query("SELECT DISTINCT dataset, metric, item_group FROM m WHERE experiment = ? "
                    "AND checkpoint = ? ORDER BY 1, 2, 3", [e.name, e.final])
        keys = sorted({(d, met, g if met == "accuracy" else "all") for d, met, g in f.rows})
        for d, met, g in keys:
            sql = ("SELECT value FROM m WHERE experiment = ? AND checkpoint = ? AND "
                   "dataset = ? AND metric = ?" + (" AND item_group = ?" if g != "all" else ""))
            values = np.array([r[0] for r in m.query(sql, [e.name, e.final, d, met] + (
                [g] if g != "all" else [])).rows], dtype=float)
            rows.append((e.name, *hp, d, met, g, len(values), *_ci_row(values)))
    section = Section(
        "campaign_comparison", "Campaign comparison",
        f"Every experiment of the comparison at its own {FINAL}: accuracy per item group, "
        f"other metrics over all their items (item_group all), each the mean over the "
        f"items with the {BOOT}."
        + (f" Columns {', '.join(varying)}: the hyperparameters that differ across the "
           "campaign (from the training signals and configurations)." if varying else ""),
        ["experiment", *varying, "dataset", "metric", "item_group", "items",
         labelled("mean", FINAL), "95% CI low", "95% CI high"], rows)
    if len(members) > 1 and rows:
        section.figure, section.legend = _comparison_figure(rows, len(varying), members,
                                                            varying, figures, files)
        section.figure_caption = (
            f"Bars: each experiment's mean at its {FINAL}; whiskers: the {BOOT}; the "
            f"legend names each experiment by its swept hyperparameters. {CHANCE_TEXT}")
    return section


def _legend(e: Member, varying: list[str]) -> str:
    """An experiment named by its swept hyperparameters (its name when none are swept)."""
    return ", ".join(f"{k}={e.hyper.get(k, '')}" for k in varying) or e.name


def _comparison_figure(rows: list[tuple[Any, ...]], nh: int, members: list[Member],
                       varying: list[str], figures: Path, files: list[Path]
                       ) -> tuple[bytes, list[str]]:
    acc = [r for r in rows if r[2 + nh] == "accuracy"]
    other = sorted({(r[1 + nh], r[2 + nh]) for r in rows if r[2 + nh] != "accuracy"})
    fig, axes = plt.subplots(1, 1 + len(other), figsize=(9 + 3 * len(other), 4),
                             squeeze=False, gridspec_kw={"width_ratios": [3] + [1] * len(other)})
    width = 0.8 / len(members)
    groups = sorted({r[3 + nh] for r in acc})
    for i, e in enumerate(members):
        label = _legend(e, varying)
        mine = {r[3 + nh]: r for r in acc if r[0] == e.name}
        xs = [j + i * width for j, g in enumerate(groups) if g in mine]
        pts = [mine[g] for g in groups if g in mine]
        axes[0][0].bar(xs, [p[-3] for p in pts], width, label=label, yerr=np.array(
            [[p[-3] - p[-2] for p in pts], [p[-1] - p[-3] for p in pts]]), capsize=3)
        for k, (d, met) in enumerate(other, start=1):
            p = [r for r in rows if r[0] == e.name and (r[1 + nh], r[2 + nh]) == (d, met)]
            if p:
                axes[0][k].bar([i], [p[0][-3]], 0.8, yerr=[[p[0][-3] - p[0][-2]],
                                                         [p[0][-1] - p[0][-3]]], capsize=3)
    ax = axes[0][0]
    ax.axhline(CHANCE, color="grey", ls="--", lw=1, label=f"chance ({fmt(CHANCE)})")
    ax.set_xticks([j + width * (len(members) - 1) / 2 for j in range(len(groups))], groups,
                  rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"accuracy, {FINAL} ({CI})")
    ax.legend(fontsize=8)
    ax.set_title("campaign: accuracy by item group")
    for k, (d, met) in enumerate(other, start=1):
        axes[0][k].set_xticks(range(len(members)), [_legend(e, varying) for e in members],
                              rotation=20, ha="right")
        axes[0][k].set_title(f"{d} / {met}, {FINAL}")
    paths, png, legend = save_figure(fig, figures, "campaign_comparison")
    files += paths
    return png, legend
