"""``python -m prometheus.rules`` rewrites ``prometheus/alerts.yml``: the rules rendered
from the default configuration (``baton alerts render`` renders a site's own; the builder
is :mod:`baton.alert_rules`). A test keeps the file and the defaults in step."""

from __future__ import annotations

import sys
from pathlib import Path

from baton.alert_rules import render
from baton.config import Config

ALERTS = Path(__file__).parent / "alerts.yml"


def default_rules() -> str:
    return render(Config())


if __name__ == "__main__":
    ALERTS.write_text(default_rules())
    sys.stdout.write(f"wrote {ALERTS}\n")
