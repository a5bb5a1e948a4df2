"""``baton exporter``: Prometheus metrics computed at scrape time from the ledger, a cached
Slurm queue snapshot and the shared drive. Imports no dagster."""
