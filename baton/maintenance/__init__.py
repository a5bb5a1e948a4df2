"""The ledger's lifetime: backups and restores, archiving settled history to Parquet,
VACUUM, and the retention of Slurm's logs on the drive. Each is a ``baton db`` command
and a Dagster schedule (``schedules/``), and records its outcome in the ledger."""
