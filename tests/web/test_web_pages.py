"""``baton web`` in real Chromium: each page rendered from a ledger the pipeline's code
paths filled, screenshotted into test-artifacts/, its content checked; a failed experiment
shows its reason and a log link that works; a change in the ledger appears without a
reload; nothing but GET and HEAD is answered; a web config's users are required."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.config import Config
from baton.ledger import Ledger, open_ledger
from tests.e2e.browser import ARTIFACTS, DEADLINE_S, Page, browser
from tests.exporter.web_config_files import PASSWORD, USER, web_config
from tests.web.server import DAGSTER_URL, MLFLOW_URL, Web, request
from tests.web.site import FAILED_LOG, FAILED_REASON, Site, fill

pytestmark = pytest.mark.slow
REFRESH_S = 2


@pytest.fixture
def site(config: Config, tmp_path: Path) -> Iterator[tuple[Site, Ledger]]:
    ledger = open_ledger(config.ledger_url, init=True)
    try:
        yield fill(config, ledger), ledger
    finally:
        ledger.close()


def shot(page: Page, url: str, name: str, ready: Callable[[str], bool]) -> str:
    """Open ``url``, wait until ``ready(dom)``, save a PNG in test-artifacts/; the DOM."""
    dom = page.open(url, ready)
    assert ready(dom), f"{url} did not show what was waited for:\n{dom[-3000:]}"
    ARTIFACTS.mkdir(exist_ok=True)
    data = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, len(data)
    (ARTIFACTS / name).write_bytes(data)
    return dom


def hrefs(dom: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', dom)]


def test_every_page_in_chromium(site: tuple[Site, Ledger], config: Config,
                                tmp_path: Path) -> None:
    s, _ = site
    web = Web(config, tmp_path, "--refresh", str(REFRESH_S))
    try:
        with browser(tmp_path / "chrome") as page:
            dom = shot(page, f"{web.url}/experiments", "web-experiments.png",
                       lambda d: "lr-0.9-broken" in d)
            row = re.search(r'<tr class="exp" data-experiment="lr-0.9-broken".*?</tr>', dom,
                            re.S)
            assert row and 'data-state="failed"' in row.group(0)
            assert FAILED_REASON in row.group(0)
            states = dict(re.findall(r'data-experiment="([^"]+)" data-state="(\w+)"', dom))
            assert states == {"lr-0.1-done": "complete", "lr-0.9-broken": "failed",
                              "lr-0.3-busy": "running", "lr-0.5-oom": "waiting"}
            assert "evaluating 1/3" in dom and "evaluated 2/2" in dom
            links = hrefs(dom)
            assert f"{MLFLOW_URL}/#/runs/0123456789abcdef0123456789abcdef" in links
            assert (f"{DAGSTER_URL}/assets/evaluation_metrics?view=partitions"
                    "&partition=lr-0.9-broken") in links

            # the failed job's log link, as the page gives it, serves the log from the drive
            stderr = next(h for h in hrefs(row.group(0)) if h.endswith("/stderr"))
            status, _, body = request(web.url + stderr)
            assert status == 200 and "CheeseError: out of cheese" in body.decode()
            log = shot(page, web.url + stderr, "web-log.png", lambda d: "CheeseError" in d)
            download = next(h for h in hrefs(log) if h.endswith("/download"))
            status, headers, body = request(web.url + download)
            assert (status, body.decode()) == (200, FAILED_LOG)
            assert "attachment" in headers["content-disposition"]

            # the report and the figure it links to, and nothing the ledger does not know
            report = next(h for h in links if "/reports/" in h)
            status, _, body = request(web.url + report)
            assert status == 200 and b"Report of lr-0.1-done" in body
            assert request(f"{web.url}{report}/figures/loss.svg")[0] == 200
            assert request(f"{web.url}{report}/../../../../etc/passwd")[0] == 404
            assert request(f"{web.url}{report}/report.html.bak")[0] == 404
            assert request(f"{web.url}/logs/999999/stdout")[0] == 404

            dom = shot(page, f"{web.url}/experiments?state=failed", "web-experiments-failed.png",
                       lambda d: "lr-0.9-broken" in d)
            assert "lr-0.1-done" not in dom

            dom = shot(page, f"{web.url}/queue", "web-queue.png", lambda d: "7006" in d)
            assert "7005" in dom and "7004" not in dom and "RUNNING" in dom and "PENDING" in dom
            assert "2 CPU, 4.0 GB, 1h 0m" in dom

            dom = shot(page, f"{web.url}/failures", "web-failures.png",
                       lambda d: "gave up" in d)
            assert "memory at its cap 256G" in dom and FAILED_REASON in dom
            assert "checkpoint_path /nowhere does not exist" in dom

            dom = shot(page, f"{web.url}/status", "web-status.png", lambda d: "ingest" in d)
            assert 'class="stale"' in dom and dom.count('<i class="') == 3

            dom = shot(page, f"{web.url}/campaigns", "web-campaigns.png",
                       lambda d: "Learning-rate sweep" in d)
            assert "1/4 (25%)" in dom and "four rates" in dom

            # live: a new experiment appears on the open page without a reload
            page.open(f"{web.url}/experiments", lambda d: "lr-0.9-broken" in d)
            page.evaluate("window.notReloaded = true")
            s.train("lr-0.7-late", [100])
            deadline = time.monotonic() + min(DEADLINE_S, 60)
            while "lr-0.7-late" not in (page.evaluate("document.body.innerHTML") or ""):
                assert time.monotonic() < deadline, "the new experiment never appeared"
                time.sleep(0.5)
            assert page.evaluate("window.notReloaded") is True
        # light: every page served, the server holds less than 100 MB (bench 12 measures
        # it with 10,000 experiments)
        assert web.rss_mb() < 100
    finally:
        web.stop()


def test_read_only_and_authenticated(site: tuple[Site, Ledger], config: Config,
                                     tmp_path: Path) -> None:
    web = Web(config, tmp_path)
    try:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, _ = request(f"{web.url}/experiments", method)
            assert (status, headers.get("allow")) == (405, "GET, HEAD"), method
        assert request(f"{web.url}/queue", "HEAD")[0] == 200
        # a URL's odd values are no filter, not an error
        status, _, body = request(f"{web.url}/experiments?name=%00lr&state=bogus&offset="
                                  "99999999999999999999999")
        assert status == 200 and b"no experiment matches" in body
        assert b"lr-0.9-broken" in request(f"{web.url}/experiments?name=%00broken")[2]
    finally:
        web.stop()
    # behind a proxy that serves the pages under /baton (and strips it): links carry it
    web = Web(config, tmp_path, "--root-path", "/baton")
    try:
        status, _, body = request(f"{web.url}/failures")
        assert status == 200 and 'href="/baton/logs/7007/stderr"' in body.decode()
        status, headers, _ = request(f"{web.url}/static/live.js")
        assert status == 200 and "javascript" in headers["content-type"]
    finally:
        web.stop()
    (tmp_path / "tls").mkdir()
    secured = web_config(tmp_path / "tls")
    web = Web(config, tmp_path, "--web-config", str(secured))
    try:
        ca = tmp_path / "tls" / "exporter.crt"
        assert web.url.startswith("https://")
        status, headers, _ = request(f"{web.url}/experiments", cafile=ca)
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
        assert request(f"{web.url}/experiments", auth=(USER, "wrong"), cafile=ca)[0] == 401
        status, _, body = request(f"{web.url}/experiments", auth=(USER, PASSWORD), cafile=ca)
        assert status == 200 and b"lr-0.9-broken" in body
        assert request(f"{web.url}/experiments", "POST", auth=(USER, PASSWORD),
                       cafile=ca)[0] == 405
    finally:
        web.stop()
