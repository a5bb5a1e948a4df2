"""``web.url``: where people open the status pages, so that the Dagster metadata and the
analysis report can link an experiment's page and its jobs' logs; checked as an http(s)
URL. (tests/deploy/test_nginx.py follows such links through the proxy.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import Config, WebConfig, load_config
from baton.errors import ConfigError
from baton.web.links import MAX_JOBS, web_links

WEB = "https://lab.example/baton"


def _config(tmp_path: Path, text: str) -> Config:
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(text)
    return load_config(cfg, {"BATON_STATE_DIR": str(tmp_path / "s")})


def test_web_url_is_an_http_url_without_its_trailing_slash(tmp_path: Path) -> None:
    assert _config(tmp_path, "web:\n  url: https://lab.example/baton/\n").web.url == WEB
    assert _config(tmp_path, "").web.url is None
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, "web:\n  url: lab.example/baton\n")
    assert info.value.key == "web.url" and "is not an http(s) URL" in info.value.reason


def test_links_to_the_experiment_and_each_job_log() -> None:
    web = WebConfig(url=WEB)
    assert web_links(web, "lr 0.1/a", ["123_4"]) == {
        "baton web": f"{WEB}/experiments?name=lr%200.1/a",
        "baton web log": f"{WEB}/logs/123_4/stdout"}
    several = web_links(web, "e", ["7", None, "8", "7"])  # one link a job, unknown ids out
    assert several == {"baton web": f"{WEB}/experiments?name=e",
                       "baton web log 7": f"{WEB}/logs/7/stdout",
                       "baton web log 8": f"{WEB}/logs/8/stdout"}
    assert len(web_links(web, "e", [str(i) for i in range(50)])) == 1 + MAX_JOBS
    assert web.log_page("a/b", "stderr") == f"{WEB}/logs/a%2Fb/stderr"


def test_no_links_without_web_url() -> None:
    assert web_links(WebConfig(), "e", ["1"]) == {}
    assert WebConfig().experiment_page("e") is None and WebConfig().log_page("1") is None
