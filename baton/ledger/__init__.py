"""The orchestrator's ledger (SQLAlchemy Core): SQLite by default, PostgreSQL by URL. The
only code that reads or writes its database; everything else goes through :class:`Ledger`."""

from baton.ledger.engine import LedgerMissing, LedgerUnavailable, display_url
from baton.ledger.slurm_jobs import Claim
from baton.ledger.store import Ledger, open_ledger

__all__ = ["Claim", "Ledger", "LedgerMissing", "LedgerUnavailable", "display_url",
           "open_ledger"]
