"""The Dagster web UI shows baton's asset graph (headless Chromium, a real webserver)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.browser import dom, screenshot
from tests.e2e.harness import Pipeline, Webserver

pytestmark = pytest.mark.slow


ASSETS = ("model", "evaluation_job", "evaluation_metrics", "analysis_job", "analysis_report",
          "campaign_report")


def shows_every_asset(page: str) -> bool:
    return all(asset in page for asset in ASSETS)


def test_asset_graph_in_the_web_ui(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, "local")
    web = Webserver(p)
    try:
        url = f"{web.url}/asset-groups"
        page = dom(url, tmp_path / "chrome", shows_every_asset)
        for asset in ASSETS:
            assert asset in page, asset
        shot = screenshot(url, "dagster-asset-graph.png", tmp_path / "chrome2",
                          shows_every_asset)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        web.stop()
