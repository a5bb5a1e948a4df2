"""Headless Chromium for tests that look at a web UI: bench/devtools.py's driver (shared
with the benchmarks that time a page), which a test without Chromium skips (fails in CI);
the DOM of a page once it shows what the test waits for, and its screenshot."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import devtools
from bench.devtools import DEADLINE_S, Page
from tests.conftest import require

__all__ = ["ARTIFACTS", "DEADLINE_S", "Page", "browser", "dom", "screenshot"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@contextmanager
def browser(profile: Path) -> Iterator[Page]:
    """A headless Chromium with its own profile, attached to its first tab."""
    path = devtools.chromium()
    require(path is not None, "chromium is not installed (apt-get install chromium)")
    assert path is not None
    with devtools.browser(profile, path) as page:
        yield page


def dom(url: str, profile: Path, ready: Callable[[str], bool]) -> str:
    """The page's DOM once ``ready`` holds for it (its scripts have shown what the test
    looks for)."""
    with browser(profile) as page:
        return page.open(url, ready)


def screenshot(url: str, name: str, profile: Path, ready: Callable[[str], bool]) -> Path:
    """A PNG of the page once ``ready`` holds for its DOM, in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    with browser(profile) as page:
        shown = page.open(url, ready)
        assert ready(shown), f"{url} did not show what was waited for:\n{shown[-2000:]}"
        data = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    out.write_bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, len(data)
    return out
