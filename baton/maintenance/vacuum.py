"""``baton db vacuum`` (weekly, and after each archive): the space of deleted rows given
back, the sizes before and after recorded in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from baton.config import Config
from baton.ledger import open_ledger


def vacuum(config: Config) -> tuple[int, int]:
    """VACUUM (SQLite) or VACUUM ANALYZE (PostgreSQL); returns the size before and after."""
    started = datetime.now(UTC)
    ledger = open_ledger(config.ledger_url)
    try:
        before = ledger.size_bytes()
        ledger.vacuum()
        after = ledger.size_bytes()
        ledger.record_run("vacuum", True, started, size=after, detail={"before": before})
        return before, after
    finally:
        ledger.close()
