"""Errors that carry where the problem is, so a user can fix it without a traceback."""

from __future__ import annotations

from pathlib import Path


class BatonError(Exception):
    """Base of every error baton raises on purpose."""


class InvalidName(BatonError, ValueError):
    """A name (experiment, campaign, stage...) that could escape a path or a shell."""


class PathEscape(BatonError, ValueError):
    """A path that resolves outside the directory it must stay in."""


class SignalError(BatonError):
    """A signal file that cannot be trusted; names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(BatonError):
    """A configuration that cannot be used; names the source, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")


class SlurmError(BatonError):
    """A Slurm command that failed for good (after retries, if it was transient)."""


class TransientSlurmError(SlurmError):
    """The controller did not answer; worth retrying later."""
