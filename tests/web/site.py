"""A ledger and a drive as the pipeline leaves them, filled through the code paths the
sensors and the submitters use (signals accepted and applied, claims submitted, Slurm's
word applied, supervisions claimed): one experiment complete with its report, one whose
evaluation failed (its reason in the ``.eval_failed``, its log on the drive), one still
evaluating, one the supervisor gave up on; a quarantined signal; a campaign; scripts'
status reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from baton.config import Config
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger
from baton.ledger.stages import apply_analysis_signal, apply_eval_signal
from baton.ledger.training import apply_training_signal
from baton.signals import AnalysisComplete, EvalComplete, EvalFailed, TrainingComplete, read_signal
from baton.slurm.states import JobStatus

CAMPAIGN = "sweep-lr"
FAILED_REASON = "dataset toy: out of cheese"
FAILED_LOG = "Traceback (most recent call last):\nCheeseError: out of cheese\n"


class Site:
    """The experiments of the test's ledger; job ids count up from 7000."""

    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.config, self.ledger = config, ledger
        self.drive = DriveLayout(config.shared_drive)
        self.next_job = 7000
        self.triggers: dict[str, str] = {}
        self.checkpoints: dict[str, list[str]] = {}
        self.broken_row = 0

    def train(self, name: str, steps: list[int], user: str = "ada") -> None:
        layout = self.drive.experiment(name)
        ckpts = []
        for step in steps:
            ckpt = layout.checkpoint(step)
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / "model.safetensors").write_bytes(b"\1" * 16)
            ckpts.append(str(ckpt))
        path = publish(self.drive, TrainingComplete(
            timestamp=datetime.now(UTC), experiment=name, hostname="gpu01", user=user,
            checkpoint_path=ckpts[0], checkpoints=ckpts[1:] or None, campaign=CAMPAIGN,
            mlflow_run_id="0123456789abcdef0123456789abcdef"))
        sf = read_signal(path, self.drive)
        assert self.ledger.accept_signal(sf, apply_training_signal)
        self.ledger.note_campaign(CAMPAIGN, None, str(path), self.config.campaigns)
        self.triggers[name], self.checkpoints[name] = sf.idempotency_key, ckpts

    def submit(self, name: str, stage: str, task: int = 0) -> tuple[int, str]:
        """A claim submitted to Slurm, with its logs where the template puts them."""
        job_id = str(self.next_job)
        self.next_job += 1
        claim = self.ledger.claim_submission(f"{stage}:{name}:{task}:{job_id}", stage=stage,
                                             experiment=name, backend="sbatch",
                                             campaign=CAMPAIGN, req_cpus=2, req_mem_mb=4096,
                                             req_time_s=3600)
        logs = self.drive.root / "logs" / stage
        logs.mkdir(parents=True, exist_ok=True)
        out, err = logs / f"{name}-{job_id}.out", logs / f"{name}-{job_id}.err"
        self.ledger.mark_submitted(claim.row_id, job_id, stdout_path=str(out),
                                   stderr_path=str(err))
        if stage == "evaluation":
            self.ledger.record_evaluation_task(
                experiment=name, trigger_key=self.triggers[name],
                checkpoint=self.checkpoints[name][task], slurm_row=claim.row_id,
                job_id=job_id)
        else:
            self.ledger.record_analysis(experiment=name, trigger_key=self.triggers[name],
                                        slurm_row=claim.row_id, job_id=job_id)
        return claim.row_id, job_id

    def repair(self, name: str, original_row: int) -> str:
        """The supervisor's resubmission of a failed evaluation task, as attempt 2."""
        job_id = str(self.next_job)
        self.next_job += 1
        claim = self.ledger.claim_submission(f"repair:{name}:{job_id}", stage="evaluation",
                                             experiment=name, backend="sbatch", attempt=2,
                                             parent_id=original_row)
        self.ledger.mark_submitted(claim.row_id, job_id)
        assert self.ledger.record_repair_task(stage="evaluation", original_row=original_row,
                                              slurm_row=claim.row_id, job_id=job_id, attempt=2)
        return job_id

    def slurm_says(self, job_id: str, state: str) -> None:
        ended = datetime.now(UTC)
        final = state not in ("PENDING", "RUNNING")
        self.ledger.apply_statuses({job_id: JobStatus(
            job_id=job_id, state=state, exit_code=(0 if state == "COMPLETED" else 1)
            if final else None, started_at=None if state == "PENDING"
            else ended - timedelta(seconds=30), ended_at=ended if final else None)})
        self.ledger.sync_stage_rows(missing_signal_grace_s=60)

    def evaluated(self, name: str, task: int, job_id: str, ok: bool = True) -> None:
        ckpt = self.checkpoints[name][task]
        folder = self.drive.experiment(name).eval_task_dir(ckpt)
        common = dict(timestamp=datetime.now(UTC), experiment=name, job_id=job_id,
                      checkpoints_evaluated=[ckpt])
        sig = (EvalComplete(status="complete", datasets_evaluated=["toy"], **common) if ok
               else EvalFailed(status="failed", error_message=FAILED_REASON, **common))
        path = publish(self.drive, sig, folder / sig.filename)
        with self.ledger.write() as conn:
            assert apply_eval_signal(conn, read_signal(path, self.drive)) == 1

    def analysed(self, name: str, job_id: str) -> Path:
        reports = self.drive.experiment(name).reports_dir
        (reports / "figures").mkdir(parents=True, exist_ok=True)
        figure = reports / "figures" / "loss.svg"
        figure.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
        report = reports / "report.html"
        report.write_text(f"<html><body><h1>Report of {name}</h1>"
                          '<img src="figures/loss.svg"></body></html>')
        sig = AnalysisComplete(timestamp=datetime.now(UTC), experiment=name, job_id=job_id,
                               status="complete", report_path=str(report),
                               outputs=[str(figure)])
        path = publish(self.drive, sig, reports / sig.filename)
        with self.ledger.write() as conn:
            assert apply_analysis_signal(conn, read_signal(path, self.drive))
        return report


def fill(config: Config, ledger: Ledger) -> Site:
    site = Site(config, ledger)
    site.train("lr-0.1-done", [100, 200])
    for task in (0, 1):
        _, job = site.submit("lr-0.1-done", "evaluation", task)
        site.evaluated("lr-0.1-done", task, job)
        site.slurm_says(job, "COMPLETED")
    _, job = site.submit("lr-0.1-done", "analysis")
    site.analysed("lr-0.1-done", job)
    site.slurm_says(job, "COMPLETED")

    site.train("lr-0.9-broken", [100], user="grace")
    row, job = site.submit("lr-0.9-broken", "evaluation")
    site.broken_row = row
    out = ledger.job(row)
    Path(out.stdout_path).write_text("loading checkpoint\nevaluating toy\n")
    Path(out.stderr_path).write_text(FAILED_LOG)
    site.evaluated("lr-0.9-broken", 0, job, ok=False)
    site.slurm_says(job, "FAILED")

    site.train("lr-0.3-busy", [100, 200, 300])
    _, job = site.submit("lr-0.3-busy", "evaluation", 0)
    site.evaluated("lr-0.3-busy", 0, job)
    site.slurm_says(job, "COMPLETED")
    _, job = site.submit("lr-0.3-busy", "evaluation", 1)
    site.slurm_says(job, "RUNNING")
    site.submit("lr-0.3-busy", "evaluation", 2)  # pending

    site.train("lr-0.5-oom", [100])
    row, job = site.submit("lr-0.5-oom", "evaluation")
    site.slurm_says(job, "OUT_OF_MEMORY")
    ledger.claim_supervision(f"job-{row}:oom", experiment="lr-0.5-oom", stage="evaluation",
                             job_row=row, job_id=job, attempt=3, reason="oom",
                             action="gave_up", note="3 attempts, memory at its cap 256G",
                             requested_by="supervisor", dispatch_status="none",
                             execution_status="open")

    ledger.record_signal("bad-signal", "training_complete",
                         str(site.drive.root / "models" / "x" / ".training_complete"),
                         "quarantined", reason="checkpoint_path /nowhere does not exist")
    ledger.update_campaign(CAMPAIGN, active=True, display_name="Learning-rate sweep",
                           notes="four rates", started_at=datetime.now(UTC) - timedelta(days=1),
                           expected_end=datetime.now(UTC) + timedelta(days=2))
    for i, (status, progress) in enumerate((("started", None), ("running", 40.0),
                                            ("running", 80.0))):
        ledger.add_status_event(dict(
            event_id=f"ev-{i}", project="nightly", job="ingest", status=status,
            progress=progress, message=f"step {i}", host="node01",
            reported_at=datetime.now(UTC) - timedelta(hours=3 - i), ingested_at=datetime.now(UTC)))
    return site
