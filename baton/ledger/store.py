"""The ledger: the one place the orchestrator writes state. Only the orchestrator opens it.

Every write that must happen once (a signal, a submission) goes through a unique key, so
seeing the same thing twice - daemon restart, two sensors, UI plus automation - does one
thing. :class:`Ledger` is the one interface to the database; each part of it lives in the
module of its tables."""

from __future__ import annotations

from baton.ledger.campaigns import Campaigns
from baton.ledger.heartbeats import Heartbeats
from baton.ledger.holds import Holds
from baton.ledger.increments import History
from baton.ledger.rebuild import Rebuild
from baton.ledger.settled import Settled
from baton.ledger.signal_log import SignalLog
from baton.ledger.slurm_jobs import SlurmJobs
from baton.ledger.stages import Stages
from baton.ledger.status_events import StatusEvents
from baton.ledger.supervisions import Supervisions
from baton.ledger.tables import Tables
from baton.ledger.timelines import Timelines
from baton.ledger.training import TrainingRuns
from baton.ledger.upkeep import Upkeep
from baton.ledger.web_queries import WebQueries


class Ledger(SignalLog, TrainingRuns, SlurmJobs, Heartbeats, Stages, Campaigns,
             Supervisions, StatusEvents, Timelines, Tables, Holds, Rebuild, Upkeep, Settled,
             History, WebQueries):
    """The orchestrator's database: SQLite by default, PostgreSQL by URL."""


def open_ledger(url: str, *, init: bool = False, read_only: bool = False) -> Ledger:
    """Open the existing ledger at ``url``, refusing (:class:`LedgerUnavailable`, one line
    naming the URL) one that is missing, unreachable or at another schema: a command run
    with the wrong configuration must not start an empty ledger and carry on. ``init``:
    create it or bring it to the current schema (``baton db init``, the demo, tests only).
    ``read_only``: for the tools that only read (``baton sql``, the exporter)."""
    ledger = Ledger(url, create=init, read_only=read_only and not init)
    try:
        if init:
            ledger.init()
        else:
            ledger.require_current()
    except BaseException:
        ledger.close()
        raise
    return ledger
