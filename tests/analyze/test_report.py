"""The analysis report a researcher opens first, on the demo's campaign: provenance,
captions, the swept hyperparameter as a column and in the legend, confidence intervals
and the chance line, one rounding convention, the ``final`` checkpoint at its own step,
every aggregate named by its aggregation (the same in the report, its tables and the
campaign's summary.csv), LaTeX with booktabs and right-aligned numbers."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import baton
from baton.analyze.summary import summarize
from baton.config import Config
from baton.signals import TrainingComplete, read_signal
from tests.analyze.report_campaign import (
    ANALYSIS_JOB,
    DAGSTER,
    EVAL_JOB,
    RATES,
    WEB,
)

ME = "demo-lr0p05"


def table(config: Config, name: str) -> list[dict[str, str]]:
    path = config.drive.experiment(ME).tables_dir / f"{name}.csv"
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def legend(report: Path, section: str) -> list[str]:
    """The legend entries of a section's figure, as the report lists them (read from the
    drawn figure's legends)."""
    body = report.read_text().split(f"<section id='{section}'>")[1].split("</section>")[0]
    found = re.search(r"<span class='legend'>Legend: ([^<]*)</span>", body)
    assert found, body[:2000]
    return found.group(1).split("; ")


def test_provenance_block(campaign: tuple[Config, Path]) -> None:
    config, report = campaign
    html = report.read_text()
    block = html.split("<section id='provenance'>")[1].split("</section>")[0]
    training = read_signal(config.drive.experiment(ME).training_signal).signal
    assert isinstance(training, TrainingComplete) and training.config_path
    for what, value in (("baton version", baton.__version__),
                        ("training configuration", training.config_path),
                        ("hyperparameters", "lr=0.05"),
                        ("Slurm job ids", f"evaluation {EVAL_JOB}; analysis {ANALYSIS_JOB}"),
                        ("Dagster analysis_report", f"<a href='{DAGSTER}/assets/analysis_report"
                         f"?view=partitions&amp;partition={ME}'>"),
                        ("baton web", f"<a href='{WEB}/experiments?name={ME}'>"),
                        ("Dagster campaign_report", "campaign_report?view=partitions&amp;"
                         "partition=demo"),
                        ("training git commit", "not recorded"),
                        ("MLflow analysis run", "not recorded")):  # no MLflow configured
        assert re.search(f"<dt>{what}</dt><dd>(<a [^>]*>)?[^<]*{re.escape(value)}", block), \
            (what, block)
    assert re.search(r"<dt>created \(UTC\)</dt><dd>\d{4}-\d\d-\d\dT", block)


def test_every_table_and_figure_has_a_caption(campaign: tuple[Config, Path]) -> None:
    html = campaign[1].read_text()
    sections = re.findall(r"<section id='(\w+)'>(.*?)</section>", html, re.S)
    assert [s for s, _ in sections] == ["provenance", "accuracy_by_group", "learning_curve",
                                        "campaign_comparison"]
    for name, body in sections[1:]:
        assert re.search(r"<caption>[^<]{60,}</caption>", body), name
        assert body.count("<img") == 1 and re.search(
            r"<figcaption>[^<]{40,}", body), name
    assert "bootstrap" in html and "final checkpoint" in html


def test_the_swept_hyperparameter_is_a_column_and_a_legend_entry(
        campaign: tuple[Config, Path]) -> None:
    config, report = campaign
    rows = table(config, "campaign_comparison")
    assert {(r["experiment"], r["lr"]) for r in rows} == {(e, str(lr)) for e, lr in
                                                          RATES.items()}
    assert "epochs" not in rows[0]  # the same in every experiment: not a column
    assert {f"lr={lr}" for lr in RATES.values()} <= set(legend(report, "campaign_comparison"))


def test_comparison_has_confidence_intervals_and_the_chance_line(
        campaign: tuple[Config, Path]) -> None:
    config, report = campaign
    rows = table(config, "campaign_comparison")
    for r in rows:
        low, mean, high = (float(r[c]) for c in ("95% CI low", "mean (final checkpoint)",
                                                 "95% CI high"))
        assert low <= mean <= high
    assert any(float(r["95% CI low"]) < float(r["95% CI high"]) for r in rows)
    assert "chance (0.500)" in legend(report, "campaign_comparison")


def test_one_rounding_convention(campaign: tuple[Config, Path]) -> None:
    """Every fractional number with three decimals, in the CSV tables and the report."""
    config, report = campaign
    for name in ("accuracy_by_group", "learning_curve", "campaign_comparison"):
        for r in table(config, name):
            for column, value in r.items():
                if "." in value and re.fullmatch(r"-?\d+\.\d+", value) and column != "lr":
                    assert re.fullmatch(r"-?\d+\.\d{3}", value), (name, column, value)
    cells = re.findall(r"<td class='num'>(-?\d+\.\d+)</td>", report.read_text())
    assert cells and all(re.fullmatch(r"-?\d+\.\d{3}", c) for c in cells)


def test_final_checkpoint_is_marked_at_its_step(campaign: tuple[Config, Path]) -> None:
    config, report = campaign
    training = read_signal(config.drive.experiment(ME).training_signal).signal
    assert isinstance(training, TrainingComplete) and training.total_steps
    rows = table(config, "learning_curve")
    finals = [r for r in rows if r["final"] == "yes"]
    assert finals and all((r["checkpoint"], r["step"]) == ("final", str(training.total_steps))
                          for r in finals)
    assert all(r["step"] != "" for r in rows)  # every point drawn at a step
    assert legend(report, "learning_curve") == [
        f"final checkpoint (step {training.total_steps})"]


def test_aggregates_are_named_the_same_everywhere(campaign: tuple[Config, Path]) -> None:
    """The held-out perplexity at the final checkpoint: one number, one name, in the
    report's comparison, its CSV table and the campaign's summary.csv; the mean over all
    checkpoints is another column that says so."""
    from baton.analyze.summary import campaign_table  # the table assets/campaign.py writes

    config, report = campaign
    comparison = {(r["experiment"], r["metric"]): r for r in table(config, "campaign_comparison")}
    ppl = comparison[(ME, "perplexity")]["mean (final checkpoint)"]
    columns, rows = campaign_table(config.drive, list(RATES))
    mine = next(r for r in rows if r["experiment"] == ME)
    assert f"{mine['heldout/perplexity (final checkpoint)']:.3f}" == ppl
    assert "heldout/perplexity (mean over checkpoints)" in columns
    assert mine["final checkpoint"] == "final"
    assert not [c for c in columns if c.endswith("/perplexity")]  # none left unnamed
    assert summarize(config.drive.experiment(ME)).means["heldout/perplexity"] != float(ppl)
    assert f"<td class='num'>{ppl}</td>" in report.read_text()


def test_latex_tables_use_booktabs_and_right_align_numbers(
        campaign: tuple[Config, Path]) -> None:
    config, _ = campaign
    tex = (config.drive.experiment(ME).tables_dir / "accuracy_by_group.tex").read_text()
    assert r"\begin{tabular}{lrrrr}" in tex
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"\hline" not in tex
