"""The Dagster web UI shows baton's asset graph (headless Chromium, a real webserver)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.browser import dom, screenshot
from tests.e2e.harness import Pipeline, Webserver

pytestmark = pytest.mark.slow


def test_asset_graph_in_the_web_ui(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, "local")
    web = Webserver(p)
    try:
        url = f"{web.url}/asset-groups"
        page = dom(url, tmp_path / "chrome")
        for asset in ("model", "evaluation_job", "evaluation_metrics", "analysis_job",
                      "analysis_report", "campaign_report"):
            assert asset in page, asset
        shot = screenshot(url, "dagster-asset-graph.png", tmp_path / "chrome2")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        web.stop()
