"""The demo's processes: found by its home (what a stop must end, also those a service
left behind in another process group), and ended by process group."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def killpg(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads, if it is still there and ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def _processes() -> Iterator[tuple[int, bytes, bytes]]:
    """(pid, cmdline, environ) of every process of this user that can be read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            yield int(entry.name), (entry / "cmdline").read_bytes(), \
                (entry / "environ").read_bytes()
        except OSError:
            continue


def demo_processes(home: Path) -> dict[int, str]:
    """Processes of the demo at ``home`` other than this one and its ancestors: their
    command line names the home, or their environment has its DAGSTER_HOME."""
    mine = _ancestors()
    home_b = str(home).encode()
    inside = home_b + b"/"  # not a sibling such as {home}2
    found = {}
    for pid, cmdline, environ in _processes():
        if pid in mine:
            continue
        args = cmdline.split(b"\0")
        dagster_home = [v.removeprefix(b"DAGSTER_HOME=") for v in environ.split(b"\0")
                        if v.startswith(b"DAGSTER_HOME=")]
        if inside in cmdline or home_b in args or any(
                v == home_b or v.startswith(inside) for v in dagster_home):
            found[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found
