"""The counters of the job rows ``baton db archive`` moved out of the ledger, so that
``baton_jobs_finished_total``, ``baton_jobs_failed_total`` and the job histograms never go
down when a full recomputation (or a pass over the history) no longer finds those rows:
Prometheus would read a reset.

Each archive run that moved job rows is recorded in the ledger with its stamp, in the
transaction that deleted them, and its rows are in ``{state_dir}/archive/slurm_jobs/
{stamp}.parquet`` (``.parquet.pending`` until the run renames it). A file never changes,
so it is tallied once per exporter process (with :class:`JobTally`, the counting of the
live rows: nothing is counted twice, in two ways) and kept. Read from the Parquet rather
than totals written by the archive into the ledger: the counting rules stay in one place
(baton/exporter/job_tally.py, above the archive's layer), and a change to them counts the
archived rows the new way too. The exporter must see the state folder of `baton db
archive` (the daemon's host, where its schedule runs it)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq

from baton.exporter.job_tally import JobTally
from baton.ledger import Ledger
from baton.ledger.slurm_jobs import SCRIPT_STAGE
from baton.maintenance.archive import PENDING

log = logging.getLogger(__name__)
TABLE = "slurm_jobs"
COLUMNS = ("id", "stage", "state", "reason", "exit_code", "exit_signal", "max_rss_mb",
           "req_mem_mb", "submitted_at", "started_at", "ended_at", "restarts",
           "cpu_seconds", "figures", "campaign")


class ArchivedJobs:
    """The tallies of the archived job rows, one per archive run, read once each."""

    def __init__(self, ledger: Ledger, root: Path) -> None:
        self.ledger, self.root = ledger, root
        self.tallies: dict[str, JobTally] = {}

    def stamps(self) -> tuple[str, ...]:
        """The archive runs that moved job rows out, as the ledger records them now."""
        return tuple(self.ledger.archive_stamps(TABLE))

    def add_to(self, tally: JobTally, stamps: tuple[str, ...]) -> JobTally:
        """``tally`` with the counters of the rows those runs moved out."""
        for stamp in stamps:
            tally.add_counters(self._tally(stamp))
        return tally

    def _tally(self, stamp: str) -> JobTally:
        if stamp not in self.tallies:
            self.tallies[stamp] = self._read(stamp)
        return self.tallies[stamp]

    def _read(self, stamp: str) -> JobTally:
        tally = JobTally()
        folder = self.root / TABLE
        path = next((p for p in (folder / f"{stamp}.parquet", folder / f"{stamp}{PENDING}")
                     if p.is_file()), None)
        if path is None:  # removed by hand: its counts are lost, say so once
            log.warning("the archived job rows of %s are not in %s: the job counters leave "
                        "them out", stamp, folder)
            return tally
        names = set(pq.read_schema(path).names)
        for batch in pq.ParquetFile(path).iter_batches(
                columns=[c for c in COLUMNS if c in names]):
            for row in batch.to_pylist():
                if row["stage"] != SCRIPT_STAGE:
                    tally.add(SimpleNamespace(**{**dict.fromkeys(COLUMNS), **row}))
        return tally
