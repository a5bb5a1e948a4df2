"""A lab's own fields in evaluation and analysis signals reach Dagster, as the training
signal's do (the ``model`` materialization): ``evaluation_metrics`` shows them per
checkpoint (each task answers with its own signal), ``analysis_report`` as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton.signals import read_signal, write_signal
from tests.dagster_layer.test_asset_checks import (
    analysis_sensor,
    evaluation_sensor,
    join,
    materialized,
    requests_of,
    slurm_tracker,
    submit,
)
from tests.e2e.harness import PER_SIGNAL, InProcess

pytestmark = pytest.mark.slow

LAB = {"dataset_version": "v2.1", "seeds": [1, 2, 3], "node": {"name": "gpu07"}}


def add_lab_fields(site: InProcess, path: Path, fields: dict[str, Any]) -> None:
    """The job's signal, rewritten as a lab's own script would have written it."""
    sf = read_signal(path, site.drive)
    write_signal(path, type(sf.signal).model_validate(
        {**sf.signal.model_dump(exclude_none=True), **fields}))


def test_lab_fields_are_in_the_evaluation_and_analysis_metadata(tmp_path: Path) -> None:
    with InProcess(tmp_path / "site", sensors=PER_SIGNAL) as site:
        step = site.checkpoint("exp1", 100)
        site.train("exp1", checkpoints=[step])  # two tasks: final and checkpoint-100
        submit(site, "exp1")
        layout = site.drive.experiment("exp1")
        final, stepped = (layout.eval_task_dir(c) / ".eval_complete" for c in ("final", step))
        site.wait_for("both tasks' signals", lambda: final.exists() and stepped.exists(),
                      between=lambda: site.tick(slurm_tracker))
        add_lab_fields(site, final, LAB)
        add_lab_fields(site, stepped, {"node": {"name": "gpu03"}})

        run = site.run(join(site, "exp1"), evaluation_sensor)
        assert run.success
        [metrics] = materialized(run, "evaluation_metrics")
        assert metrics.metadata["lab_fields"].value == {
            "final": LAB, "checkpoint-100": {"node": {"name": "gpu03"}}}

        found: list = []
        site.wait_for("the analysis signal", layout.analysis_signal.exists,
                      between=lambda: site.tick(slurm_tracker))
        add_lab_fields(site, layout.analysis_signal, LAB)
        site.wait_for("the analysis recorded", lambda: found.extend(
            r for r in requests_of(site.tick(analysis_sensor))
            if r.job_name == "record_analysis") or bool(found))
        report = site.run(found[0], analysis_sensor)
        assert report.success
        [mat] = materialized(report, "analysis_report")
        assert mat.metadata["lab_fields"].value == LAB


def test_no_lab_fields_no_metadata_entry(tmp_path: Path) -> None:
    with InProcess(tmp_path / "site", sensors=PER_SIGNAL) as site:
        site.train("plain")
        submit(site, "plain")
        run = site.run(join(site, "plain"), evaluation_sensor)
        [metrics] = materialized(run, "evaluation_metrics")
        assert "lab_fields" not in metrics.metadata and metrics.metadata["tasks"].value == 1
