"""The evaluation worker harness: streaming Parquet in the spec's layout, parallel
datasets, appending checkpoints, schema checks, keeping what succeeded, MLflow optional."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from baton.config import Config
from baton.evaluate.harness import evaluate
from baton.evaluate.schema import METRIC_SCHEMA
from baton.signals import read_signal


@pytest.fixture
def ckpt(config: Config) -> Path:
    path = config.drive.experiment("exp1").checkpoint(100)
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    return path


def eval_config(tmp_path: Path, **options: object) -> Path:
    path = tmp_path / "eval.yaml"
    evaluator = options.pop("evaluator", "tests.evaluators:Counting")
    batch = options.pop("batch_rows", 5000)
    path.write_text(json.dumps({"evaluator": evaluator, "options": options,
                                "batch_rows": batch}))
    return path


def test_streams_rows_in_batches_in_the_spec_layout(config: Config, ckpt: Path,
                                                   tmp_path: Path) -> None:
    ok, signal = evaluate(config, "exp1", str(ckpt),
                          eval_config(tmp_path, rows=20_000, batch_rows=1000))
    assert ok and signal.name == ".eval_complete"
    exp = config.drive.experiment("exp1")
    for ds in ("alpha", "beta", "gamma"):
        f = exp.metrics_dir / f"dataset={ds}" / "metric=accuracy" / "part-checkpoint-100-0.parquet"
        meta = pq.read_metadata(f)
        assert meta.num_rows == 20_000
        assert meta.num_row_groups == 20  # written a batch at a time, never all at once
        assert pq.read_schema(f).equals(METRIC_SCHEMA)
    sig = read_signal(signal, config.drive).signal
    assert sig.datasets_evaluated == ["alpha", "beta", "gamma"]
    assert sig.metrics_summary == {f"{d}/accuracy": 0.5 for d in ("alpha", "beta", "gamma")}


def test_new_checkpoint_appends_without_rewriting(config: Config, ckpt: Path,
                                                 tmp_path: Path) -> None:
    cfg = eval_config(tmp_path)
    evaluate(config, "exp1", str(ckpt), cfg)
    first = config.drive.experiment("exp1").metrics_dir.glob("*/*/*.parquet")
    stamps = {p: p.stat().st_mtime_ns for p in first}
    later = config.drive.experiment("exp1").checkpoint(200)
    later.mkdir()
    (later / "model.safetensors").write_bytes(b"y")
    evaluate(config, "exp1", str(later), cfg)
    files = list(config.drive.experiment("exp1").metrics_dir.glob("*/*/*.parquet"))
    assert len(files) == 6
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_failure_keeps_what_succeeded(config: Config, ckpt: Path, tmp_path: Path) -> None:
    ok, signal = evaluate(config, "exp1", str(ckpt),
                          eval_config(tmp_path, rows=10_000, batch_rows=500, broken="beta"))
    assert not ok and signal.name == ".eval_failed"
    sig = read_signal(signal, config.drive).signal
    assert sig.status == "failed" and "beta" in sig.error_message
    assert "broke at row 5000" in sig.failures[0].error
    assert sig.datasets_evaluated == ["alpha", "gamma"]
    metrics = config.drive.experiment("exp1").metrics_dir
    assert sorted(p.name for p in metrics.iterdir()) == ["dataset=alpha", "dataset=gamma"]
    assert not list(metrics.rglob("*.tmp"))  # the broken dataset left nothing half-written


def test_values_are_checked_before_writing(config: Config, ckpt: Path, tmp_path: Path) -> None:
    ok, signal = evaluate(config, "exp1", str(ckpt),
                          eval_config(tmp_path, evaluator="tests.evaluators:NotANumber"))
    assert not ok
    assert "not a finite number" in read_signal(signal, config.drive).signal.error_message
    assert not list(config.drive.experiment("exp1").metrics_dir.rglob("*.parquet"))


def test_datasets_run_in_parallel(config: Config, ckpt: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    ok, _ = evaluate(config, "exp1", str(ckpt), eval_config(tmp_path, rows=10))
    meta = json.loads((config.drive.experiment("exp1").eval_dir / "eval_metadata.json")
                      .read_text())
    assert ok and set(meta["datasets"]) == {"alpha", "beta", "gamma"}


def test_example_evaluator_and_mlflow_down(config: Config, tmp_path: Path) -> None:
    """The built-in example end to end, with a tracking server that does not answer."""
    from baton.example.model import Hyper
    from baton.example.train import train_example

    down = config.model_copy(update={"mlflow": config.mlflow.model_copy(
        update={"tracking_uri": "http://127.0.0.1:9"})})
    signal = train_example(down, "tiny", Hyper(epochs=1, checkpoint_every=100))
    assert signal is not None  # MLflow down never fails the training
    final = config.drive.experiment("tiny").final_dir
    assert (final / "model.safetensors").is_file() and (final / "metadata.json").is_file()
    ok, path = evaluate(down, "tiny", str(final))
    sig = read_signal(path, config.drive).signal
    assert ok and set(sig.datasets_evaluated) == {"minimal_pairs", "heldout"}
    assert 0 <= sig.metrics_summary["minimal_pairs/accuracy"] <= 1
    assert sig.metrics_summary["heldout/perplexity"] > 1
    preds = config.drive.experiment("tiny").predictions_dir / "minimal_pairs.parquet"
    assert pq.read_metadata(next(preds.iterdir())).num_rows == 400


def test_hook_never_raises(config: Config, tmp_path: Path) -> None:
    from baton.hook import training_complete

    readonly = config.model_copy(update={"shared_drive": Path("/proc/baton-no-such-drive")})
    assert training_complete("exp1", "/proc/x", config=readonly) is None
