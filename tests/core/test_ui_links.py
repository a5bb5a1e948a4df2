"""Where people open the Dagster and MLflow UIs: one setting each, for the report's and the
status pages' links, which may differ from the address the jobs use behind a proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import Config, load_config
from baton.errors import ConfigError


def _config(tmp_path: Path, text: str) -> Config:
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(text)
    return load_config(cfg, {"BATON_STATE_DIR": str(tmp_path / "s")})


@pytest.mark.parametrize(("text", "ui"), [
    ("", None),
    ("mlflow:\n  tracking_uri: file:///srv/mlruns\n", None),
    ("mlflow:\n  tracking_uri: http://127.0.0.1:5000/\n", "http://127.0.0.1:5000"),
    ("mlflow:\n  tracking_uri: http://127.0.0.1:5000\n  ui_url: https://lab.example/mlflow/\n",
     "https://lab.example/mlflow"),
])
def test_the_mlflow_ui_is_its_own_setting_or_the_tracking_server(tmp_path: Path, text: str,
                                                                 ui: str | None) -> None:
    assert _config(tmp_path, text).mlflow.ui() == ui


@pytest.mark.parametrize(("text", "key"), [
    ("mlflow:\n  ui_url: lab.example/mlflow\n", "mlflow.ui_url"),
    ("dagster:\n  url: javascript:alert(1)\n", "dagster.url"),
])
def test_a_ui_address_must_be_an_http_url(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, text)
    assert info.value.key == key
    assert "is not an http(s) URL" in info.value.reason


def test_the_dagster_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    assert _config(tmp_path, "dagster:\n  url: http://dagster.lab:3000/\n").dagster.url == \
        "http://dagster.lab:3000"
