"""A dead submitter's job that already ran and left the queue is adopted from Slurm's
accounting, with its id and final state, and never submitted again (real Slurm)."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from baton.config import Config
from baton.ledger import open_ledger
from baton.pipeline.submission import comment_token, reconcile_stale
from baton.slurm.sbatch import SbatchBackend
from tests.slurm.test_slurm_real import submit, wait_done


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_a_job_that_left_the_queue_is_adopted_from_accounting(config: Config,
                                                              tmp_path: Path) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    backend = SbatchBackend(base_delay=0.5)
    since = datetime.now(UTC) - timedelta(minutes=1)
    key = f"evaluation:gone-{secrets.token_hex(4)}:attempt-1"  # its own token, this run
    claim = ledger.claim_submission(key, stage="evaluation", experiment="gone",
                                    backend="sbatch")
    token = comment_token([key])
    ledger.note_token([claim.row_id], token)
    job = submit(backend, tmp_path, "gone", "true", comment=token)  # then the submitter died
    assert wait_done(backend, [job])[job].state == "COMPLETED"
    deadline = time.monotonic() + 60
    while token not in backend.jobs_by_comment(since) or backend.find_by_comment(token):
        assert time.monotonic() < deadline, "the job never left the queue for accounting"
        time.sleep(1)

    assert reconcile_stale(ledger, backend, older_than_s=0) == 1
    row = ledger.job(claim.row_id)
    assert (row.job_id, row.state, row.exit_code) == (job, "COMPLETED", 0)
    assert ledger.claim_submission(key, stage="evaluation", experiment="gone",
                                   backend="sbatch").created is False  # a retry submits nothing


@pytest.mark.parametrize("accounting", ["off", "down"])
def test_without_accounting_a_claim_not_in_the_queue_is_settled(config: Config,
                                                                accounting: str) -> None:
    """A cluster that keeps no accounting (sacct: "accounting storage is disabled") can
    never say more than its queue: a dead submitter's claim not in the queue is marked
    failed, as before accounting was asked, instead of waiting for ever. Accounting that is
    down for now (any other sacct error) makes the claim wait for a later call."""
    ledger = open_ledger(config.ledger_url, init=True)
    key = f"evaluation:lost-{secrets.token_hex(4)}:attempt-1"
    claim = ledger.claim_submission(key, stage="evaluation", experiment="lost",
                                    backend="sbatch")
    ledger.note_token([claim.row_id], comment_token([key]))
    said = {"off": "sacct: error: Slurm accounting storage is disabled\n",
            "down": "sacct: error: slurmdbd: Connection refused\n"}[accounting]

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        # the one thing faked: a cluster without accounting (the CI cluster has it)
        if argv[0] == "sacct":
            return subprocess.CompletedProcess(list(argv), 1, "", said)
        assert argv[0] == "squeue", argv
        return subprocess.CompletedProcess(list(argv), 0, "", "")  # not in the queue

    backend = SbatchBackend(runner=runner, attempts=1)
    settled = reconcile_stale(ledger, backend, older_than_s=0)
    row = ledger.job(claim.row_id)
    if accounting == "off":
        assert (settled, row.state) == (1, "SUBMIT_FAILED")
    else:
        assert (settled, row.state) == (0, "SUBMITTING")
