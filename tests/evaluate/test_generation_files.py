"""A retrained experiment's evaluation writes its generation (``BATON_GENERATION``, exported
by the rendered Slurm script) into its Parquet, as a column and in the file names: it
never replaces an earlier generation's files, even for a checkpoint of the same name,
and a resubmission within a generation replaces that generation's files only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baton.config import Config
from baton.evaluate.harness import evaluate
from baton.evaluate.metric_schema import METRIC_SCHEMA
from baton.signals import read_signal
from baton.slurm.render import render_job
from tests.evaluate.test_evaluate import ckpt, eval_config  # noqa: F401 (fixture)


def _rows(folder: Path, where: str = "true") -> list[tuple]:
    return duckdb.sql(
        f"SELECT generation, checkpoint, count(*) FROM read_parquet('{folder}/**/*.parquet', "
        f"union_by_name = true) WHERE {where} GROUP BY ALL ORDER BY ALL").fetchall()


def test_a_retrain_keeps_the_earlier_generation(config: Config, ckpt: Path,  # noqa: F811
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    exp = config.drive.experiment("exp1")
    cfg = eval_config(tmp_path, rows=50, detail=True)
    monkeypatch.delenv("BATON_GENERATION", raising=False)
    monkeypatch.setenv("BATON_STAGE", "evaluation")  # the pipeline's jobs
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    assert evaluate(config, "exp1", str(ckpt), cfg)[0]  # no generation said: the first
    monkeypatch.setenv("BATON_GENERATION", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "2")
    assert evaluate(config, "exp1", str(ckpt), cfg)[0]  # retrained: same checkpoint name
    both = [(1, "checkpoint-100", 150), (2, "checkpoint-100", 150)]
    assert _rows(exp.metrics_dir) == both
    assert _rows(exp.predictions_dir) == both
    names = sorted(p.name for p in (exp.metrics_dir / "dataset=alpha").rglob("*.parquet"))
    assert names == ["part-checkpoint-100-1.parquet", "part-checkpoint-100-2-g2.parquet"]
    # a resubmission of generation 2 replaces generation 2's rows, not generation 1's
    monkeypatch.setenv("SLURM_JOB_ID", "3")
    assert evaluate(config, "exp1", str(ckpt), cfg)[0]
    assert _rows(exp.metrics_dir) == both
    names = sorted(p.name for p in (exp.metrics_dir / "dataset=alpha").rglob("*.parquet"))
    assert names == ["part-checkpoint-100-1.parquet", "part-checkpoint-100-3-g2.parquet"]
    # and a resubmission of generation 1 (a repair finishing late) leaves generation 2 alone
    monkeypatch.setenv("BATON_GENERATION", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "4")
    assert evaluate(config, "exp1", str(ckpt), cfg)[0]
    assert _rows(exp.metrics_dir) == both
    assert sorted(p.name for p in (exp.metrics_dir / "dataset=alpha").rglob(
        "*.parquet")) == ["part-checkpoint-100-3-g2.parquet", "part-checkpoint-100-4.parquet"]


def test_files_from_before_generations_read_as_the_first(config: Config,
                                                         ckpt: Path,  # noqa: F811
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """A lab's history has no generation column: a new generation is written beside it
    (its folder's schema check lets the column be missing) and it reads as generation 1."""
    exp = config.drive.experiment("exp1")
    folder = exp.metrics_dir / "dataset=alpha" / "metric=accuracy"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"experiment": ["exp1"], "checkpoint": ["checkpoint-100"],
                             "dataset": ["alpha"], "item_group": [""], "form": [""],
                             "value": [0.25], "timestamp": pa.array(
                                 [None], METRIC_SCHEMA.field("timestamp").type)},
                            schema=METRIC_SCHEMA), folder / "part-checkpoint-100-7.parquet")
    monkeypatch.setenv("BATON_GENERATION", "2")
    monkeypatch.setenv("BATON_STAGE", "evaluation")  # the pipeline's job
    monkeypatch.setenv("SLURM_JOB_ID", "8")
    ok, signal = evaluate(config, "exp1", str(ckpt), eval_config(tmp_path, rows=10))
    assert ok, read_signal(signal, config.drive).signal
    assert (folder / "part-checkpoint-100-7.parquet").is_file()
    assert _rows(folder) == [(2, "checkpoint-100", 10), (None, "checkpoint-100", 1)]


def test_a_bad_generation_is_a_clear_eval_failed(config: Config, ckpt: Path,  # noqa: F811
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_GENERATION", "two")
    ok, signal = evaluate(config, "exp1", str(ckpt), eval_config(tmp_path, rows=10))
    assert not ok and signal.name == ".eval_failed"
    message = read_signal(signal, config.drive).signal.error_message
    assert "BATON_GENERATION 'two' is not a generation (1, 2, ...)" in message
    assert not config.drive.experiment("exp1").metrics_dir.exists()


@pytest.mark.parametrize("tasks", [1, 2], ids=["one job", "array"])
def test_the_rendered_script_passes_the_generation(config: Config, tasks: int) -> None:
    exp = config.drive.experiment("exp1")
    items = []
    for step in range(tasks):
        path = exp.checkpoint(100 * (step + 1))
        path.mkdir(parents=True)
        items.append(("exp1", str(path)))
    job = render_job(config, "evaluation", items, generations={"exp1": 3})
    for task in range(tasks):
        proc = subprocess.run(["bash", "-c", job.script.split("export BATON_STAGE")[0] +
                               'printf %s "$BATON_GENERATION"'], capture_output=True,
                              text=True, env={"SLURM_ARRAY_TASK_ID": str(task)}, check=True)
        assert proc.stdout == "3"
