"""`baton db rebuild` writes a job only when it is the pipeline's: the submission keys of
its tasks, derived from what the replay holds when it was submitted, give the token it
carried as its comment. A job submitted by hand for the same task (another token) is
named as not rebuilt instead of taking the pipeline's key (or breaking the rebuild on
it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from baton.layout import DriveLayout
from baton.ledger import open_ledger
from baton.ledger.rebuild import KeptJob
from baton.pipeline.keys import evaluation_key
from baton.pipeline.submission import comment_token
from baton.signals import TrainingComplete, read_signal, write_signal
from baton.slurm.states import JobStatus

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def key_of(stage: str, experiment: str, checkpoint: str, trigger: str) -> str:
    assert stage == "evaluation"
    return evaluation_key(experiment, trigger, checkpoint)


def test_only_the_pipelines_jobs_are_rebuilt(drive: DriveLayout, ledger_url: str) -> None:
    exp = drive.experiment("e1")
    exp.final_dir.mkdir(parents=True)
    (exp.final_dir / "model.safetensors").write_bytes(b"\0" * 8)
    final = str(exp.final_dir)
    sf = read_signal(write_signal(exp.training_signal, TrainingComplete(
        timestamp=T0, experiment="e1", checkpoint_path=final, hostname="gpu01",
        user="tester")), drive)

    def job(job_id: str, token: str, minutes: int) -> KeptJob:
        status = JobStatus(job_id=job_id, state="COMPLETED",
                           submitted_at=T0 + timedelta(minutes=minutes),
                           ended_at=T0 + timedelta(minutes=minutes + 1), exit_code=0)
        return KeptJob(stage="evaluation", tasks=(("e1", final),), statuses=(status,),
                       token=token, attempt=1, script_path=f"/scripts/{job_id}.sh",
                       stdout_paths=(None,), stderr_paths=(None,))

    pipeline_token = comment_token([evaluation_key("e1", sf.idempotency_key, final)])
    hand = job("7", comment_token(["evaluation:e1:attempt-1"]), 1)
    ledger = open_ledger(ledger_url, init=True)
    try:
        done = ledger.rebuild([sf, hand, job("8", pipeline_token, 2)], key_of,
                              comment_token, "sbatch")
        assert (done.signals, done.jobs, done.evaluations) == (1, 1, 1)
        [orphan] = done.orphans
        assert orphan.startswith("evaluation job 7 (/scripts/7.sh): its comment baton-")
        assert "not the pipeline's" in orphan
        [row] = ledger.jobs()
        assert (row.job_id, row.submission_key, row.state, row.ended_at) == (
            "8", evaluation_key("e1", sf.idempotency_key, final), "COMPLETED",
            T0 + timedelta(minutes=3))
        assert [(t.slurm_job_id, t.trigger_key) for t in ledger.evaluation_tasks("e1")] == [
            ("8", sf.idempotency_key)]
    finally:
        ledger.close()
