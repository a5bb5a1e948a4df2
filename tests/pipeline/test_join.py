"""The fan-out join: ``evaluations_ready`` reports an experiment's evaluation only when
every one of its tasks has ended, however many evaluations are in flight at once and in
whatever order their tasks end. The ledger state is built as submission and the sensors
build it: a claimed and submitted Slurm job per task, an evaluation task row per job,
then signals applied and Slurm's word synced into the stage rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.ledger.stages import apply_eval_signal
from baton.ledger.training import apply_training_signal
from baton.signals import EvalComplete, EvalFailed, SignalFile, TrainingComplete, read_signal
from baton.slurm.states import JobStatus


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)


class Evaluation:
    """One trained experiment and the array of evaluation tasks submitted for it."""

    def __init__(self, drive: DriveLayout, ledger: Ledger, name: str, steps: list[int],
                 array_id: str) -> None:
        self.drive, self.ledger, self.name = drive, ledger, name
        layout = drive.experiment(name)
        self.checkpoints = []
        for step in steps:
            ckpt = layout.checkpoint(step)
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / "model.safetensors").write_bytes(b"\1" * 16)
            self.checkpoints.append(str(ckpt))
        self.array_id = array_id
        self.train()

    def train(self) -> None:
        """A (new) training signal: the trigger the next evaluation answers."""
        path = publish(self.drive, TrainingComplete(
            timestamp=datetime.now(UTC), experiment=self.name, hostname="gpu01", user="u",
            checkpoint_path=self.checkpoints[0], checkpoints=self.checkpoints[1:] or None))
        sf = read_signal(path, self.drive)
        assert self.ledger.accept_signal(sf, apply_training_signal)
        self.trigger = sf.idempotency_key

    def job_id(self, task: int) -> str:
        return f"{self.array_id}_{task}"

    def submit(self, task: int) -> None:
        """Task ``task`` of the array, as ``submit_evaluations`` records it."""
        key = f"evaluation:{self.name}:{self.trigger[-12:]}:{task}"
        claim = self.ledger.claim_submission(key, stage="evaluation", experiment=self.name,
                                             backend="sbatch")
        assert claim.created
        self.ledger.mark_submitted(claim.row_id, self.job_id(task),
                                   array_job_id=self.array_id, array_task_id=task)
        self.ledger.record_evaluation_task(experiment=self.name, trigger_key=self.trigger,
                                           checkpoint=self.checkpoints[task],
                                           slurm_row=claim.row_id, job_id=self.job_id(task))

    def signal(self, task: int, ok: bool = True) -> SignalFile:
        """The task's worker writes its ``.eval_complete`` (or ``.eval_failed``) and the
        evaluation sensor applies it."""
        ckpt = self.checkpoints[task]
        folder = self.drive.experiment(self.name).eval_task_dir(ckpt)
        common = dict(timestamp=datetime.now(UTC), experiment=self.name,
                      job_id=self.job_id(task), checkpoints_evaluated=[ckpt])
        if ok:
            sig: EvalComplete = EvalComplete(status="complete", datasets_evaluated=["toy"],
                                             **common)
        else:
            sig = EvalFailed(status="failed", error_message="dataset toy: out of cheese",
                             **common)
        path = publish(self.drive, sig, folder / sig.filename)
        sf = read_signal(path, self.drive)
        with self.ledger.write() as conn:
            assert apply_eval_signal(conn, sf) == 1
        return sf

    def slurm_says(self, task: int, state: str, ended_ago_s: float = 0) -> None:
        """One batched poll's answer about the task's job, carried into the stage rows."""
        ended = datetime.now(UTC) - timedelta(seconds=ended_ago_s)
        self.ledger.apply_statuses({self.job_id(task): JobStatus(
            job_id=self.job_id(task), state=state, array_job_id=self.array_id,
            array_task_id=task, exit_code=1 if state == "FAILED" else 0,
            started_at=ended - timedelta(seconds=5), ended_at=ended)})
        self.ledger.sync_stage_rows(missing_signal_grace_s=60)

    def joined(self) -> None:
        """What the evaluation sensor records once Dagster holds the join's run."""
        assert self.ledger.record_fact(f"run:evaluation_metrics:{self.trigger}",
                                       "run_requested", self.name)


def ready(ledger: Ledger) -> dict[str, str]:
    got = ledger.evaluations_ready()
    assert len(got) == len({e for e, _ in got}), got  # one join per experiment
    return dict(got)


def test_a_join_waits_for_every_task_across_interleaved_evaluations(
        drive: DriveLayout, ledger: Ledger) -> None:
    a = Evaluation(drive, ledger, "exp-a", [100, 200, 300], "501")
    b = Evaluation(drive, ledger, "exp-b", [100, 200], "502")
    c = Evaluation(drive, ledger, "exp-c", [100], "503")
    # the tasks of the three arrays are recorded interleaved, as a backfill array is
    a.submit(0)
    b.submit(0)
    a.submit(1)
    c.submit(0)
    b.submit(1)
    a.submit(2)
    assert ready(ledger) == {}

    a.signal(0)  # a: 1/3
    assert ready(ledger) == {}
    b.signal(1)  # b: 1/2, out of order
    a.slurm_says(1, "RUNNING")  # running is not ended
    assert ready(ledger) == {}
    a.signal(2)  # a: 2/3
    assert ready(ledger) == {}
    c.signal(0)  # c: 1/1
    assert ready(ledger) == {"exp-c": c.trigger}
    b.signal(0)  # b: 2/2
    assert ready(ledger) == {"exp-b": b.trigger, "exp-c": c.trigger}
    a.signal(1)  # a: 3/3
    assert ready(ledger) == {"exp-a": a.trigger, "exp-b": b.trigger, "exp-c": c.trigger}
    assert {t.status for t in ledger.evaluation_tasks("exp-a")} == {"completed"}


def test_a_failed_task_counts_as_ended(drive: DriveLayout, ledger: Ledger) -> None:
    a = Evaluation(drive, ledger, "exp-a", [100, 200, 300], "601")
    for task in range(3):
        a.submit(task)
    a.signal(0)
    a.slurm_says(1, "FAILED")  # killed before it could write any signal
    assert ready(ledger) == {}
    tasks = ledger.evaluation_tasks("exp-a")
    assert [t.status for t in tasks] == ["completed", "failed", "queued"]
    assert "601_1 ended FAILED" in (tasks[1].error_message or "")
    a.signal(2, ok=False)  # the worker's own .eval_failed
    assert ready(ledger) == {"exp-a": a.trigger}


def test_a_task_that_completed_without_its_signal_ends_after_the_grace(
        drive: DriveLayout, ledger: Ledger) -> None:
    a = Evaluation(drive, ledger, "exp-a", [100, 200], "701")
    a.submit(0)
    a.submit(1)
    a.signal(0)
    a.slurm_says(1, "COMPLETED", ended_ago_s=5)  # its signal may still be on its way
    assert ready(ledger) == {}
    a.slurm_says(1, "COMPLETED", ended_ago_s=120)  # past the grace: failed, ended
    assert [t.status for t in ledger.evaluation_tasks("exp-a")] == ["completed", "failed"]
    assert ready(ledger) == {"exp-a": a.trigger}


def test_a_joined_evaluation_is_not_returned_again(drive: DriveLayout, ledger: Ledger) -> None:
    a = Evaluation(drive, ledger, "exp-a", [100, 200], "801")
    b = Evaluation(drive, ledger, "exp-b", [100], "802")
    a.submit(0)
    a.submit(1)
    b.submit(0)
    a.signal(0)
    a.signal(1)
    b.signal(0)
    assert set(ready(ledger)) == {"exp-a", "exp-b"}
    a.joined()
    assert ready(ledger) == {"exp-b": b.trigger}
    a.signal(1)  # the same signal seen again (a rescan, a restart): still joined once
    assert ready(ledger) == {"exp-b": b.trigger}
    b.joined()
    assert ready(ledger) == {}


def test_a_new_training_signal_opens_a_new_join(drive: DriveLayout, ledger: Ledger) -> None:
    """The join is per trigger: a retrained experiment's new evaluation waits for its own
    tasks, whatever the old evaluation's tasks did."""
    a = Evaluation(drive, ledger, "exp-a", [100, 200], "901")
    a.submit(0)
    a.submit(1)
    a.signal(0)
    a.signal(1)
    a.joined()
    old = a.trigger
    a.array_id = "902"
    a.train()
    assert a.trigger != old
    a.submit(0)
    a.submit(1)
    assert ready(ledger) == {}
    a.signal(0)
    assert ready(ledger) == {}
    a.signal(1)
    assert ready(ledger) == {"exp-a": a.trigger}


def _experiment_signal(e: Evaluation, job_id: str, checkpoints: list[str] | None,
                       ok: bool = True) -> int:
    """An experiment-level ``.eval_complete`` (or ``.eval_failed``): how many tasks it answers."""
    common = dict(timestamp=datetime.now(UTC), experiment=e.name, job_id=job_id,
                  checkpoints_evaluated=checkpoints)
    sig: EvalComplete = EvalComplete(status="complete", **common) if ok else \
        EvalFailed(status="failed", error_message="hand run broke", **common)
    path = publish(e.drive, sig, e.drive.experiment(e.name).eval_dir / sig.filename)
    with e.ledger.write() as conn:
        return apply_eval_signal(conn, read_signal(path, e.drive))


@pytest.mark.parametrize("ok", [True, False], ids=["complete", "failed"])
def test_a_hand_run_answers_no_task_of_a_live_evaluation(drive: DriveLayout, ledger: Ledger,
                                                         ok: bool) -> None:
    """Reproduced: `baton evaluate` by hand on one checkpoint of a live 3-task array wrote
    the experiment-level signal, which marked all three tasks, fired the join with one
    checkpoint of three, and nothing joined when the real tasks ended. A signal answers
    only the tasks it names: a job outside Slurm (job id 0) names none of them."""
    a = Evaluation(drive, ledger, "exp-a", [100, 200, 300], "701")
    for task in range(3):
        a.submit(task)
    assert _experiment_signal(a, "0", [a.checkpoints[1]], ok) == 0
    assert {t.status for t in ledger.evaluation_tasks("exp-a")} == {"queued"}
    assert ready(ledger) == {}
    for task in range(3):
        a.signal(task)
    assert ready(ledger) == {"exp-a": a.trigger}


def test_an_experiment_signal_answers_the_checkpoints_it_lists(
        drive: DriveLayout, ledger: Ledger) -> None:
    """The array's own experiment-level signal answers the checkpoints it lists (every
    task when it lists none), never the others."""
    a = Evaluation(drive, ledger, "exp-a", [100, 200, 300], "801")
    for task in range(3):
        a.submit(task)
    assert _experiment_signal(a, "801", [a.checkpoints[2]]) == 1
    assert [t.status for t in sorted(ledger.evaluation_tasks("exp-a"),
                                     key=lambda t: t.checkpoint_path)] == \
        ["queued", "queued", "completed"]
    assert ready(ledger) == {}
    assert _experiment_signal(a, "801", a.checkpoints[:2]) == 2
    assert ready(ledger) == {"exp-a": a.trigger}
