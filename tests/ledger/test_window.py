"""Low-water marks: a sensor's idle tick reads the ledger from the lowest row still open,
and answers exactly what a query over the whole history answers. The pipeline's state
is built the way the sensors and submissions build it, step by step; after every step the
windowed queries (carrying their marks from tick to tick) must agree with full ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import evaluation_jobs, signals
from baton.ledger.window import Window
from baton.pipeline.scan import Scanner
from baton.signals import AnalysisComplete, EvalComplete, TrainingComplete

KINDS = ["training_complete", "eval_complete", "eval_failed", "analysis_complete"]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)


class Pipeline:
    def __init__(self, drive: DriveLayout, ledger: Ledger) -> None:
        self.drive, self.ledger = drive, ledger
        self.scanner = Scanner(drive, ledger, debounce_seconds=0)
        self.window = Window()
        self.jobs = 0

    def take(self) -> None:
        self.scanner.tick(KINDS)

    def train(self, exp: str) -> None:
        final = self.drive.experiment(exp).final_dir
        final.mkdir(parents=True, exist_ok=True)
        (final / "model.safetensors").write_bytes(b"x")
        publish(self.drive, TrainingComplete(timestamp=datetime.now(UTC), experiment=exp,
                                             hostname="h", user="u",
                                             checkpoint_path=str(final)))
        self.take()

    def trigger(self, exp: str) -> str:
        run = self.ledger.training_run(exp)
        assert run is not None
        return str(run.signal_key)

    def _job(self, stage: str, exp: str) -> tuple[int, str]:
        self.jobs += 1
        claim = self.ledger.claim_submission(f"{stage}:{exp}:{self.jobs}", stage=stage,
                                             experiment=exp, backend="local")
        job_id = str(1000 + self.jobs)
        self.ledger.mark_submitted(claim.row_id, job_id)
        return claim.row_id, job_id

    def evaluate(self, exp: str, tasks: int = 2) -> None:
        for i in range(tasks):
            row, job_id = self._job("evaluation", exp)
            self.ledger.record_evaluation_task(experiment=exp,
                                               trigger_key=self.trigger(exp),
                                               checkpoint=f"/ckpt/{exp}/{i}", slurm_row=row,
                                               job_id=job_id)
        self.ledger.record_fact(f"run:evaluation_job:{self.trigger(exp)}", "run")

    def evaluated(self, exp: str) -> None:
        publish(self.drive, EvalComplete(timestamp=datetime.now(UTC), experiment=exp,
                                         job_id="1", status="complete"))
        self.take()

    def analyse(self, exp: str) -> None:
        row, job_id = self._job("analysis", exp)
        self.ledger.record_analysis(experiment=exp, trigger_key=self.trigger(exp),
                                    slurm_row=row, job_id=job_id)

    def analysed(self, exp: str) -> None:
        publish(self.drive, AnalysisComplete(timestamp=datetime.now(UTC), experiment=exp,
                                             job_id="1", status="complete"))
        self.take()

    def tick(self) -> dict[str, list]:
        """One idle tick with the carried marks, checked against the whole history."""
        led, w = self.ledger, self.window
        got = {
            "models": [r.experiment_name for r in led.models_unreported(w)],
            "awaiting": [r.experiment_name for r in led.training_awaiting_evaluation(w)],
            "evaluations": led.evaluations_ready(w),
            "analyses": [r.experiment_name for r in led.analyses_ready(w)],
        }
        full = {
            "models": [r.experiment_name for r in led.models_unreported()],
            "awaiting": [r.experiment_name for r in led.training_awaiting_evaluation()],
            "evaluations": led.evaluations_ready(),
            "analyses": [r.experiment_name for r in led.analyses_ready()],
        }
        assert got == full
        self.window = Window(low=dict(w.next))
        return got


def test_windowed_ticks_answer_what_the_whole_history_answers(
        drive: DriveLayout, ledger: Ledger) -> None:
    p = Pipeline(drive, ledger)
    for exp in ("a", "b", "c"):
        p.train(exp)
    assert p.tick()["models"] == ["a", "b", "c"]
    for exp in ("a", "b", "c"):  # the sensor confirms each model event
        ledger.record_fact(f"model:{p.trigger(exp)}", "model_reported", exp)
    p.evaluate("a")
    p.evaluate("b")
    assert p.tick() == {"models": [], "awaiting": ["c"], "evaluations": [], "analyses": []}
    p.evaluated("b")
    assert p.tick()["evaluations"] == [("b", p.trigger("b"))]
    ledger.record_fact(f"run:evaluation_metrics:{p.trigger('b')}", "run")
    p.analyse("b")
    assert p.tick()["analyses"] == []
    p.analysed("b")
    assert p.tick()["analyses"] == ["b"]
    ledger.record_fact(f"run:analysis_report:{p.trigger('b')}", "run")
    p.evaluated("a")  # an experiment that waited a long time, below later rows
    assert p.tick()["evaluations"] == [("a", p.trigger("a"))]
    ledger.record_fact(f"run:evaluation_metrics:{p.trigger('a')}", "run")
    p.train("b")  # retrained: the run's row is reused, its signal is a new row
    assert p.tick()["models"] == ["b"]
    ledger.record_fact(f"model:{p.trigger('b')}", "model_reported", "b")
    p.evaluate("b", tasks=3)
    p.evaluate("c")
    p.tick()
    p.evaluated("c")
    p.evaluated("b")
    assert sorted(p.tick()["evaluations"]) == [("b", p.trigger("b")), ("c", p.trigger("c"))]


def test_marks_move_past_what_is_settled(drive: DriveLayout, ledger: Ledger) -> None:
    """Once everything is settled, an idle tick starts past every row the lab has."""
    p = Pipeline(drive, ledger)
    for exp in ("a", "b"):
        p.train(exp)
        ledger.record_fact(f"model:{p.trigger(exp)}", "model_reported", exp)
        p.evaluate(exp)
        p.evaluated(exp)
        ledger.record_fact(f"run:evaluation_metrics:{p.trigger(exp)}", "run")
    p.tick()
    p.tick()
    with ledger.read() as conn:
        tops = {"models": Window().top(conn, signals), "evaluations":
                Window().top(conn, evaluation_jobs)}
    assert p.window.low["models"] == p.window.low["awaiting_evaluation"] == tops["models"] + 1
    assert p.window.low["evaluations"] == tops["evaluations"] + 1
    # and a row that is still open holds its mark where it is
    p.train("c")
    p.tick()
    p.tick()
    row = ledger.training_run("c")
    with ledger.read() as conn:
        sig_row = conn.execute(select(signals.c.id).where(
            signals.c.idempotency_key == row.signal_key)).scalar()
    assert p.window.low["models"] == sig_row
