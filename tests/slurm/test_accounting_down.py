"""A job that ends while slurmdbd is down: its final state comes from the controller, its
resource figures (CPU time, MaxRSS) only from accounting once slurmdbd answers again, and
never from sacct's view of the running job. Real captured outputs (tests/data/slurm, see its
README "Accounting down"), the real sbatch backend's logic and the real ledger (SQLite and
PostgreSQL); the last test runs the whole story on the real cluster."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import slurm_jobs
from baton.slurm.parse import parse_sacct, parse_scontrol, parse_squeue
from baton.slurm.sbatch import SbatchBackend, run_command
from baton.slurm.spec import JobSpec

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
JOB = "9"  # the job of the capture


def read(name: str) -> str:
    return (DATA / name).read_text()


class Replay:
    """Answers sacct, squeue and scontrol with what the real commands printed at one
    moment of the capture (slurmdbd cannot be stopped here: other tests use it)."""

    def __init__(self) -> None:
        self.moment = "running"

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if argv[0] == "squeue" and "--me" in argv and self.moment == "running":
            # the capture has no queue listing of that moment: an empty one sends the poll
            # to sacct, as for a job that just left the queue
            return subprocess.CompletedProcess(list(argv), 0, "", "")
        name = {("running", "sacct"): ("sacct_dbd_running.txt", 0),
                ("down", "sacct"): ("sacct_dbd_down.txt", 1),
                ("down", "squeue"): ("squeue_dbd_down_completed.txt", 0),
                ("down", "scontrol"): ("scontrol_dbd_down_completed.txt", 0),
                ("back", "sacct"): ("sacct_dbd_back.txt", 0)}[(self.moment, argv[0])]
        text, code = read(name[0]), name[1]
        return subprocess.CompletedProcess(list(argv), code, "" if code else text,
                                           text if code else "")


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:
    led = open_ledger(ledger_url, init=True)
    yield led
    led.close()


def submitted(ledger: Ledger, job_id: str = JOB, key: str = "evaluation:e:attempt-1") -> int:
    claim = ledger.claim_submission(key, stage="evaluation", experiment="e",
                                    backend="sbatch")
    ledger.mark_submitted(claim.row_id, job_id)
    return claim.row_id


def test_the_captures_say_what_the_tracker_sees() -> None:
    running = parse_sacct(read("sacct_dbd_running.txt"))[JOB]
    assert running.state == "RUNNING" and running.cpu_seconds == 0.0  # not a real figure
    assert "Problem talking to the database" in read("sacct_dbd_down.txt")
    ended = parse_scontrol(read("scontrol_dbd_down_completed.txt"))[JOB]
    assert ended.state == "COMPLETED" and ended.cpu_seconds is None
    assert ended.max_rss_mb is None and not ended.figures_final
    assert parse_squeue(read("squeue_dbd_down_completed.txt"))[JOB].state == "COMPLETED"
    back = parse_sacct(read("sacct_dbd_back.txt"))[JOB]
    assert back.cpu_seconds == pytest.approx(7.195) and back.max_rss_mb > 90
    assert back.figures_final


def poll(ledger: Ledger, backend: SbatchBackend) -> None:
    """The tracker's poll: the ids, and the state the ledger has of each."""
    rows = ledger.unfinished_jobs()
    ledger.apply_statuses(backend.status([r.job_id for r in rows],
                                         known={r.job_id: r.state for r in rows}))


def test_figures_arrive_once_accounting_answers_again(ledger: Ledger) -> None:
    replay = Replay()
    backend = SbatchBackend(runner=replay, attempts=1)
    row_id = submitted(ledger)
    for moment in ("running", "down"):
        replay.moment = moment
        poll(ledger, backend)
    row = ledger.job(row_id)
    assert row.state == "COMPLETED" and row.ended_at is not None  # the controller's word
    assert row.cpu_seconds is None and row.max_rss_mb is None  # nothing made up
    # the final state came from the controller: the row is asked about again
    assert [r.id for r in ledger.unfinished_jobs()] == [row_id]
    replay.moment = "back"  # a finished job is not looked for in the queue: sacct only
    poll(ledger, backend)
    row = ledger.job(row_id)
    assert row.cpu_seconds == pytest.approx(7.195) and row.max_rss_mb == pytest.approx(
        98456 / 1024)
    assert row.figures == "final" and ledger.unfinished_jobs() == []


def test_a_pending_reason_is_cleared_when_the_job_leaves_pending(ledger: Ledger) -> None:
    row_id = submitted(ledger, "255")
    held = parse_squeue(read("squeue.txt"))["255"]
    assert held.state == "PENDING" and held.reason
    ledger.apply_statuses({"255": held})
    assert ledger.job(row_id).reason == held.reason
    ledger.apply_statuses({"255": parse_sacct(read("sacct_finished.txt"))["255"]})
    row = ledger.job(row_id)
    assert row.state == "COMPLETED" and row.reason is None


def test_figures_never_awaited_forever(ledger: Ledger) -> None:
    row_id = submitted(ledger)
    ledger.apply_statuses(parse_scontrol(read("scontrol_dbd_down_completed.txt")))
    assert [r.id for r in ledger.unfinished_jobs()] == [row_id]
    assert ledger.give_up_figures() == []  # within the bound: still waiting
    with ledger.engine.begin() as conn:  # it ended a long time ago
        conn.execute(update(slurm_jobs).values(
            ended_at=datetime.now(UTC) - timedelta(days=3)))
    assert ledger.unfinished_jobs() == []
    assert [r.id for r in ledger.give_up_figures()] == [row_id]  # said once...
    assert ledger.give_up_figures() == []  # ...not at every tick
    row = ledger.job(row_id)
    assert row.figures == "unavailable" and row.cpu_seconds is None


def test_a_submission_that_never_reached_slurm_awaits_no_figures(ledger: Ledger) -> None:
    claim = ledger.claim_submission("k", stage="analysis", experiment="e", backend="sbatch")
    ledger.mark_submit_failed(claim.row_id, "sbatch: error: invalid partition")
    with ledger.engine.begin() as conn:
        conn.execute(update(slurm_jobs).values(
            ended_at=datetime.now(UTC) - timedelta(days=3)))
    assert ledger.give_up_figures() == [] and ledger.unfinished_jobs() == []


def test_without_accounting_no_figures_are_awaited(ledger: Ledger) -> None:
    """A cluster without accounting: the controller's word is all there will ever be."""
    replay = Replay()

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if argv[0] == "sacct":  # what sacct says there (not captured: the CI cluster has it)
            return subprocess.CompletedProcess(
                list(argv), 1, "", "sacct: error: Slurm accounting storage is disabled\n")
        return replay(argv)

    replay.moment = "down"
    backend = SbatchBackend(runner=runner, attempts=1)
    row_id = submitted(ledger)
    ledger.apply_statuses(backend.status([JOB]))
    row = ledger.job(row_id)
    assert row.state == "COMPLETED" and row.cpu_seconds is None
    assert row.figures == "unavailable"  # and none awaited
    assert ledger.unfinished_jobs() == [] and ledger.give_up_figures(0) == []


def _no_accounting_conf(tmp_path: Path) -> Path:
    """slurm.conf with the accounting port where no slurmdbd listens: sacct (and only
    sacct: the daemons keep their own configuration) cannot reach accounting."""
    conf = Path("/etc/slurm/slurm.conf").read_text()
    path = tmp_path / "slurm-no-accounting.conf"
    path.write_text(re.sub(r"(?m)^AccountingStoragePort=.*$", "AccountingStoragePort=9",
                           conf))
    return path


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_on_the_real_cluster(ledger: Ledger, tmp_path: Path) -> None:
    conf = _no_accounting_conf(tmp_path)
    down = False

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if down and argv[0] == "sacct":
            return subprocess.run(list(argv), capture_output=True, text=True, check=False,
                                  env={**os.environ, "TZ": "UTC", "SLURM_CONF": str(conf),
                                       "SLURM_TIME_FORMAT": "standard"})
        return run_command(argv)

    backend = SbatchBackend(runner=runner, attempts=2, base_delay=0.5)
    script = tmp_path / "busy.sh"
    script.write_text("#!/bin/bash\npython3 -c \"b = bytearray(60 * 1024 * 1024)\n"
                      "import time\nt = time.time()\nwhile time.time() - t < 4: pass\"\n")
    spec = JobSpec(name="acct-down", script=script.read_text(), time="00:02:00", mem="500M",
                   output=str(tmp_path / "%j.out"))
    row_id = submitted(ledger, backend.submit(spec, script).job_id)

    def tick() -> None:
        ledger.apply_statuses(backend.status([r.job_id for r in ledger.unfinished_jobs()]))

    deadline = time.monotonic() + 120
    while ledger.job(row_id).state != "RUNNING":
        assert time.monotonic() < deadline, ledger.job(row_id)
        tick()
        time.sleep(0.3)
    down = True
    while ledger.job(row_id).state != "COMPLETED":
        assert time.monotonic() < deadline, ledger.job(row_id)
        tick()
        time.sleep(0.5)
    row = ledger.job(row_id)
    assert row.cpu_seconds is None and row.max_rss_mb is None and row.figures is None
    down = False
    tick()
    row = ledger.job(row_id)
    assert row.figures == "final" and row.cpu_seconds > 1 and row.max_rss_mb > 50, row
