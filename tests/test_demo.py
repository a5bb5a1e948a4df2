"""The README's first command, `baton demo`: it ends with the reports written, the Parquet,
the MLflow runs and the Dagster asset states; its UIs show the demo; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.browser import dom, screenshot

pytestmark = pytest.mark.slow
BATON = [sys.executable, "-m", "baton"]


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("BATON_CONFIG", "SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
                "DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    return env


def experiments(home: Path) -> list[str]:
    return sorted(p.parent.name for p in (home / "drive" / "models").glob("*/.training_complete"))


def test_demo_once(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = subprocess.run([*BATON, "demo", "--once", "--home", str(home), "--backend", "local",
                           "--timeout", "900"], env=demo_env(), capture_output=True, text=True,
                          timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    exps = experiments(home)
    assert len(exps) == 3
    for line in ("MLflow: http://127.0.0.1:", "Dagster UI: http://127.0.0.1:", "report "):
        assert line in proc.stdout
    drive = home / "drive"
    for exp in exps:
        assert (drive / "analysis" / "reports" / exp / "report.html").stat().st_size > 10_000
        files = list((drive / "evaluation" / exp / "metrics").glob("dataset=*/metric=*/*.parquet"))
        assert {f.parent.parent.name for f in files} == {"dataset=minimal_pairs",
                                                         "dataset=heldout"}
        assert sum(pq.read_metadata(f).num_rows for f in files) > 1000
    # MLflow: a training run per experiment, its evaluations and analysis nested under it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'state' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              max_results=500)
    by_stage: dict[str, list] = {}
    for r in runs:
        by_stage.setdefault(r.data.tags.get("baton.stage"), []).append(r)
    assert len(by_stage["training"]) == 3 and len(by_stage["analysis"]) == 3
    assert len(by_stage["evaluation"]) == 15  # 5 checkpoints each
    training_ids = {r.info.run_id for r in by_stage["training"]}
    assert all(r.data.tags.get("mlflow.parentRunId") in training_ids
               for r in by_stage["evaluation"] + by_stage["analysis"])
    # Dagster: every asset of every experiment recorded
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    from dagster import AssetKey, AssetPartitionStatus, DagsterInstance

    from assets.partitions import experiments as parts

    instance = DagsterInstance.get()
    for asset in ("model", "evaluation_job", "evaluation_metrics", "analysis_job",
                  "analysis_report"):
        states = instance.get_status_by_partition(AssetKey(asset), exps, parts)
        assert states == {e: AssetPartitionStatus.MATERIALIZED for e in exps}, asset


def test_demo_uis_and_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    log = open(tmp_path / "demo.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([*BATON, "demo", "--home", str(home)], env=demo_env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        text = ""
        while "everything is still running" not in text:
            assert proc.poll() is None, text[-4000:]
            assert time.monotonic() < deadline, text[-4000:]
            time.sleep(2)
            text = (tmp_path / "demo.log").read_text()
        urls = dict(line.split("] ", 1)[1].split(": ", 1) for line in text.splitlines()
                    if "] MLflow: " in line or "] Dagster UI: " in line)
        exps = experiments(home)
        page = dom(f"{urls['Dagster UI']}/assets/analysis_report?view=partitions",
                   tmp_path / "c1")
        assert "analysis_report" in page and exps[0] in page
        screenshot(f"{urls['Dagster UI']}/asset-groups", "demo-dagster.png", tmp_path / "c2")
        runs = f"{urls['MLflow']}/#/experiments/1/runs"
        page = dom(runs, tmp_path / "c3")
        assert all(f"training {e}" in page for e in exps), page[-2000:]
        screenshot(runs, "demo-mlflow.png", tmp_path / "c4")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(120)
    assert code == 130
    text = (tmp_path / "demo.log").read_text()
    assert "stopped the MLflow server, the Dagster daemon and the Dagster UI" in text
    left = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout
    assert left.strip() == "", f"processes left behind: {left}"
