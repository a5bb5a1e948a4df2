"""What every sub-command shares."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from baton.config import Config


def config_from(args: argparse.Namespace) -> Config:
    """The configuration named on the command line (or the default), with logging set up."""
    from baton.config import load_config
    from baton.logs import setup_logging

    config = load_config(getattr(args, "config", None))
    setup_logging(config.logging, verbose=getattr(args, "verbose", False))
    return config


def safe_url(url: str) -> str:
    """The URL without its password: nothing secret in logs or output."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
