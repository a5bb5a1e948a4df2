"""The orchestrator's ledger (SQLAlchemy Core): SQLite by default, PostgreSQL by URL. The
only code that reads or writes its database; everything else goes through :class:`Ledger`."""

from baton.ledger.slurm_jobs import Claim
from baton.ledger.store import Ledger, open_ledger

__all__ = ["Claim", "Ledger", "open_ledger"]
