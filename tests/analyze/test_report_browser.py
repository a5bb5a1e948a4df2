"""The analysis report as a researcher sees it: rendered by a real Chromium from the drive
(file://, self-contained), screenshotted to test-artifacts/, and its parts looked for in
the rendered page: provenance, captions, the swept hyperparameter's column, confidence
intervals, the chance line and the final checkpoint in the legends, numbers right-aligned."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from baton.config import Config
from baton.signals import TrainingComplete, read_signal
from tests.e2e.browser import ARTIFACTS, browser

LOOK = """(() => {
  const text = e => e ? e.innerText.trim() : null;
  const sections = [...document.querySelectorAll('section')];
  const table = id => document.querySelector(`#${id} table`);
  const heads = id => [...table(id).querySelectorAll('th')].map(text);
  const rows = id => [...table(id).querySelectorAll('tbody tr')].map(
      r => [...r.querySelectorAll('td')].map(text));
  const num = document.querySelector('td.num');
  return JSON.stringify({
    provenance: Object.fromEntries([...document.querySelectorAll('#provenance dt')].map(
        dt => [text(dt), text(dt.nextElementSibling)])),
    sections: sections.map(s => s.id),
    captions: sections.slice(1).map(s => [text(s.querySelector('caption')),
                                          text(s.querySelector('figcaption'))]),
    images: [...document.images].map(i => i.complete && i.naturalWidth),
    comparison: heads('campaign_comparison'),
    comparisonRows: rows('campaign_comparison'),
    curve: heads('learning_curve'), curveRows: rows('learning_curve'),
    numAlign: num && getComputedStyle(num).textAlign,
    height: document.documentElement.scrollHeight,
  });
})()"""


def test_the_report_in_chromium(campaign: tuple[Config, Path], tmp_path: Path) -> None:
    config, report = campaign
    training = read_signal(config.drive.experiment("demo-lr0p05").training_signal).signal
    assert isinstance(training, TrainingComplete)
    with browser(tmp_path / "profile") as page:
        page.open(report.as_uri(), lambda dom: "</section>" in dom and "Campaign" in dom)
        seen = json.loads(page.evaluate(LOOK))
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=seen["height"],
                  deviceScaleFactor=1, mobile=False)
        shot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "analysis-report.png").write_bytes(shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000

    prov = seen["provenance"]
    for what in ("created (UTC)", "baton version", "training git commit",
                 "training configuration", "hyperparameters", "Slurm job ids",
                 "MLflow training run", "Dagster analysis_report"):
        assert prov.get(what), (what, prov)
    assert prov["training configuration"] == training.config_path
    assert seen["sections"] == ["provenance", "accuracy_by_group", "learning_curve",
                                "campaign_comparison"]
    for table_caption, figure_caption in seen["captions"]:
        assert table_caption and len(table_caption) > 60
        assert figure_caption and len(figure_caption) > 40
    assert len(seen["images"]) == 3 and all(w and w > 300 for w in seen["images"])
    # the swept hyperparameter as a column, the CI beside each mean
    assert seen["comparison"][:2] == ["experiment", "lr"]
    assert {"mean (final checkpoint)", "95% CI low", "95% CI high"} <= set(seen["comparison"])
    assert {r[1] for r in seen["comparisonRows"]} == {"0.05", "0.8"}
    comparison_legend = seen["captions"][2][1]
    assert "chance (0.500)" in comparison_legend and "lr=0.8" in comparison_legend
    # the final checkpoint: one row at the training's last step, marked in the legend
    finals = [r for r in seen["curveRows"] if r[seen["curve"].index("final")] == "yes"]
    assert finals and {r[1] for r in finals} == {str(training.total_steps)}
    assert f"final checkpoint (step {training.total_steps})" in seen["captions"][1][1]
    assert seen["numAlign"] == "right"
