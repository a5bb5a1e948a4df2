"""Status reports from any script: the call that never fails (report) and ingestion."""
