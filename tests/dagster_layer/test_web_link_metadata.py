"""With ``web.url`` set, an experiment's evaluation_metrics and analysis_report events link
its page and its jobs' log pages in ``baton web`` (URL metadata, one click from the Dagster
UI to the status pages)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import MetadataValue, RunRequest, UrlMetadataValue

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
WEB = "https://lab.example/baton"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[InProcess]:
    site = InProcess(tmp_path, sensors=PER_SIGNAL)  # the assets' path (the batch jobs
    # record through the same functions: assets/batches.py)
    with site.config_file.open("a") as fh:
        fh.write(f"web:\n  url: {WEB}/\n")
    with site:
        yield site


def _links(metadata: dict[str, MetadataValue]) -> dict[str, str]:
    return {k: v.value for k, v in metadata.items()
            if k.startswith("baton web") and isinstance(v, UrlMetadataValue)}


def test_the_asset_events_link_the_status_pages(site: InProcess) -> None:
    step = site.checkpoint("exp1", 100)
    site.train("exp1", checkpoints=[step])  # two tasks: an array of two jobs
    submit(site, "exp1")
    run = site.run(join(site, "exp1"), evaluation_sensor)
    [metrics] = materialized(run, "evaluation_metrics")
    jobs = [r.job_id for r in site.ledger.jobs(experiment="exp1", stage="evaluation")]
    assert len(jobs) == 2
    assert _links(metrics.metadata) == {
        "baton web": f"{WEB}/experiments?name=exp1",
        **{f"baton web log {j}": f"{WEB}/logs/{j}/stdout" for j in jobs}}
    wanted: list[RunRequest] = []

    def analysed() -> bool:
        wanted.extend(r for r in requests_of(site.tick(analysis_sensor))
                      if r.job_name == "record_analysis")
        return bool(wanted)

    site.wait_for("the analysis", analysed, between=lambda: site.tick(slurm_tracker))
    [report] = materialized(site.run(wanted[0], analysis_sensor), "analysis_report")
    [analysis] = site.ledger.jobs(experiment="exp1", stage="analysis")
    assert _links(report.metadata) == {
        "baton web": f"{WEB}/experiments?name=exp1",
        "baton web log": f"{WEB}/logs/{analysis.job_id}/stdout"}
