"""Analysis (DuckDB -> statistics, figures, tables, report, manifest, signal) and
`baton sql` over the metrics and the ledger."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from baton.analyze.run import analyze
from baton.analyze.stats import bootstrap_ci
from baton.config import Config
from baton.evaluate.harness import evaluate
from baton.example.model import Hyper
from baton.example.train import train_example
from baton.signals import read_signal


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Config:
    from baton.config import load_config

    tmp = tmp_path_factory.mktemp("campaign")
    config = load_config(env={"SHARED_DRIVE": str(tmp / "drive"),
                              "BATON_STATE_DIR": str(tmp / "state")})
    config.drive.create()
    for name, lr in (("slow", 0.05), ("fast", 0.8)):
        train_example(config, name, Hyper(lr=lr, epochs=1, checkpoint_every=100), "sweep")
        exp = config.drive.experiment(name)
        for ckpt in [*sorted(exp.checkpoints_dir.iterdir()), exp.final_dir]:
            assert evaluate(config, name, str(ckpt))[0]
    return config


def test_bootstrap_ci() -> None:
    mean, low, high = bootstrap_ci(np.array([1.0] * 60 + [0.0] * 40))
    assert mean == pytest.approx(0.6) and 0.49 < low < 0.6 < high < 0.71
    assert bootstrap_ci(np.ones(10))[1:] == (1.0, 1.0)


def test_analysis_outputs(campaign: Config) -> None:
    ok, path = analyze(campaign, "slow")
    assert ok
    sig = read_signal(path, campaign.drive).signal
    assert sig.status == "complete" and sig.report_path and sig.manifest_path
    exp = campaign.drive.experiment("slow")
    for name in ("accuracy_by_group", "learning_curve", "campaign_comparison"):
        assert (exp.figures_dir / f"{name}.png").stat().st_size > 5000
        assert (exp.figures_dir / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
        assert (exp.tables_dir / f"{name}.csv").is_file()
        assert "\\begin{tabular}" in (exp.tables_dir / f"{name}.tex").read_text()
    rows = (exp.tables_dir / "accuracy_by_group.csv").read_text().splitlines()
    assert rows[0] == "item_group,items,accuracy,ci_low,ci_high" and len(rows) == 5
    comparison = (exp.tables_dir / "campaign_comparison.csv").read_text()
    assert "slow" in comparison and "fast" in comparison  # the campaign, side by side
    curve = (exp.tables_dir / "learning_curve.csv").read_text().splitlines()
    assert len({line.split(",")[1] for line in curve[1:]}) >= 3  # several steps
    report = Path(sig.report_path).read_text()
    assert report.count("data:image/png;base64,") == 3
    assert "src='http" not in report and 'src="http' not in report  # self-contained
    manifest = json.loads(Path(sig.manifest_path).read_text())
    for entry in manifest["outputs"]:
        data = Path(entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_analysis_failure_is_announced(campaign: Config) -> None:
    ok, path = analyze(campaign, "never-evaluated")
    sig = read_signal(path, campaign.drive).signal
    assert not ok and sig.status == "failed" and "no metrics Parquet" in sig.error_message


def test_baton_sql_and_the_duckdb_views_file(campaign: Config) -> None:
    from baton.ledger import open_ledger

    led = open_ledger(campaign.ledger_url)
    led.claim_submission("k1", stage="evaluation", experiment="slow", backend="local")
    env = {**os.environ, "SHARED_DRIVE": str(campaign.shared_drive),
           "BATON_STATE_DIR": str(campaign.state_dir), "BATON_CONFIG": ""}
    query = ("SELECT experiment, round(avg(value), 3) AS accuracy FROM metrics "
             "WHERE metric = 'accuracy' AND checkpoint = 'final' GROUP BY 1 ORDER BY 1")
    out = subprocess.run([sys.executable, "-m", "baton", "sql", query, "--format", "json"],
                         env=env, capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [r["experiment"] for r in rows] == ["fast", "slow"]
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    out = subprocess.run([sys.executable, "-m", "baton", "sql",
                          "SELECT stage, experiment, state FROM jobs", "--format", "csv"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["stage,experiment,state", "evaluation,slow,SUBMITTING"]
    views = campaign.state_dir / "sql" / "views.sql"
    con = duckdb.connect()  # what `duckdb -init views.sql` does
    con.execute(views.read_text())
    assert con.sql("SELECT count(DISTINCT experiment), count(DISTINCT dataset) FROM metrics"
                   ).fetchall() == [(2, 2)]
    bad = subprocess.run([sys.executable, "-m", "baton", "sql", "SELEC nonsense"], env=env,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "query failed" in bad.stderr


def test_readme_queries_run(campaign: Config) -> None:
    """The three queries the README shows work on real data."""
    import re

    from baton.sqlviews import connect

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## SQL over everything"):readme.index("## Signals")]
    queries = re.findall(r'baton sql "(.*?)"', section, flags=re.S)
    assert len(queries) == 3
    con = connect(campaign)
    for q in queries:
        q = q.replace("exp01", "slow")
        assert con.sql(" ".join(q.split())).fetchall(), q


def test_analysis_complete_from_a_shell(campaign: Config) -> None:
    report = campaign.drive.experiment("fast").reports_dir / "from-r.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html></html>")
    env = {**os.environ, "SHARED_DRIVE": str(campaign.shared_drive),
           "BATON_STATE_DIR": str(campaign.state_dir), "BATON_CONFIG": ""}
    env.pop("BATON_SIGNAL_DIR", None)
    out = subprocess.run([sys.executable, "-m", "baton", "signal", "analysis-complete",
                          "--experiment", "fast", "--report", str(report)], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    sig = read_signal(Path(out), campaign.drive).signal
    assert sig.report_path == str(report) and sig.status == "complete"
