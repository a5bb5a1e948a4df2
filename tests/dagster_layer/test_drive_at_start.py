"""The daemon makes the drive's layout where it is missing when it loads the code location
(never at import), and does not create a drive that is not there (likely not mounted)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

import definitions
from baton.config import Config


def test_building_the_definitions_lays_out_an_existing_drive(config: Config) -> None:
    shutil.rmtree(config.drive.logs)
    shutil.rmtree(config.drive.inbox.parent)
    definitions.build_definitions(config)
    assert all(folder.is_dir() for folder in config.drive.top_level())


def test_a_missing_drive_is_reported_not_created(config: Config, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    gone = config.model_copy(update={"shared_drive": tmp_path / "unmounted"})
    with caplog.at_level(logging.ERROR):
        definitions.build_definitions(gone)
    assert not gone.shared_drive.exists()
    assert any(f"shared drive {gone.shared_drive} does not exist" in r.getMessage()
               for r in caplog.records)
