"""Supervision end to end on the local backend and both ledgers: a late job under
``late_action: alert``, a plain failure under the default policy, dispatches that fail and
are tried again, ``baton supervise cancel`` of a running repair, and a retry whose
dispatch fails.

Each job waits until the test writes its exit code to ``go-$SLURM_JOB_ID``, so every
state is reached by the test, not by a clock. The one thing mocked is sbatch refusing a
submission (``Refusing``): it cannot be made to fail on demand for real."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.cli import main as baton_main
from baton.config import Config, load_config
from baton.errors import TransientSlurmError
from baton.exporter.repairs import supervision_metrics
from baton.ledger import Ledger, open_ledger
from baton.pipeline.submission import submit_jobs
from baton.slurm.factory import make_backend
from baton.slurm.local import LocalBackend
from baton.supervision.actions import DISPATCH_BACKOFF, DISPATCH_TRIES, retry, tick

REFUSED = ("sbatch: error: Batch job submission failed: Unable to contact slurm controller "
           "(connect failure)")


class Refusing(LocalBackend):
    """The local backend, except that its first ``refusals`` submissions are refused the
    way sbatch refuses them when slurmctld is down."""

    def __init__(self, state_dir: Path, refusals: int) -> None:
        super().__init__(state_dir, max_concurrent=4)
        self.refusals = refusals
        self.calls = 0

    def submit(self, spec: Any, script_path: Path) -> Any:
        self.calls += 1
        if self.calls <= self.refusals:
            raise TransientSlurmError(REFUSED)
        return super().submit(spec, script_path)


@dataclass
class Rig:
    config: Config
    ledger: Ledger
    backend: LocalBackend
    config_file: Path
    gates: Path

    def submit(self, experiment: str) -> int:
        ckpt = str(self.config.drive.experiment(experiment).final_dir)
        Path(ckpt).mkdir(parents=True, exist_ok=True)  # submissions refuse a missing one
        return submit_jobs(self.config, self.ledger, self.backend, "evaluation",
                           [(experiment, ckpt)])[0].row_id

    def finish(self, row_id: int, code: int) -> None:
        """Let the job of ledger row ``row_id`` end with exit ``code``."""
        (self.gates / f"go-{self.ledger.job(row_id).job_id}").write_text(str(code))

    def poll_until(self, row_id: int, states: set[str]) -> Any:
        """What the tracker does each tick, until the job's state is in ``states``."""
        deadline = time.monotonic() + 60
        while self.ledger.job(row_id).state not in states:
            assert time.monotonic() < deadline, self.ledger.job(row_id)._asdict()
            ids = [r.job_id for r in self.ledger.unfinished_jobs()]
            self.ledger.apply_statuses(self.backend.status(ids))
            time.sleep(0.1)
        return self.ledger.job(row_id)

    def tick(self, now: datetime | None = None, backend: LocalBackend | None = None) -> Any:
        return tick(self.config, self.ledger, backend or self.backend, now)

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = baton_main(["--config", str(self.config_file), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    def gauge(self, name: str) -> float:
        for family in supervision_metrics(self.ledger):
            if family.name == name:
                return next(s.value for s in family.samples
                            if s.labels == {"stage": "evaluation"})
        raise KeyError(name)


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path, ledger_url: str) -> Any:
    """``rig(**policy)``: the evaluation stage (one hour, 100M) with that policy."""
    made: list[Rig] = []

    def make(**policy: object) -> Rig:
        gates = tmp_path / "gates"
        gates.mkdir()
        command = (f'while [ ! -e {gates}/go-$SLURM_JOB_ID ]; do sleep 0.1; done; '
                   f'exit "$(cat {gates}/go-$SLURM_JOB_ID)"')
        doc = {"shared_drive": str(tmp_path / "drive"), "state_dir": str(tmp_path / "state"),
               "database_url": ledger_url,
               "slurm": {"backend": "local", "local_max_concurrent": 4},
               "stages": {"evaluation": {"time": "01:00:00", "mem": "100M", "cpus": 1,
                                         "command": command, "supervision": policy}}}
        path = tmp_path / "baton.yaml"
        path.write_text(yaml.safe_dump(doc))
        config = load_config(path)
        config.drive.create()
        r = Rig(config, open_ledger(config.ledger_url, init=True),
                make_backend(config, "local"), path, gates)
        made.append(r)
        return r

    yield make
    for r in made:  # let whatever still runs end
        for job in r.ledger.unfinished_jobs(settle_seconds=0):
            (r.gates / f"go-{job.job_id}").write_text("0")
        r.ledger.close()


def test_late_running_alert_is_recorded_followed_and_counted(rig: Any) -> None:
    """``late_action: alert`` without expected_seconds: late at 90% of the time limit,
    before Slurm ends the job at 100%. The record follows the job to its end; the late-jobs
    gauge reads 1 while it runs late, 0 once it ended."""
    r = rig(late_action="alert")
    row = r.submit("dawdler")
    job = r.poll_until(row, {"RUNNING"})
    limit = job.req_time_s
    assert limit == 3600
    assert r.tick(job.started_at + timedelta(seconds=0.85 * limit)).decided == []
    late = job.started_at + timedelta(seconds=0.95 * limit)
    report = r.tick(late)
    [sup] = r.ledger.list_supervisions()
    assert report.decided == [sup.id]
    assert (sup.reason, sup.action, sup.dispatch_status, sup.execution_status) == (
        "late_running", "alert", "not_needed", "running")
    assert "longer than 90% of its time limit 01:00:00" in sup.note
    assert r.gauge("baton_supervision_late_jobs") == 1
    assert r.tick(late).decided == []  # recorded once
    r.finish(row, 0)
    ended = r.poll_until(row, {"COMPLETED"})
    assert r.tick().followed == 1
    sup = r.ledger.supervision(sup.id)
    assert (sup.execution_status, sup.finished_at) == ("completed", ended.ended_at)
    assert r.gauge("baton_supervision_late_jobs") == 0
    assert len(r.ledger.jobs(experiment="dawdler")) == 1  # an alert resubmits nothing


def test_plain_failure_under_the_default_policy_is_recorded_not_resubmitted(
        rig: Any) -> None:
    r = rig()  # the default policy: resubmit_failed false
    row = r.submit("buggy")
    r.finish(row, 3)
    job = r.poll_until(row, {"FAILED"})
    assert (job.exit_code, job.exit_signal) == (3, 0)
    assert job.max_rss_mb is not None  # its accounting is in: decided at once
    report = r.tick()
    [sup] = r.ledger.list_supervisions()
    assert report.decided == [sup.id] and report.dispatched == []
    assert (sup.reason, sup.action, sup.dispatch_status, sup.execution_status) == (
        "failed", "none", "not_needed", "none")
    assert sup.note == ("failed (exit 3:0): likely a bug, not resubmitted "
                        "(supervision.resubmit_failed is false)")
    assert r.tick().decided == []
    assert [(j.attempt, j.state) for j in r.ledger.jobs(experiment="buggy")] == [
        (1, "FAILED")]


def _failed_once(r: Rig, experiment: str) -> int:
    row = r.submit(experiment)
    r.finish(row, 3)
    r.poll_until(row, {"FAILED"})
    return row


def test_a_failed_dispatch_is_tried_again_with_backoff_then_given_up_loudly(
        rig: Any, capsys: pytest.CaptureFixture[str]) -> None:
    r = rig(resubmit_failed=True)
    _failed_once(r, "unlucky")
    refusing = Refusing(r.config.state_dir, refusals=99)
    t = datetime.now(UTC)
    report = r.tick(t, refusing)
    [sup] = r.ledger.list_supervisions()
    assert report.failed == [sup.id] and refusing.calls == 1
    assert (sup.dispatch_status, sup.execution_status) == ("retrying", "pending")
    assert sup.dispatch_error.startswith(f"try 1 of {DISPATCH_TRIES} failed at ")
    assert sup.dispatch_error.endswith(REFUSED)
    assert r.tick(t + DISPATCH_BACKOFF / 2, refusing).failed == []  # backing off
    assert refusing.calls == 1
    wait = DISPATCH_BACKOFF
    for n in range(2, DISPATCH_TRIES + 1):
        t += wait + timedelta(seconds=1)
        assert r.tick(t, refusing).failed == [sup.id]
        assert refusing.calls == n
        wait *= 2
    sup = r.ledger.supervision(sup.id)
    assert (sup.dispatch_status, sup.execution_status) == ("failed", "none")
    assert sup.dispatch_error.startswith(f"try {DISPATCH_TRIES} of {DISPATCH_TRIES} failed")
    assert r.tick(t + timedelta(days=1), refusing).failed == []  # bounded: no more tries
    assert refusing.calls == DISPATCH_TRIES
    # what the exporter shows, and BatonSupervisionDispatchFailed alerts on
    assert r.gauge("baton_supervision_dispatch_failed") == 1
    # one claim for the repair, tried five times, never a second job row
    assert [(j.attempt, j.state) for j in r.ledger.jobs(experiment="unlucky")] == [
        (1, "FAILED"), (2, "SUBMIT_FAILED")]
    code, out, _ = r.cli(capsys, "supervise", "list", "--open")
    assert code == 0 and f"{sup.id:>4}" in out and "failed" in out
    code, out, _ = r.cli(capsys, "supervise", "cancel", str(sup.id))
    assert (code, out) == (0, f"supervision {sup.id} cancelled before it was dispatched\n")
    assert r.cli(capsys, "supervise", "list", "--open")[1] == "no supervisions\n"
    assert r.gauge("baton_supervision_dispatch_failed") == 0


def test_a_dispatch_that_succeeds_on_a_later_try_submits_once(rig: Any) -> None:
    r = rig(resubmit_failed=True)
    first = _failed_once(r, "flaky")
    refusing = Refusing(r.config.state_dir, refusals=2)
    t = datetime.now(UTC)
    assert r.tick(t, refusing).dispatched == []
    assert r.tick(t + DISPATCH_BACKOFF + timedelta(seconds=1), refusing).dispatched == []
    report = r.tick(t + 3 * DISPATCH_BACKOFF + timedelta(seconds=2), refusing)
    [sup] = r.ledger.list_supervisions()
    assert report.dispatched == [sup.id] and refusing.calls == 3
    assert (sup.dispatch_status, sup.dispatch_error) == ("dispatched", None)
    jobs = r.ledger.jobs(experiment="flaky")
    assert [(j.attempt, j.parent_id) for j in jobs] == [(1, None), (2, first)]
    assert jobs[1].job_id == sup.repair_job_id
    r.finish(sup.repair_row, 0)
    r.poll_until(sup.repair_row, {"COMPLETED"})
    r.tick()
    assert r.ledger.supervision(sup.id).execution_status == "completed"


def test_cancel_scancels_a_running_repair(rig: Any, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    r = rig(resubmit_failed=True)
    _failed_once(r, "stuck")
    r.tick()
    [sup] = r.ledger.list_supervisions()
    assert sup.dispatch_status == "dispatched"
    r.poll_until(sup.repair_row, {"RUNNING"})
    code, out, _ = r.cli(capsys, "supervise", "cancel", str(sup.id), "--backend", "local")
    assert (code, out) == (0, f"job {sup.repair_job_id} cancelled (supervision {sup.id})\n")
    sup = r.ledger.supervision(sup.id)
    assert sup.execution_status == "cancelled" and sup.finished_at is not None
    repair = r.poll_until(sup.repair_row, {"CANCELLED"})  # really stopped: never let go
    assert not (r.gates / f"go-{repair.job_id}").exists()
    assert r.tick().decided == []  # a person's cancel is final: not repaired
    assert r.ledger.supervision(sup.id).execution_status == "cancelled"
    code, _, err = r.cli(capsys, "supervise", "cancel", str(sup.id), "--backend", "local")
    assert code == 1 and "nothing to cancel" in err and "CANCELLED" in err


def test_cancel_of_a_repair_slurm_no_longer_holds_claims_nothing(
        rig: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The repair ended in Slurm before the tracker saw it: scancel cancels nothing, so
    neither the command nor the supervision may say it did."""
    r = rig(resubmit_failed=True)
    _failed_once(r, "quick")
    r.tick()
    [sup] = r.ledger.list_supervisions()
    r.poll_until(sup.repair_row, {"RUNNING"})
    r.finish(sup.repair_row, 0)
    deadline = time.monotonic() + 60
    while not r.backend.status([sup.repair_job_id])[sup.repair_job_id].terminal:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert r.ledger.job(sup.repair_row).state == "RUNNING"  # the ledger has not seen it end
    code, out, err = r.cli(capsys, "supervise", "cancel", str(sup.id), "--backend", "local")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (f"baton: error: job {sup.repair_job_id} of supervision "
                                    f"{sup.id} was not cancelled: Job/step already completing "
                                    "or completed")
    assert r.ledger.supervision(sup.id).execution_status != "cancelled"


def test_retry_marks_the_give_up_only_once_dispatched(rig: Any,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    r = rig(resubmit_failed=True, max_attempts=1)
    _failed_once(r, "stubborn")
    r.tick()
    [gave_up] = r.ledger.list_supervisions()
    assert (gave_up.action, gave_up.execution_status) == ("gave_up", "open")
    assert r.gauge("baton_supervision_gave_up_open") == 1
    refusing = Refusing(r.config.state_dir, refusals=1)
    new = retry(r.config, r.ledger, refusing, gave_up.id)
    manual = r.ledger.supervision(new)
    assert (manual.reason, manual.dispatch_status) == ("manual", "retrying")
    assert r.ledger.supervision(gave_up.id).execution_status == "open"  # nothing runs yet
    assert r.gauge("baton_supervision_gave_up_open") == 1  # ... so the alert still fires
    t = datetime.now(UTC) + DISPATCH_BACKOFF + timedelta(seconds=1)
    assert r.tick(t, refusing).dispatched == [new]  # the supervisor's next try
    manual = r.ledger.supervision(new)
    assert manual.dispatch_status == "dispatched" and manual.repair_job_id
    assert r.ledger.supervision(gave_up.id).execution_status == "retried"
    assert r.gauge("baton_supervision_gave_up_open") == 0
    code, _, err = r.cli(capsys, "supervise", "retry", str(gave_up.id), "--backend", "local")
    assert code == 1 and f"already retried as supervision {new}" in err


@pytest.mark.parametrize("every_try_failed", [False, True])
def test_a_person_retries_a_failed_dispatch_at_once(rig: Any, every_try_failed: bool,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    r = rig(resubmit_failed=True, max_attempts=1)
    _failed_once(r, "again")
    r.tick()
    [gave_up] = r.ledger.list_supervisions()
    refusing = Refusing(r.config.state_dir, refusals=99)
    new = retry(r.config, r.ledger, refusing, gave_up.id)
    assert r.ledger.supervision(new).dispatch_status == "retrying"
    t = datetime.now(UTC)
    while every_try_failed and refusing.calls < DISPATCH_TRIES:
        t += timedelta(days=1)
        r.tick(t, refusing)
    if every_try_failed:
        assert (r.ledger.supervision(new).dispatch_status, refusing.calls) == ("failed",
                                                                               DISPATCH_TRIES)
    code, out, _ = r.cli(capsys, "supervise", "retry", str(gave_up.id), "--backend", "local")
    manual = r.ledger.supervision(new)
    assert code == 0 and manual.dispatch_status == "dispatched", out
    assert manual.execution_status in ("pending", "running")
    assert out.startswith(f"supervision {new}: job {gave_up.job_id} resubmitted as job "
                          f"{manual.repair_job_id} (attempt 2")
    assert r.ledger.supervision(gave_up.id).execution_status == "retried"
