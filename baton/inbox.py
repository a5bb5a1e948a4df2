"""Markers that announce a new signal, so the watcher's idle tick costs one small
directory listing instead of a walk over every experiment folder.

A writer drops ``signals/incoming/{kind}/{time_ns}-{pid}-{experiment}`` holding the
signal's path relative to the drive. The watcher deletes a marker once the signal is in
the ledger. Signals written without a marker (other tools) are found by the periodic
full rescan.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from baton.fsio import atomic_write, is_temp_name
from baton.layout import SIGNAL_KINDS, DriveLayout
from baton.signals import Signal, write_signal

log = logging.getLogger(__name__)
MAX_MARKER_BYTES = 8192


@dataclass(frozen=True)
class Marker:
    path: Path
    kind: str
    signal_path: Path | None  # None when the marker itself is unreadable
    problem: str | None = None


def notify(drive: DriveLayout, kind: str, signal_path: Path, experiment: str) -> Path | None:
    """Announce a signal; never raises (the full rescan still finds the signal)."""
    try:
        rel = Path(signal_path).resolve().relative_to(Path(drive.root).resolve())
        name = f"{time.time_ns()}-{os.getpid()}-{experiment}"
        return atomic_write(drive.inbox / kind / name, str(rel).encode(), attempts=3)
    except Exception as exc:  # a marker is an optimisation, never a failure
        log.warning("could not announce %s in the inbox (%s); the full rescan will find it",
                    signal_path, exc)
        return None


def pending(drive: DriveLayout, kind: str) -> list[Marker]:
    """The markers waiting for ``kind``, oldest first."""
    if kind not in SIGNAL_KINDS:
        raise ValueError(f"unknown signal kind {kind!r}")
    folder = drive.inbox / kind
    try:
        entries = sorted(e.name for e in os.scandir(folder) if not is_temp_name(e.name))
    except FileNotFoundError:
        return []
    markers = []
    for name in entries:
        path = folder / name
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_MARKER_BYTES + 1)
            text = raw.decode("utf-8").strip()
            if len(raw) > MAX_MARKER_BYTES or not text or "\0" in text:
                raise ValueError("not a path")
            markers.append(Marker(path, kind, drive.root / text))
        except (OSError, ValueError) as exc:
            markers.append(Marker(path, kind, None, f"unreadable inbox marker: {exc}"))
    return markers


def done(marker: Marker) -> None:
    marker.path.unlink(missing_ok=True)


def canonical_path(drive: DriveLayout, signal: Signal) -> Path:
    exp = drive.experiment(signal.experiment)
    return {
        "training_complete": exp.training_signal,
        "eval_complete": exp.eval_complete_signal,
        "eval_failed": exp.eval_failed_signal,
        "analysis_complete": exp.analysis_signal,
    }[signal.kind]


def publish(drive: DriveLayout, signal: Signal, path: Path | None = None) -> Path:
    """Write a signal atomically (at its canonical place unless ``path`` is given) and
    announce it. What training hooks and evaluation/analysis workers call."""
    target = write_signal(path or canonical_path(drive, signal), signal)
    notify(drive, signal.kind, target, signal.experiment)
    return target
