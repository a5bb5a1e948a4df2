"""The evaluation worker harness: streaming Parquet in the spec's layout, parallel
datasets, appending checkpoints, schema checks, keeping what succeeded, MLflow optional."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from baton.config import Config
from baton.evaluate.harness import evaluate
from baton.evaluate.metric_schema import WRITTEN_METRIC_SCHEMA
from baton.signals import read_signal


@pytest.fixture
def ckpt(config: Config) -> Path:
    path = config.drive.experiment("exp1").checkpoint(100)
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    return path


def eval_config(tmp_path: Path, **options: object) -> Path:
    path = tmp_path / "eval.yaml"
    evaluator = options.pop("evaluator", "tests.evaluate.evaluators:Counting")
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
        assert pq.read_schema(f).equals(WRITTEN_METRIC_SCHEMA)
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
                          eval_config(tmp_path, evaluator="tests.evaluate.evaluators:NotANumber"))
    assert not ok
    assert "not a finite number" in read_signal(signal, config.drive).signal.error_message
    assert not list(config.drive.experiment("exp1").metrics_dir.rglob("*.parquet"))


def test_every_new_metric_name_is_checked(config: Config, ckpt: Path, tmp_path: Path) -> None:
    # names already seen are not checked again (benchmark 5): a new one still is
    ok, signal = evaluate(config, "exp1", str(ckpt), eval_config(
        tmp_path, evaluator="tests.evaluate.evaluators:BadMetricName"))
    assert not ok
    assert "metric name '../escape' is not allowed" in read_signal(
        signal, config.drive).signal.error_message
    assert not list(config.drive.experiment("exp1").metrics_dir.rglob("*.parquet"))


def _max_concurrent(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same time
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("workers", [None, 4])
def test_datasets_run_in_parallel(config: Config, ckpt: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, workers: int | None) -> None:
    """4 datasets on a 2-CPU job: two worker processes at once, never more (not even when
    eval.yaml asks for 4 workers), each with one BLAS thread."""
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    record = tmp_path / "record"
    record.mkdir()
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(json.dumps({"evaluator": "tests.evaluate.evaluators:Recording",
                               "options": {"record_dir": str(record), "rows": 10},
                               **({"workers": workers} if workers else {})}))
    ok, _ = evaluate(config, "exp1", str(ckpt), cfg)
    assert ok
    runs = {p.stem: json.loads(p.read_text()) for p in record.glob("*.json")}
    assert set(runs) == {"alpha", "beta", "gamma", "delta"}
    assert len({r["pid"] for r in runs.values()}) >= 2
    assert os.getpid() not in {r["pid"] for r in runs.values()}
    peak = _max_concurrent([(r["start"], r["end"]) for r in runs.values()])
    assert peak == 2, runs
    assert all(r["blas"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
               for r in runs.values()), runs
    assert "OMP_NUM_THREADS" not in os.environ  # set for the workers only


def test_blas_threads_the_user_chose_are_kept(config: Config, ckpt: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    record = tmp_path / "record"
    record.mkdir()
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(json.dumps({"evaluator": "tests.evaluate.evaluators:Recording",
                               "options": {"record_dir": str(record), "rows": 1,
                                           "meet_seconds": 0, "hold_seconds": 0}}))
    assert evaluate(config, "exp1", str(ckpt), cfg)[0]
    blas = [json.loads(p.read_text())["blas"] for p in record.glob("*.json")]
    assert blas and all(b == {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}
                        for b in blas)


def test_example_trainer_limits_blas_threads_before_numpy() -> None:
    code = ("import os, sys; import baton.example.model; "
            "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])")
    env = {k: v for k, v in os.environ.items() if k not in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["1", "1"]
    code = ("import sys; import baton.example; assert 'numpy' not in sys.modules; "
            "import baton.example.model; assert 'numpy' in sys.modules")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    out = subprocess.run([sys.executable, "-c", "import os, baton.example; "
                          "print(os.environ['OPENBLAS_NUM_THREADS'])"],
                         env={**env, "OPENBLAS_NUM_THREADS": "4"}, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "4"  # the user's choice stands


def test_a_dying_worker_is_named_in_eval_failed(config: Config, ckpt: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that exits abruptly (os._exit, OOM killer) does not take the evaluation
    down: the dataset it ran is named as failed, its half-written files are gone, the
    others are kept."""
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    ok, signal = evaluate(config, "exp1", str(ckpt), eval_config(
        tmp_path, evaluator="tests.evaluate.evaluators:Dying", dies="beta", rows=4000,
        batch_rows=500, detail=True))
    assert not ok and signal.name == ".eval_failed"
    sig = read_signal(signal, config.drive).signal
    assert [f.dataset for f in sig.failures] == ["beta"]
    assert "worker process evaluating it died" in sig.failures[0].error
    assert sorted(sig.datasets_evaluated) == ["alpha", "gamma"]
    exp = config.drive.experiment("exp1")
    assert sorted(p.name for p in exp.metrics_dir.iterdir()) == ["dataset=alpha",
                                                                 "dataset=gamma"]
    assert not list(exp.eval_dir.rglob("*.tmp"))
    assert not (exp.predictions_dir / "beta.parquet").exists()
    for ds in ("alpha", "gamma"):
        f = exp.metrics_dir / f"dataset={ds}" / "metric=accuracy" / "part-checkpoint-100-0.parquet"
        assert pq.read_metadata(f).num_rows == 4000


@pytest.mark.parametrize("case", ["bad evaluator path", "evaluator fails to construct",
                                  "bad eval.yaml", "missing eval.yaml", "missing checkpoint"])
def test_failure_before_any_dataset_writes_eval_failed(config: Config, ckpt: Path,
                                                       tmp_path: Path, case: str) -> None:
    """The spec: a critical failure writes .eval_failed. Without it the pipeline would
    wait for a signal that never comes. The command exits non-zero."""
    checkpoint, cfg = str(ckpt), eval_config(tmp_path)
    expected = {"bad evaluator path": "cannot import evaluator 'tests.evaluate.evaluators:Nope'",
                "evaluator fails to construct": "RuntimeError: no GPU here",
                "bad eval.yaml": "batch_rows",
                "missing eval.yaml": "no such file",
                "missing checkpoint": "does not exist"}[case]
    if case == "bad evaluator path":
        cfg = eval_config(tmp_path, evaluator="tests.evaluate.evaluators:Nope")
    elif case == "evaluator fails to construct":
        cfg = eval_config(tmp_path, evaluator="tests.evaluate.evaluators:FailsToConstruct")
    elif case == "bad eval.yaml":
        cfg.write_text("evaluator: tests.evaluate.evaluators:Counting\nbatch_rows: -1\n")
    elif case == "missing eval.yaml":
        cfg = tmp_path / "no-such-eval.yaml"
    else:
        checkpoint = str(config.drive.experiment("exp1").checkpoint(999))
    env = {**os.environ, "SHARED_DRIVE": str(config.shared_drive),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": "", "SLURM_JOB_ID": "77",
           "BATON_STAGE": "evaluation"}  # the pipeline's job
    for var in ("BATON_SIGNAL_DIR", "MLFLOW_TRACKING_URI", "SLURM_ARRAY_JOB_ID",
                "SLURM_ARRAY_TASK_ID"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "baton", "evaluate", "--experiment", "exp1",
                           "--checkpoint", checkpoint, "--config", str(cfg)], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    signal = config.drive.experiment("exp1").eval_dir / ".eval_failed"
    assert f"FAILED: {signal}" in proc.stdout
    sig = read_signal(signal, config.drive).signal
    assert sig.status == "failed" and sig.job_id == "77" and sig.datasets_evaluated == []
    assert "could not start" in sig.error_message and expected in sig.error_message
    assert sig.failures and expected in sig.failures[0].error
    assert sig.checkpoints_evaluated == [str(config.drive.inside(checkpoint))]
    assert not (config.drive.experiment("exp1").metrics_dir).exists()


def test_reevaluating_a_checkpoint_replaces_its_rows(config: Config, ckpt: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A resubmission evaluates the same checkpoint under a new job id: its rows replace
    the first job's instead of counting twice; other checkpoints are untouched."""
    import duckdb

    exp = config.drive.experiment("exp1")
    cfg = eval_config(tmp_path, rows=50, detail=True)
    other = exp.checkpoint(1000)  # checkpoint-1000 starts with "checkpoint-100"
    other.mkdir()
    monkeypatch.setenv("BATON_STAGE", "evaluation")  # the pipeline's jobs
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    assert evaluate(config, "exp1", str(other), cfg)[0]

    def counts() -> tuple[int, int]:
        con = duckdb.connect()
        metrics = con.sql(f"SELECT count(*) FROM read_parquet('{exp.metrics_dir}/*/*/*.parquet')"
                          " WHERE checkpoint = 'checkpoint-100'").fetchall()[0][0]
        preds = con.sql(f"SELECT count(*) FROM read_parquet('{exp.predictions_dir}/*/*.parquet')"
                        " WHERE checkpoint = 'checkpoint-100'").fetchall()[0][0]
        return metrics, preds

    monkeypatch.setenv("SLURM_JOB_ID", "1")
    assert evaluate(config, "exp1", str(ckpt), cfg)[0]
    first = counts()
    assert first == (150, 150)
    monkeypatch.setenv("SLURM_JOB_ID", "2")
    assert evaluate(config, "exp1", str(ckpt), cfg)[0]
    assert counts() == first
    names = sorted(p.name for p in exp.metrics_dir.rglob("*.parquet"))
    assert names == sorted(["part-checkpoint-100-2.parquet", "part-checkpoint-1000-5.parquet"]
                           * 3)
    assert sorted(p.name for p in exp.predictions_dir.rglob("*.parquet")
                  if p.is_file()) == names


def test_install_replaces_without_a_gap(tmp_path: Path) -> None:
    """The new file takes an old one's place by rename: at no moment are there zero or
    two files of the checkpoint (a rename is atomic)."""
    from baton.evaluate.writer import install

    folder = tmp_path / "metric=accuracy"
    folder.mkdir()
    for name in ("part-c-1.parquet", "part-c-3.parquet", "part-c-9-4.parquet",
                 "part-c-9-4-extra.parquet"):
        (folder / name).write_text(name)
    tmp = folder / ".part-c-7.parquet.tmp"
    tmp.write_text("new")
    install(tmp, folder / "part-c-7.parquet", "c")
    assert sorted(p.name for p in folder.iterdir()) == [
        "part-c-7.parquet", "part-c-9-4-extra.parquet", "part-c-9-4.parquet"]
    assert (folder / "part-c-7.parquet").read_text() == "new"


def test_unknown_row_keys_are_rejected(config: Config, ckpt: Path, tmp_path: Path) -> None:
    ok, signal = evaluate(config, "exp1", str(ckpt),
                          eval_config(tmp_path, evaluator="tests.evaluate.evaluators:Typo"))
    assert not ok
    sig = read_signal(signal, config.drive).signal
    assert {f.dataset for f in sig.failures} == {"alpha", "beta", "gamma"}
    assert "dataset alpha: row has unknown key(s) 'item_gruop'" in sig.error_message
    assert not list(config.drive.experiment("exp1").metrics_dir.rglob("*.parquet"))


def test_a_partition_with_another_schema_is_not_appended_to(config: Config, ckpt: Path,
                                                            tmp_path: Path) -> None:
    import pyarrow as pa

    folder = config.drive.experiment("exp1").metrics_dir / "dataset=beta" / "metric=accuracy"
    folder.mkdir(parents=True)
    old = folder / "part-checkpoint-50-9.parquet"
    pq.write_table(pa.table({"experiment": ["exp1"], "checkpoint": ["checkpoint-50"],
                             "dataset": ["beta"], "value": ["0.5"]}), old)
    ok, signal = evaluate(config, "exp1", str(ckpt), eval_config(tmp_path))
    assert not ok
    sig = read_signal(signal, config.drive).signal
    assert [f.dataset for f in sig.failures] == ["beta"]
    error = sig.failures[0].error
    assert "part-checkpoint-50-9.parquet has another schema" in error
    assert "column 'value' is string, expected double" in error
    assert sorted(p.name for p in folder.iterdir()) == [old.name]  # nothing added
    assert sorted(sig.datasets_evaluated) == ["alpha", "gamma"]


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
