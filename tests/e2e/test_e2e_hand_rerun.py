"""Reproduced (issue 14, point 2): with a 3-task evaluation array live on the real Slurm,
``baton evaluate`` run by hand on one of its checkpoints announced itself to the pipeline:
its experiment-level ``.eval_complete`` answered every task, the join fired with one
checkpoint of three, the analysis was submitted at once, and its Parquet landed among
(and could replace) the pipeline's metrics. A hand run outside Slurm now keeps to a folder
of its own and says where; with ``--publish`` it writes to the experiment as job ``0``,
which answers no task Slurm runs. Either way the join waits for the real tasks, then
fires once with all three checkpoints and submits one analysis."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from baton.example.grammar import shipped_corpus
from baton.example.model import Hyper, TinyLM, build_vocab
from baton.signals import read_signal
from tests.e2e.harness import ROOT, Pipeline

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def hand_evaluate(p: Pipeline, exp: str, checkpoint: Path, eval_yaml: Path,
                  *extra: str) -> subprocess.CompletedProcess[str]:
    """``baton evaluate`` as a user types it on the login node: no Slurm variables."""
    env = {k: v for k, v in p.env.items()
           if not k.startswith("SLURM_") and k not in ("BATON_SIGNAL_DIR", "MLFLOW_TRACKING_URI")}
    return subprocess.run([sys.executable, "-m", "baton", "evaluate", "--experiment", exp,
                           "--checkpoint", str(checkpoint), "--config", str(eval_yaml), *extra],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def task_states(p: Pipeline, exp: str) -> dict[str, str]:
    return {Path(t.checkpoint_path).name: t.status for t in p.ledger.evaluation_tasks(exp)}


def materializations(p: Pipeline, asset: str, exp: str) -> list:
    from dagster import AssetKey, AssetRecordsFilter

    return p.instance().fetch_materializations(AssetRecordsFilter(
        asset_key=AssetKey(asset), asset_partitions=[exp]), limit=10).records


@pytest.mark.usefixtures("slurm")
def test_a_hand_run_does_not_answer_a_live_evaluation(tmp_path: Path) -> None:
    exp = f"hand-{secrets.token_hex(3)}"
    release = tmp_path / "release"
    p = Pipeline(tmp_path, "sbatch", {"FAKE_EVAL_HOLD": exp,
                                      "FAKE_EVAL_RELEASE": str(release)})
    layout = p.drive.experiment(exp)
    model = TinyLM.init(build_vocab(shipped_corpus()), Hyper(dim=4, hidden=8))
    steps = [layout.checkpoint(100), layout.checkpoint(200)]
    for folder in steps:
        model.save(folder)
    eval_yaml = tmp_path / "eval.yaml"
    eval_yaml.write_text("evaluator: example\ndatasets: [minimal_pairs]\n"
                         "options:\n  pairs_per_group: 2\n")
    p.start()
    try:
        p.train(exp, checkpoints=[str(s) for s in steps])
        p.wait_for("the 3-task array submitted and running", lambda: len(
            [t for t in p.ledger.evaluation_tasks(exp) if t.slurm_job_id]) == 3 and any(
            j.state == "RUNNING" for j in p.ledger.jobs(experiment=exp, stage="evaluation")))

        # by hand, as a user reruns one checkpoint: nothing reaches the pipeline
        hand = hand_evaluate(p, exp, steps[0], eval_yaml)
        assert hand.returncode == 0, hand.stdout + hand.stderr
        assert not layout.eval_complete_signal.exists(), hand.stdout
        assert not layout.metrics_dir.exists()  # the held tasks have written nothing yet
        assert not list((p.drive.inbox / "eval_complete").glob("*"))
        [line] = hand.stdout.splitlines()
        assert line.startswith("complete: results in ") and "not announced" in line, line
        results = Path(line.removeprefix("complete: results in ").split(" ", 1)[0])
        assert results.parent == layout.eval_dir / "hand", line
        assert list((results / "metrics").glob("dataset=minimal_pairs/metric=*/*.parquet"))
        assert json.loads((results / "eval_complete.json").read_text())["job_id"] == "0"

        # --publish: into the experiment's metrics, its signal as job 0, and it says so
        published = hand_evaluate(p, exp, steps[0], eval_yaml, "--publish")
        assert published.returncode == 0, published.stdout + published.stderr
        assert published.stdout.strip() == (
            f"complete: published as job 0 (outside Slurm): {layout.eval_complete_signal}")
        sig = read_signal(layout.eval_complete_signal, p.drive).signal
        assert sig.job_id == "0" and sig.checkpoints_evaluated == [str(steps[0])]
        assert [f.name for f in layout.metrics_dir.glob("dataset=minimal_pairs/*/*")] == [
            "part-checkpoint-100-0.parquet"]
        # the daemon records the hand run's signal and answers no task with it
        p.wait_for("the published hand run recorded", lambda: str(
            layout.eval_complete_signal) in p.ledger.known_signal_files("eval_complete"))
        assert set(task_states(p, exp).values()) <= {"queued", "running"}, task_states(p, exp)
        assert not materializations(p, "evaluation_metrics", exp)
        assert not p.ledger.jobs(experiment=exp, stage="analysis")

        release.touch()  # the real tasks end: the join fires once, with all three
        p.wait_for(f"analysis_report of {exp}",
                   lambda: p.materialized("analysis_report", exp), timeout=240)
    finally:
        release.touch()
        p.stop()
    assert task_states(p, exp) == {"checkpoint-100": "completed",
                                   "checkpoint-200": "completed", "final": "completed"}
    [metrics] = materializations(p, "evaluation_metrics", exp)
    meta = metrics.asset_materialization.metadata
    assert meta["tasks"].value == 3
    assert sorted(meta["checkpoints"].value) == ["checkpoint-100", "checkpoint-200", "final"]
    assert len(p.ledger.jobs(experiment=exp, stage="analysis")) == 1
    assert len(materializations(p, "analysis_job", exp)) == 1
