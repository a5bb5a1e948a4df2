"""The orchestrator's ledger (SQLAlchemy Core): SQLite by default, PostgreSQL by URL."""

from baton.ledger.store import Claim, Ledger, open_ledger

__all__ = ["Claim", "Ledger", "open_ledger"]
