"""The demo's campaign and its report, made once for the report's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import Config
from tests.analyze.report_campaign import demo_campaign


@pytest.fixture(scope="session")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    return demo_campaign(tmp_path_factory.mktemp("demo"))
