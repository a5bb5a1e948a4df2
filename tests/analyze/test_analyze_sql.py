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
import pyarrow.parquet as pq
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
    assert rows[0] == ("item_group,items,accuracy (final checkpoint),95% CI low,95% CI high")
    assert len(rows) == 5
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

    led = open_ledger(campaign.ledger_url, init=True)
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
    assert not (campaign.state_dir / "sql").exists()  # a query writes no file
    subprocess.run([sys.executable, "-m", "baton", "sql", "--views"], env=env, check=True,
                   capture_output=True)
    views = campaign.state_dir / "sql" / "views.sql"
    con = duckdb.connect()  # what `duckdb -init views.sql` does
    con.execute(views.read_text())
    assert con.sql("SELECT count(DISTINCT experiment), count(DISTINCT dataset) FROM metrics"
                   ).fetchall() == [(2, 2)]
    # one experiment from its own folder: the same rows as the view's, and only them
    own = "SELECT * FROM experiment_metrics('slow') ORDER BY ALL"
    via_view = ("SELECT * FROM metrics WHERE experiment = 'slow' "
                "ORDER BY ALL")
    assert con.sql(own).fetchall() == con.sql(via_view).fetchall() != []
    bad = subprocess.run([sys.executable, "-m", "baton", "sql", "SELEC nonsense"], env=env,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "query failed" in bad.stderr


def _completed_jobs(config: Config) -> None:
    """Finished jobs of both stages, with queue wait, run time and memory, in this
    config's own ledger (so the queries below depend on no other test)."""
    from datetime import UTC, datetime, timedelta

    from baton.ledger import open_ledger
    from baton.slurm.states import JobStatus

    led = open_ledger(config.ledger_url, init=True)
    t0 = datetime(2025, 9, 30, 14, 0, tzinfo=UTC)
    statuses = {}
    for i, (stage, wait, run, rss) in enumerate([("evaluation", 30, 300, 900.0),
                                                 ("evaluation", 90, 500, 2500.0),
                                                 ("analysis", 10, 60, 400.0)]):
        claim = led.claim_submission(f"readme-{i}", stage=stage, experiment="slow",
                                     backend="sbatch", req_mem_mb=2048.0)
        job_id = str(1000 + i)
        led.mark_submitted(claim.row_id, job_id, submitted_at=t0)
        statuses[job_id] = JobStatus(
            job_id=job_id, state="COMPLETED", exit_code=0, submitted_at=t0,
            started_at=t0 + timedelta(seconds=wait),
            ended_at=t0 + timedelta(seconds=wait + run), max_rss_mb=rss, cpu_seconds=run)
    assert led.apply_statuses(statuses) == 3
    led.close()


def test_readme_queries_run(campaign: Config, tmp_path: Path) -> None:
    """The three queries docs/user/sql.md shows work on real data, in any test order."""
    import re

    from baton.analyze.sqlviews import connect

    readme = (Path(__file__).resolve().parents[2] / "docs" / "user" / "sql.md").read_text()
    start = readme.index("<!-- example: sql -->")
    section = readme[start:readme.index("```\n", readme.index("```bash\n", start) + 8)]
    queries = re.findall(r'baton sql "(.*?)"', section, flags=re.S)
    assert len(queries) == 3
    own = campaign.model_copy(update={"state_dir": tmp_path / "state"})
    _completed_jobs(own)
    con = connect(own)
    results = []
    for q in queries:
        q = q.replace("exp01", "slow")
        rows = con.sql(" ".join(q.split())).fetchall()
        assert rows, q
        results.append(rows)
    by_stage = {r[0]: r[1:] for r in results[2]}
    assert by_stage == {"evaluation": (2, 60.0, 400.0, 1), "analysis": (1, 10.0, 60.0, 0)}


def test_views_file_sees_metrics_written_after_it(tmp_path: Path) -> None:
    """views.sql written before any metrics existed still shows them once they do: the
    metrics and predictions views are globs read at each query, not a frozen list."""
    from baton.analyze.sqlviews import refresh
    from baton.config import load_config
    from baton.ledger import open_ledger

    config = load_config(env={"SHARED_DRIVE": str(tmp_path / "drive"),
                              "BATON_STATE_DIR": str(tmp_path / "state")})
    config.drive.create()
    open_ledger(config.ledger_url, init=True).close()
    views = refresh(config).read_text()
    early = duckdb.connect()
    early.execute(views)  # no metrics yet: the views exist, empty and typed
    assert early.sql("SELECT count(*) FROM metrics").fetchall() == [(0,)]
    assert early.sql("SELECT count(*) FROM predictions").fetchall() == [(0,)]
    types = {r[0]: r[1] for r in early.sql("DESCRIBE metrics").fetchall()}
    assert types["value"] == "DOUBLE" and types["metric"] == "VARCHAR"
    train_example(config, "late", Hyper(epochs=1, checkpoint_every=400), "c")
    assert evaluate(config, "late", str(config.drive.experiment("late").final_dir))[0]
    assert (config.state_dir / "sql" / "views.sql").read_text() == views  # unchanged
    files = list(config.drive.evaluation.glob("*/metrics/dataset=*/metric=*/*.parquet"))
    for con in (duckdb.connect(), early):  # a new session, and one opened before the files
        if con is not early:
            con.execute(views)
        rows, datasets = con.sql("SELECT count(*), count(DISTINCT dataset) FROM metrics "
                                 "WHERE experiment = 'late'").fetchall()[0]
        assert rows == sum(pq.read_metadata(f).num_rows for f in files) and datasets == 2
        assert con.sql("SELECT count(*) FROM predictions").fetchall() == [(400,)]


def test_readme_r_targets_block_is_valid_config(tmp_path: Path) -> None:
    """The docs' R targets snippet loads as configuration, renders to a job script that
    bash accepts, and (with a stand-in Rscript, R is not installed here) ends with the
    signal that names the report and the targets manifest."""
    import re

    import yaml

    from baton.config import load_config
    from baton.slurm.render import render_job

    readme = (Path(__file__).resolve().parents[2] / "docs" / "user" / "analysis.md"
              ).read_text()
    after = readme[readme.index("## An R targets pipeline instead"):]
    block = re.search(r"```yaml\n(.*?)```", after, flags=re.S).group(1)
    assert "manifest" in block
    drive, state = tmp_path / "drive", tmp_path / "state"
    (tmp_path / "baton.yaml").write_text(block)
    config = load_config(tmp_path / "baton.yaml", env={"SHARED_DRIVE": str(drive),
                                                      "BATON_STATE_DIR": str(state)})
    stage = config.stage("analysis")
    assert stage.command and "\n" not in stage.command  # one shell line
    assert stage.command == " ".join(yaml.safe_load(block)["stages"]["analysis"]["command"]
                                     .split("\n"))
    config.drive.create()
    script = render_job(config, "analysis", [("exp1", "")]).script
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert stage.command in script
    # run it: "module" and "Rscript" stand in for the cluster's; baton is the real one
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "module").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "Rscript").write_text(
        '#!/bin/sh\nmkdir -p "$OUT"\necho "<html>$*</html>" > "$OUT/report.html"\n'
        'echo "name,command" > "$OUT/manifest.csv"\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    script = script.replace("module load R/4.4", f"{bindir}/module load R/4.4")
    path.write_text(script)
    env = {**os.environ, "PATH": f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "BATON_STATE_DIR": str(state), "BATON_CONFIG": "", "SLURM_JOB_ID": "42"}
    for var in ("BATON_SIGNAL_DIR", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    run = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    reports = config.drive.experiment("exp1").reports_dir
    sig = read_signal(reports / ".analysis_complete", config.drive).signal
    assert sig.status == "complete" and sig.job_id == "42"
    assert sig.report_path == str(reports / "report.html")
    assert sig.outputs == [str(reports / "manifest.csv")]


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
