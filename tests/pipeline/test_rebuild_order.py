"""``baton db rebuild`` replays a job's own signal after the job, however fast it ran: an
array task's signal names its own job id (``SLURM_JOB_ID``: the task's raw id, not
``123_1``), and Slurm's submission time is whole seconds while the signal's is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from baton.ledger.rebuild import KeptJob
from baton.pipeline.recovery import _order
from baton.signals import EvalComplete, SignalFile
from baton.slurm.states import JobStatus

SUBMITTED = datetime(2026, 12, 6, 23, 35, 10, tzinfo=UTC)


def test_an_array_tasks_signal_comes_after_its_job() -> None:
    statuses = tuple(JobStatus(job_id=f"7_{i}", state="COMPLETED", raw_job_id=str(7 + i),
                               array_job_id="7", array_task_id=i, submitted_at=SUBMITTED)
                     for i in range(2))
    job = KeptJob(stage="evaluation", tasks=(("re", "/d/a"), ("re", "/d/b")),
                  statuses=statuses, token="baton-x", attempt=1, script_path="s.sh",
                  stdout_paths=(None, None), stderr_paths=(None, None))
    signal = EvalComplete(timestamp=SUBMITTED + timedelta(milliseconds=600), experiment="re",
                          job_id="8", status="complete", checkpoints_evaluated=["/d/b"])
    sf = SignalFile(Path("/d/evaluation/re/tasks/b/.eval_complete"), signal, "0" * 64, 1, 0.0)
    key = _order([job])
    assert key(sf) > key(job)


def test_jobs_of_one_second_replay_in_the_order_slurm_numbered_them() -> None:
    """Accounting's submission times are whole seconds: a retrain's evaluation submitted
    in the second of the earlier generation's analysis must not be replayed before it
    (seen in CI: the analysis was then checked against the later generation's trigger).
    Slurm numbers jobs in the order it took them."""

    def job(job_id: str, stage: str) -> KeptJob:
        status = JobStatus(job_id=job_id, state="COMPLETED", submitted_at=SUBMITTED)
        return KeptJob(stage=stage, tasks=(("re", ""),), statuses=(status,), token="baton-x",
                       attempt=1, script_path=f"{job_id}.sh", stdout_paths=(None,),
                       stderr_paths=(None,))

    jobs = [job("10", "evaluation"), job("9", "analysis"), job("11", "evaluation")]
    assert [j.statuses[0].job_id for j in sorted(jobs, key=_order(jobs))] == ["9", "10", "11"]
