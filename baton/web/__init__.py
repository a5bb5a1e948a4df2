"""``baton web``: read-only status pages for the people whose experiments flow through
baton: experiments, the queue, failures and supervision, status reports, campaigns and job
logs, rendered on the server from the ledger (opened read-only)."""
