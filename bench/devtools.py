"""Headless Chromium (Debian's package) driven over the DevTools protocol, for the tests
that look at a web UI and for the benchmarks that time one.

The page is driven on a pipe (``--remote-debugging-pipe``: no port, no extra package) and
read when it shows what is waited for, with a generous deadline. No virtual-time budget:
the Dagster UI polls its server, and virtual time stands still while a request is pending,
so on a loaded machine a 20 s budget became minutes of real time (a screenshot timed out
after 180 s while the same page took 6 s alone)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000", "--remote-debugging-pipe"]
DEADLINE_S = 300.0  # for the page to show what is waited for; a loaded machine is slow


def chromium() -> str | None:
    """Chromium's path, or None where it is not installed."""
    return shutil.which("chromium")


class Page:
    """One tab of a headless Chromium, spoken to over the DevTools pipe (fd 3 in, fd 4
    out, messages separated by NUL)."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int
                 ) -> None:
        self.proc, self.out, self.inp = proc, to_browser, from_browser
        self.buffer = b""
        self.next_id = 0
        self.session: str | None = None

    def call(self, method: str, timeout: float = 120, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._messages(deadline, method):
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    return reply.get("result", {})

    def _messages(self, deadline: float, method: str) -> Iterator[dict[str, Any]]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"Chromium did not answer {method}"
            ready, _, _ = select.select([self.inp], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.inp, 1 << 20)
                assert chunk, f"Chromium exited (code {self.proc.poll()}) during {method}"
                self.buffer += chunk
        *whole, self.buffer = self.buffer.split(b"\0")
        for raw in whole:
            yield json.loads(raw)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, ready: Callable[[str], bool]) -> str:
        """Go to ``url`` and wait until ``ready(dom)`` (or the deadline: the caller's own
        checks then say what is missing). Returns the last DOM read."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            page = self.evaluate("document.documentElement ? "
                                 "document.documentElement.outerHTML : ''") or ""
            if ready(page) or time.monotonic() > deadline:
                return page
            time.sleep(0.5)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved above 9, so that wiring them to 3 and 4 in the child cannot
    overwrite one with the other."""
    moved = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return moved[0], moved[1]


@contextmanager
def browser(profile: Path, executable: str = "chromium") -> Iterator[Page]:
    """A headless Chromium with its own profile, attached to its first tab."""
    to_browser_r, to_browser_w = _high(os.pipe())
    from_browser_r, from_browser_w = _high(os.pipe())

    def wire() -> None:  # in the child: the pipe ends where Chromium looks for them
        os.dup2(to_browser_r, 3)
        os.dup2(from_browser_w, 4)

    # close_fds=False: pass_fds would need fds 3 and 4 open here; every other descriptor
    # of this process is close-on-exec (PEP 446), the two dup2'ed ones are not
    proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=wire, close_fds=False)
    os.close(to_browser_r)
    os.close(from_browser_w)
    page = Page(proc, to_browser_w, from_browser_r)
    try:
        targets = page.call("Target.getTargets")["targetInfos"]
        target = next(t["targetId"] for t in targets if t["type"] == "page")
        page.session = page.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        page.call("Page.enable")
        yield page
    finally:
        os.close(to_browser_w)
        os.close(from_browser_r)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
