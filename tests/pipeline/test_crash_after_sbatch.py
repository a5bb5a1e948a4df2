"""A submitter killed right after sbatch loses nothing: the evaluation's task rows exist
from the claim on, so a fast job's signal answers its task before any retry; the retry
submits nothing again and the join fires once. A claim released before sbatch, or settled
as failed, leaves no task behind. Real local backend; the one faked call is the crash."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton.config import Config
from baton.errors import BatonError
from baton.inbox import publish
from baton.ledger import Ledger
from baton.ledger.stages import apply_eval_signal
from baton.ledger.training import apply_training_signal
from baton.pipeline import submission
from baton.pipeline.steps import submit_evaluations
from baton.pipeline.submission import reconcile_stale
from baton.signals import OUTSIDE_SLURM, EvalComplete, TrainingComplete, read_signal
from baton.slurm.backend import Submitted
from baton.slurm.local import LocalBackend


class Killed(BaseException):
    """The process dies here (SIGKILL): nothing after it runs."""


def train(cfg: Config, ledger: Ledger, name: str) -> str:
    final = cfg.drive.experiment(name).final_dir
    final.mkdir(parents=True, exist_ok=True)
    (final / "model.safetensors").write_bytes(b"\0" * 64)
    path = publish(cfg.drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment=name, hostname="gpu01", user="u",
        checkpoint_path=str(final)))
    assert ledger.accept_signal(read_signal(path, cfg.drive), apply_training_signal)
    return str(final)


def eval_signal(cfg: Config, ledger: Ledger, name: str, ckpt: str, job_id: str) -> None:
    """The evaluation's ``.eval_complete`` lands and the evaluation sensor applies it."""
    sig = EvalComplete(timestamp=datetime.now(UTC), experiment=name, job_id=job_id,
                       status="complete", datasets_evaluated=["toy"],
                       checkpoints_evaluated=[ckpt])
    folder = cfg.drive.experiment(name).eval_task_dir(ckpt)
    path = publish(cfg.drive, sig, folder / sig.filename)
    assert ledger.accept_signal(read_signal(path, cfg.drive), apply_eval_signal)


def dies_after_sbatch(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
                      ) -> list[Submitted]:
    real = backend.submit
    done: list[Submitted] = []

    def submit(spec: Any, script_path: Path) -> Submitted:
        done.append(real(spec, script_path))
        raise Killed

    monkeypatch.setattr(backend, "submit", submit)
    return done


def test_killed_after_sbatch_the_signal_still_answers_its_task(
        cfg: Config, ledger: Ledger, backend: LocalBackend,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = train(cfg, ledger, "fast")
    with monkeypatch.context() as m:
        done = dies_after_sbatch(backend, m)
        with pytest.raises(Killed):
            submit_evaluations(cfg, ledger, backend, ["fast"])
    [sub] = done
    [task] = ledger.evaluation_tasks("fast")
    assert (task.status, task.slurm_job_id) == ("queued", None)  # there from the claim on

    eval_signal(cfg, ledger, "fast", ckpt, OUTSIDE_SLURM)  # a hand run answers no pipeline task
    assert ledger.evaluation_tasks("fast")[0].status == "queued"
    eval_signal(cfg, ledger, "fast", ckpt, sub.job_id)  # the job ends before any retry
    assert ledger.evaluation_tasks("fast")[0].status == "completed"

    # the tracker settles the dead submitter's claim, then the request is asked again
    deadline = time.monotonic() + 60
    while not backend.status([sub.job_id])[sub.job_id].terminal:  # it runs "true"
        assert time.monotonic() < deadline, backend.status([sub.job_id])
        time.sleep(0.1)
    assert reconcile_stale(ledger, backend, older_than_s=0) == 1
    [job] = ledger.jobs(experiment="fast")
    assert (job.job_id, job.state) == (sub.job_id, "COMPLETED")
    # its task knows the job from the adoption on (a request that is not asked again, its
    # task in the ledger, still has it)
    assert ledger.evaluation_tasks("fast")[0].slurm_job_id == sub.job_id
    again = submit_evaluations(cfg, ledger, backend, ["fast"])["fast"]
    assert (again.job_ids, again.submitted_now) == ([sub.job_id], False)
    [task] = ledger.evaluation_tasks("fast")
    assert (task.status, task.slurm_job_id, task.slurm_job_row) == (
        "completed", sub.job_id, job.id)
    ledger.sync_stage_rows(missing_signal_grace_s=0)
    assert ledger.evaluations_ready() == [("fast", task.trigger_key)]
    assert ledger.record_fact(f"run:evaluation_metrics:{task.trigger_key}", "run_requested")
    assert ledger.evaluations_ready() == []  # the join, once
    assert len(list((backend.root / "submissions").glob("*.json"))) == 1


def test_a_claim_given_back_leaves_no_task(cfg: Config, ledger: Ledger,
                                           backend: LocalBackend,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = train(cfg, ledger, "slow")
    with monkeypatch.context() as m:
        def unwritable(*_: Any, **__: Any) -> Path:
            raise OSError("drive full")
        m.setattr(submission, "keep_for_audit", unwritable)
        with pytest.raises(BatonError, match="before sbatch ran"):
            submit_evaluations(cfg, ledger, backend, ["slow"])
    assert (ledger.jobs(experiment="slow"), ledger.evaluation_tasks("slow")) == ([], [])

    # a claim whose submitter died before sbatch: settled as failed, its task goes too
    with monkeypatch.context() as m:
        def killed(*_: Any, **__: Any) -> Path:
            raise Killed
        m.setattr(submission, "keep_for_audit", killed)
        m.setattr(submission, "_release", lambda *_: None)  # died: released nothing
        with pytest.raises(Killed):
            submit_evaluations(cfg, ledger, backend, ["slow"])
    assert [t.status for t in ledger.evaluation_tasks("slow")] == ["queued"]
    assert reconcile_stale(ledger, backend, older_than_s=0) == 1
    assert [j.state for j in ledger.jobs(experiment="slow")] == ["SUBMIT_FAILED"]
    assert ledger.evaluation_tasks("slow") == []
    ledger.sync_stage_rows(missing_signal_grace_s=0)
    assert ledger.evaluations_ready() == []  # no join on a task that never ran

    done = submit_evaluations(cfg, ledger, backend, ["slow"])["slow"]  # the retry
    assert done.submitted_now
    [task] = ledger.evaluation_tasks("slow")
    assert (task.status, task.slurm_job_id, task.checkpoint_path) == (
        "queued", done.job_ids[0], ckpt)
