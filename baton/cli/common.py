"""What every sub-command shares."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from baton.config import Config
    from baton.ledger import Ledger


def config_from(args: argparse.Namespace) -> Config:
    """The configuration named on the command line (or the default), with logging set up."""
    from baton.config import load_config
    from baton.logs import setup_logging

    config = load_config(getattr(args, "config", None))
    setup_logging(config.logging, verbose=getattr(args, "verbose", False))
    return config


def read_only_ledger(config: Config) -> tuple[Ledger | None, str]:
    """The ledger opened read-only if there is one (a missing one is not created)."""
    from baton.ledger import LedgerMissing, LedgerUnavailable, display_url, open_ledger

    url = display_url(config.ledger_url)
    try:
        return open_ledger(config.ledger_url, read_only=True), f"ledger {url} (read only)"
    except LedgerMissing:
        return None, f"no ledger at {url}: no task is known to be submitted already"
    except LedgerUnavailable as exc:
        return None, f"{exc}; planned as if no task were submitted already"
