"""``baton analyze`` by hand (outside Slurm), as ``baton evaluate``: its figures, tables,
report and would-be signal go to a folder of their own and one line says where; the
pipeline's report, its signal and the inbox stay as they were. ``--publish`` writes to
the experiment's analysis folders as job 0 and says so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from baton.config import Config
from baton.evaluate.harness import evaluate
from baton.signals import read_signal
from tests.evaluate.test_evaluate import eval_config
from tests.evaluate.test_hand_run import baton_by_hand


@pytest.fixture
def evaluated(config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    exp = config.drive.experiment("exp1")
    monkeypatch.setenv("SLURM_JOB_ID", "41")  # the pipeline's evaluation job
    monkeypatch.setenv("BATON_STAGE", "evaluation")
    for step in (100, 200):
        ckpt = exp.checkpoint(step)
        ckpt.mkdir(parents=True)
        assert evaluate(config, "exp1", str(ckpt), eval_config(tmp_path, rows=30))[0]
    return config


def analyze_cmd(config: Config, *extra: str, job: str | None = None,
                salloc: str | None = None) -> subprocess.CompletedProcess[str]:
    return baton_by_hand(config, "analyze", "--experiment", "exp1", *extra, job=job,
                         salloc=salloc)


def files(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for f in folders if f.exists()
            for p in sorted(f.rglob("*")) if p.is_file()}


def test_a_hand_analysis_keeps_to_its_own_folder(evaluated: Config) -> None:
    exp = evaluated.drive.experiment("exp1")
    pipeline = analyze_cmd(evaluated, job="42")
    assert pipeline.returncode == 0, pipeline.stderr
    assert pipeline.stdout.strip() == f"complete: {exp.analysis_signal}"
    before = files(exp.figures_dir, exp.tables_dir, exp.reports_dir, evaluated.drive.inbox)

    hand = analyze_cmd(evaluated)
    assert hand.returncode == 0, hand.stderr
    after = files(exp.figures_dir, exp.tables_dir, exp.reports_dir, evaluated.drive.inbox)
    hand_dir = f"{exp.reports_dir / 'hand'}/"
    assert {k: v for k, v in after.items() if not k.startswith(hand_dir)} == before
    [results] = (exp.reports_dir / "hand").iterdir()
    assert hand.stdout == (f"complete: results in {results} (not announced to the pipeline; "
                           "--publish to announce a hand run)\n")
    written = json.loads((results / "analysis_complete.json").read_text())
    assert (written["job_id"], written["status"]) == ("0", "complete")
    assert written["report_path"] == str(results / "report.html")
    assert (results / "report.html").is_file()
    assert (results / "tables" / "accuracy_by_group.csv").is_file()
    assert (results / "figures" / "accuracy_by_group.png").is_file()


def test_a_hand_analysis_inside_an_allocation_is_still_by_hand(evaluated: Config) -> None:
    """``SLURM_JOB_ID`` of a person's ``salloc`` does not make the run the pipeline's."""
    exp = evaluated.drive.experiment("exp1")
    hand = analyze_cmd(evaluated, salloc="4243")
    assert hand.returncode == 0, hand.stderr
    assert not exp.analysis_signal.exists()
    [results] = (exp.reports_dir / "hand").iterdir()
    assert hand.stdout.startswith(f"complete: results in {results} (not announced")
    assert json.loads((results / "analysis_complete.json").read_text())["job_id"] == "0"


def test_publish_announces_a_hand_analysis_as_job_0(evaluated: Config) -> None:
    exp = evaluated.drive.experiment("exp1")
    proc = analyze_cmd(evaluated, "--publish")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"complete: published as job 0 (outside Slurm): "
                           f"{exp.analysis_signal}\n")
    sig = read_signal(exp.analysis_signal, evaluated.drive).signal
    assert sig.job_id == "0" and sig.report_path == str(exp.reports_dir / "report.html")
    assert (exp.tables_dir / "accuracy_by_group.csv").is_file()
    assert not (exp.reports_dir / "hand").exists()


def test_analyze_output_chooses_the_folder(evaluated: Config, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    proc = analyze_cmd(evaluated, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"complete: results in {out} ")
    assert (out / "report.html").is_file() and (out / "analysis_complete.json").is_file()
    assert not evaluated.drive.experiment("exp1").reports_dir.exists()
