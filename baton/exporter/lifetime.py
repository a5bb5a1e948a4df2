"""The ledger's lifetime, watched: the last good backup, failed backups, the ledger's size
and the space Slurm's logs take on the drive. All read from the ledger (the runs recorded
by baton/maintenance): nothing here walks the drive, whose log folder is measured by the
daily pruning, not per scrape."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Metric

from baton.ledger import Ledger


def lifetime_metrics(ledger: Ledger) -> list[Metric]:
    last = ledger.last_run("backup")
    _, failed = ledger.run_counts("backup")
    out: list[Metric] = [
        GaugeMetricFamily("baton_ledger_backup_last_success_timestamp_seconds",
                          "when the last verified backup of the ledger finished (0: never)",
                          value=last.finished_at.timestamp() if last is not None else 0),
        CounterMetricFamily("baton_ledger_backup_failures", "backups of the ledger that "
                            "failed (recorded in the ledger)", value=failed),
        GaugeMetricFamily("baton_ledger_size_bytes", "the ledger database's size on disk",
                          value=ledger.size_bytes()),
    ]
    pruned = ledger.last_run("prune")
    if pruned is not None and pruned.bytes is not None:  # measured by the last pruning
        out.append(GaugeMetricFamily("baton_drive_logs_bytes", "bytes under the drive's "
                                     "logs/ (Slurm logs and scripts) at the last pruning",
                                     value=pruned.bytes))
    return out
