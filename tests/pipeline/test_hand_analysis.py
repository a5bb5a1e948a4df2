"""The same class of bug as a hand evaluation (issue 14, point 2), for the analysis: a
``baton analyze`` by hand (job ``0``) wrote the experiment's ``.analysis_complete``,
which answered the analysis Slurm was still running: it was recorded as completed with
the hand run's report, and the real job's signal came too late for its join. A job-0
signal answers no analysis that Slurm runs; the real job's signal still does."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from tests.ledger.test_window import KINDS, Pipeline


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", init=True)


def analysed_by(p: Pipeline, exp: str, job_id: str, report: Path) -> None:
    from datetime import UTC, datetime

    from baton.inbox import publish
    from baton.signals import AnalysisComplete

    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html></html>")
    publish(p.drive, AnalysisComplete(timestamp=datetime.now(UTC), experiment=exp,
                                      job_id=job_id, status="complete",
                                      report_path=str(report)))
    p.scanner.tick(KINDS)


def test_a_hand_analysis_answers_no_analysis_slurm_runs(drive: DriveLayout,
                                                         ledger: Ledger) -> None:
    p = Pipeline(drive, ledger)
    p.train("exp1")
    p.evaluate("exp1", tasks=1)
    p.evaluated("exp1")
    p.analyse("exp1")  # submitted to Slurm, still running
    reports = drive.experiment("exp1").reports_dir
    analysed_by(p, "exp1", "0", reports / "by-hand.html")
    live = ledger.current_analysis("exp1")
    assert live is not None and live.status == "queued" and live.slurm_job_id
    assert ledger.analysis_outputs_of(live.id) == []
    assert [r.experiment_name for r in ledger.analyses_ready()] == []
    analysed_by(p, "exp1", live.slurm_job_id, reports / "report.html")
    done = ledger.current_analysis("exp1")
    assert done is not None and done.status == "completed"
    assert ledger.analysis_outputs_of(done.id) == [("report", str(reports / "report.html"))]
    assert [r.experiment_name for r in ledger.analyses_ready()] == ["exp1"]
