"""Finding new signals: the inbox on every tick, a full rescan now and then.

A tick reads only what is new. Each signal is recorded once in the ledger, accepted or
quarantined with its reason; a file changed within the debounce window is left for a
later tick. A signal is recorded and applied to the pipeline's state in one transaction,
and its inbox marker is removed only after that commits, so a crash at any point loses
nothing: the signal is either fully taken or looked at again on a later tick.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from baton import signals
from baton.config import CampaignConfig
from baton.errors import BatonError, SignalError
from baton.inbox import Marker, done, pending
from baton.layout import (
    ANALYSIS_SIGNAL,
    EVAL_COMPLETE_SIGNAL,
    EVAL_FAILED_SIGNAL,
    TRAINING_SIGNAL,
    DriveLayout,
)
from baton.ledger import Ledger
from baton.ledger.signal_log import Applier
from baton.ledger.stages import APPLIERS
from baton.signals import SignalFile, read_signal

log = logging.getLogger(__name__)

# where each kind lives: (folder under the drive, glob below it)
CANONICAL = {
    "training_complete": (("models",), (f"*/{TRAINING_SIGNAL}",)),
    "eval_complete": (("evaluation",), (f"*/{EVAL_COMPLETE_SIGNAL}",
                                        f"*/tasks/*/{EVAL_COMPLETE_SIGNAL}")),
    "eval_failed": (("evaluation",), (f"*/{EVAL_FAILED_SIGNAL}",
                                      f"*/tasks/*/{EVAL_FAILED_SIGNAL}")),
    "analysis_complete": (("analysis", "reports"), (f"*/{ANALYSIS_SIGNAL}",)),
}


@dataclass(frozen=True)
class Quarantined:
    kind: str
    path: Path
    reason: str
    experiment: str | None = None


@dataclass
class TickResult:
    accepted: list[SignalFile] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    deferred: list[Path] = field(default_factory=list)
    unanswered: list[SignalFile] = field(default_factory=list)  # accepted, no job to answer
    checked: int = 0
    full: bool = False

    def summary(self) -> str:
        return (f"{len(self.accepted)} accepted, {len(self.quarantined)} quarantined, "
                f"{len(self.deferred)} still being written, {self.checked} checked"
                + (" (full rescan)" if self.full else ""))


Validator = Callable[[SignalFile], str | None]


class Scanner:
    def __init__(self, drive: DriveLayout, ledger: Ledger, debounce_seconds: float = 2.0,
                 validators: dict[str, Validator] | None = None,
                 clock: Callable[[], float] = time.time,
                 campaigns: CampaignConfig | None = None,
                 appliers: dict[str, Applier] | None = None) -> None:
        self.drive = drive
        self.appliers = APPLIERS if appliers is None else appliers
        self.campaigns = campaigns or CampaignConfig()
        self.ledger = ledger
        self.debounce = debounce_seconds
        self.validators = validators or {}
        self.clock = clock

    def tick(self, kinds: list[str], full: bool = False) -> TickResult:
        result = TickResult(full=full)
        for kind in kinds:
            for marker in pending(self.drive, kind):
                if marker.signal_path is None:
                    self._quarantine(result, kind, marker.path, marker.problem or "", None)
                    done(marker)
                    continue
                if self._consider(result, kind, marker.signal_path, marker):
                    done(marker)
            if full:
                known = self.ledger.known_signal_files(kind)
                for path in self._canonical(kind):
                    try:
                        mtime = path.lstat().st_mtime
                    except FileNotFoundError:
                        continue
                    if known.get(str(path)) != mtime:
                        self._consider(result, kind, path, None)
        return result

    def _canonical(self, kind: str) -> Iterator[Path]:
        parts, patterns = CANONICAL[kind]
        base = self.drive.root.joinpath(*parts)
        for pattern in patterns:
            yield from base.glob(pattern)

    def _consider(self, result: TickResult, kind: str, path: Path, marker: Marker | None
                  ) -> bool:
        """Handle one candidate; False when it must be looked at again on a later tick."""
        result.checked += 1
        try:
            st = path.lstat()
        except FileNotFoundError:
            log.warning("announced signal %s is gone", path)
            return True
        except OSError as exc:
            log.warning("cannot stat %s (%s); will retry", path, exc.strerror)
            return False
        if self.clock() - st.st_mtime < self.debounce:
            result.deferred.append(path)
            return False
        try:
            sf = read_signal(path, self.drive, kind=kind)
            problem = self.validators[kind](sf) if kind in self.validators else None
        except SignalError as exc:
            self._quarantine(result, kind, path, exc.problem, _experiment_of(path, kind),
                             st.st_mtime, st.st_size)
            return True
        except (BatonError, OSError) as exc:
            log.warning("cannot read %s (%s); will retry", path, exc)
            return False
        if problem:
            self._quarantine(result, kind, path, problem, sf.signal.experiment, st.st_mtime,
                             st.st_size, sf.sha256)
            return True
        self.ledger.note_campaign(sf.signal.campaign, sf.signal.campaign_type,
                                  f"signal {path}", self.campaigns)
        applier = self.appliers.get(kind)
        answered: list[Any] = []

        def apply(conn: Connection, sf: SignalFile) -> None:
            answered.append(applier(conn, sf) if applier else True)

        try:
            accepted = self.ledger.accept_signal(sf, apply)
        except Exception:  # one signal's failure must not stop the others
            log.exception("could not record %s; will retry on a later tick", path)
            return False
        if accepted:
            result.accepted.append(sf)
            if not answered[-1]:
                result.unanswered.append(sf)
        return True

    def _quarantine(self, result: TickResult, kind: str, path: Path, reason: str,
                    experiment: str | None, mtime: float | None = None,
                    size: int | None = None, sha: str | None = None) -> None:
        digest = sha or hashlib.sha256(f"{path}:{mtime}:{size}".encode()).hexdigest()
        key = f"quarantined:{kind}:{digest[:24]}:{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if self.ledger.record_signal(key, kind, str(path), "quarantined", experiment=experiment,
                                     reason=reason, sha256=sha, file_mtime=mtime):
            log.warning("quarantined %s: %s", path, reason, extra={"experiment": experiment})
            result.quarantined.append(Quarantined(kind, path, reason, experiment))


def _experiment_of(path: Path, kind: str) -> str | None:
    """The folder name a signal sits in, if it is a valid experiment name."""
    from baton.layout import NAME_RE

    name = path.parent.name if "tasks" not in path.parts else path.parent.parent.parent.name
    return name if NAME_RE.fullmatch(name) else None


def checkpoint_problem(sf: SignalFile) -> str | None:
    """The training signal's checkpoints must exist, be non-empty and hold no partial
    files (:func:`baton.signals.checkpoint_problem`, which the training hook asks too)."""
    return signals.checkpoint_problem(sf.signal)
