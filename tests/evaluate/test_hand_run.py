"""``baton evaluate`` by hand (outside Slurm) keeps to a folder of its own and says where:
no signal, no inbox marker, and its Parquet never lands among (or replaces) the
pipeline's metrics of the experiment. ``--publish`` announces it as job 0; ``--output``
chooses the folder. Inside Slurm nothing changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from baton.config import Config
from baton.inbox import publish
from baton.ledger import open_ledger
from baton.ledger.training import apply_training_signal
from baton.signals import TrainingComplete, read_signal
from tests.evaluate.test_evaluate import ckpt, eval_config  # noqa: F401 (fixture)


def baton_by_hand(config: Config, *args: str, job: str | None = None,
                  salloc: str | None = None) -> subprocess.CompletedProcess[str]:
    """``baton ARGS`` as a person runs it on the login node, on ``config``'s drive
    (``job``: as the pipeline's Slurm job ``job`` runs it, its script exporting
    ``BATON_STAGE``; ``salloc``: by hand inside a person's own allocation)."""
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": ""}
    for var in [v for v in env if v.startswith("SLURM_")] + [
            "BATON_SIGNAL_DIR", "BATON_STAGE", "MLFLOW_TRACKING_URI"]:
        env.pop(var, None)
    if job is not None:
        env.update(SLURM_JOB_ID=job, BATON_STAGE=args[0])
    if salloc is not None:
        env["SLURM_JOB_ID"] = salloc
    return subprocess.run([sys.executable, "-m", "baton", *args], env=env,
                          capture_output=True, text=True, check=False)


def run(config: Config, checkpoint: Path, cfg: Path, *extra: str, job: str | None = None,
        salloc: str | None = None) -> subprocess.CompletedProcess[str]:
    return baton_by_hand(config, "evaluate", "--experiment", "exp1", "--checkpoint",
                         str(checkpoint), "--config", str(cfg), *extra, job=job,
                         salloc=salloc)


def markers(config: Config) -> list[Path]:
    """The inbox markers that announce signals to the sensors."""
    return sorted(p for p in config.drive.inbox.rglob("*") if p.is_file())


def parts(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*.parquet"))}


def test_a_hand_run_keeps_to_its_own_folder(config: Config, ckpt: Path,  # noqa: F811
                                            tmp_path: Path) -> None:
    """Reproduced: a hand run wrote the experiment's .eval_complete and installed its
    Parquet over the pipeline's files of the same checkpoint."""
    exp = config.drive.experiment("exp1")
    cfg = eval_config(tmp_path, rows=10)
    pipeline = run(config, ckpt, cfg, job="77")  # the pipeline's Slurm job, as rendered
    assert pipeline.returncode == 0, pipeline.stderr
    assert pipeline.stdout.strip() == f"complete: {exp.eval_complete_signal}"
    before, signal = parts(exp.metrics_dir), exp.eval_complete_signal.read_bytes()
    announced = markers(config)

    hand = run(config, ckpt, cfg)
    assert hand.returncode == 0, hand.stderr
    assert parts(exp.metrics_dir) == before  # not replaced, nothing added
    assert exp.eval_complete_signal.read_bytes() == signal
    assert markers(config) == announced
    [results] = (exp.eval_dir / "hand").iterdir()
    assert hand.stdout == (f"complete: results in {results} (not announced to the pipeline; "
                           "--publish to announce a hand run)\n")
    assert sorted(parts(results / "metrics")) == [
        f"dataset={d}/metric=accuracy/part-checkpoint-100-0.parquet"
        for d in ("alpha", "beta", "gamma")]
    written = json.loads((results / "eval_complete.json").read_text())
    assert (written["job_id"], written["status"]) == ("0", "complete")
    assert json.loads((results / "eval_metadata.json").read_text())["job_id"] == "0"


def test_a_hand_run_inside_an_allocation_is_still_by_hand(config: Config, ckpt: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """A person's ``salloc`` sets ``SLURM_JOB_ID`` too: only the pipeline's own job script
    (which exports ``BATON_STAGE``) publishes. Before, a rerun inside an allocation wrote
    the experiment's signal under the allocation's job id, which answers the live tasks of
    its checkpoint."""
    exp = config.drive.experiment("exp1")
    hand = run(config, ckpt, eval_config(tmp_path, rows=10), salloc="4242")
    assert hand.returncode == 0, hand.stderr
    assert not exp.eval_complete_signal.exists()
    assert markers(config) == []
    [results] = (exp.eval_dir / "hand").iterdir()
    assert hand.stdout.startswith(f"complete: results in {results} (not announced")
    assert json.loads((results / "eval_complete.json").read_text())["job_id"] == "0"


def test_a_failed_hand_run_says_where_and_announces_nothing(config: Config, ckpt: Path,  # noqa: F811
                                                           tmp_path: Path) -> None:
    exp = config.drive.experiment("exp1")
    hand = run(config, ckpt, eval_config(tmp_path, rows=10, broken="beta"))
    assert hand.returncode == 1
    [results] = (exp.eval_dir / "hand").iterdir()
    assert hand.stdout.startswith(f"FAILED: results in {results} ")
    failed = json.loads((results / "eval_failed.json").read_text())
    assert failed["job_id"] == "0" and "beta" in failed["error_message"]
    assert not exp.eval_failed_signal.exists() and not exp.metrics_dir.exists()
    assert not markers(config)


def test_publish_announces_a_hand_run_as_job_0(config: Config, ckpt: Path,  # noqa: F811
                                               tmp_path: Path) -> None:
    exp = config.drive.experiment("exp1")
    proc = run(config, ckpt, eval_config(tmp_path, rows=10), "--publish")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"complete: published as job 0 (outside Slurm): "
                           f"{exp.eval_complete_signal}\n")
    assert read_signal(exp.eval_complete_signal, config.drive).signal.job_id == "0"
    assert "dataset=alpha/metric=accuracy/part-checkpoint-100-0.parquet" in parts(
        exp.metrics_dir)
    assert [p.parent.name for p in markers(config)] == ["eval_complete"]  # sensors hear it
    assert not (exp.eval_dir / "hand").exists()


def test_publish_answers_the_experiments_latest_generation(config: Config, ckpt: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """A retrained experiment (generation 2 in the ledger): a published hand run writes
    generation 2's rows, beside generation 1's, not over them as generation 1. Before,
    the hand run, which has no ``BATON_GENERATION``, always wrote generation 1."""
    ledger = open_ledger(config.ledger_url, init=True)
    start = datetime.now(UTC)
    for n in range(2):
        path = publish(config.drive, TrainingComplete(
            timestamp=start + timedelta(seconds=n), experiment="exp1", hostname="h",
            user="u", checkpoint_path=str(ckpt)))
        assert ledger.accept_signal(read_signal(path, config.drive), apply_training_signal)
    ledger.close()
    exp = config.drive.experiment("exp1")
    proc = run(config, ckpt, eval_config(tmp_path, rows=10), "--publish")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"complete: published as job 0 (outside Slurm), generation 2: "
                           f"{exp.eval_complete_signal}\n")
    assert sorted(parts(exp.metrics_dir)) == [
        f"dataset={d}/metric=accuracy/part-checkpoint-100-0-g2.parquet"
        for d in ("alpha", "beta", "gamma")]
    # or the one a person names
    proc = run(config, ckpt, eval_config(tmp_path, rows=10), "--publish", "--generation", "1")
    assert proc.returncode == 0, proc.stderr
    assert "dataset=alpha/metric=accuracy/part-checkpoint-100-0.parquet" in parts(
        exp.metrics_dir)


def test_output_chooses_the_folder(config: Config, ckpt: Path,  # noqa: F811
                                   tmp_path: Path) -> None:
    exp = config.drive.experiment("exp1")
    out = tmp_path / "mine" / "rerun"
    proc = run(config, ckpt, eval_config(tmp_path, rows=10), "--output", str(out), job="78")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"complete: results in {out} ")
    assert json.loads((out / "eval_complete.json").read_text())["job_id"] == "78"
    assert len(parts(out / "metrics")) == 3
    assert not exp.eval_dir.exists()


def test_publish_and_output_are_refused_together(config: Config, ckpt: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    proc = run(config, ckpt, eval_config(tmp_path), "--publish", "--output", str(tmp_path))
    assert proc.returncode == 2 and "not allowed with" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not config.drive.experiment("exp1").eval_dir.exists()
