"""The README's first command, `baton demo`: it ends with the reports written, the Parquet,
the MLflow runs and the Dagster asset states, each linked to its MLflow run; a failed
stage makes `--once` fail and is named; its UIs show the demo; Ctrl-C stops all, Slurm
jobs included."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from tests.e2e.browser import dom, screenshot

pytestmark = pytest.mark.slow
BATON = [sys.executable, "-m", "baton"]
SERVICES = {"MLflow", "Dagster UI", "metrics exporter", "status pages"}  # the URLs printed


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("BATON_CONFIG", "SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
                "DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    return env


def experiments(home: Path) -> list[str]:
    return sorted(p.parent.name for p in (home / "drive" / "models").glob("*/.training_complete"))


def campaign_of(home: Path, exp: str) -> str:
    signal_file = home / "drive" / "models" / exp / ".training_complete"
    return json.loads(signal_file.read_text())["campaign"]


def printed_urls(text: str) -> dict[str, str]:
    """The service URLs the demo printed: ``[demo hh:mm:ss] NAME: URL``."""
    found = re.findall(r"^\[demo [\d:]+\] (MLflow|Dagster UI|metrics exporter|status pages): "
                       r"(http://\S+)$",
                       text, flags=re.M)
    return dict(found)


def progress_lines(text: str, exp: str) -> list[str]:
    return re.findall(rf"^\[demo [\d:]+\] {re.escape(exp)}: (.*)$", text, flags=re.M)


def leftover_processes(home: Path) -> list[str]:
    """Processes whose command line names the demo's home or whose environment has its
    DAGSTER_HOME (local runners, Slurm job steps, Dagster run workers, services)."""
    inside = str(home).encode() + b"/"
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        homes = [v for v in environ.split(b"\0") if v.startswith(b"DAGSTER_HOME=" + inside)]
        if inside in cmdline or homes:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            left.append(f"{entry.name}: {command}")
    return left


def refuses(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def run_url_id(url: str, mlflow_url: str) -> str:
    assert url.startswith(mlflow_url + "/#/runs/"), url
    return url.rsplit("/", 1)[1]


def latest_metadata(instance: object, asset: str, partition: str) -> dict[str, str]:
    from dagster import AssetKey, AssetRecordsFilter

    records = instance.fetch_materializations(  # type: ignore[attr-defined]
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]),
        limit=1).records
    assert records, f"{asset} {partition}: no materialization"
    meta = records[0].asset_materialization.metadata
    return {k: str(getattr(v, "value", v)) for k, v in meta.items()}


def test_demo_once(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = subprocess.run([*BATON, "demo", "--once", "--home", str(home), "--backend", "local",
                           "--timeout", "900"], env=demo_env(), capture_output=True, text=True,
                          timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    exps = experiments(home)
    assert len(exps) == 3
    urls = printed_urls(proc.stdout)
    assert set(urls) == SERVICES, proc.stdout[-3000:]
    assert urls["metrics exporter"].endswith("/metrics")
    assert "FAILED" not in proc.stdout
    # progress: every experiment is shown evaluating, in analysis, then reported
    for exp in exps:
        lines = progress_lines(proc.stdout, exp)
        firsts = [next((i for i, line in enumerate(lines) if line.startswith(word)), None)
                  for word in ("evaluating", "analysis", "reported")]
        assert None not in firsts and firsts == sorted(firsts), (exp, lines)
    reports = dict(re.findall(r"\] report (\S+): (\S+)$", proc.stdout, flags=re.M))
    assert sorted(reports) == exps
    assert all(Path(p).is_file() for p in reports.values()), reports
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
    run_by_id = {r.info.run_id: r for r in runs}
    # Dagster: every asset of every experiment recorded
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    from dagster import AssetKey, AssetPartitionStatus, DagsterInstance

    from assets.partitions import experiments as parts

    instance = DagsterInstance.get()
    for asset in ("model", "evaluation_job", "evaluation_metrics", "analysis_job",
                  "analysis_report"):
        states = instance.get_status_by_partition(AssetKey(asset), exps, parts)
        assert states == {e: AssetPartitionStatus.MATERIALIZED for e in exps}, asset
    # ... and the Dagster metadata links to the MLflow run of each stage
    stage_of = {"model": "training", "evaluation_metrics": "evaluation",
                "analysis_report": "analysis"}
    for exp in exps:
        for asset, stage in stage_of.items():
            meta = latest_metadata(instance, asset, exp)
            assert "mlflow" in meta, f"{asset} {exp}: no mlflow link in {sorted(meta)}"
            run = run_by_id.get(run_url_id(meta["mlflow"], urls["MLflow"]))
            assert run is not None, f"{asset} {exp}: {meta['mlflow']} is no MLflow run"
            assert run.data.tags.get("baton.stage") == stage, (asset, exp)
            assert run.data.tags.get("baton.experiment") == exp, (asset, exp)
        # every evaluation task's run is linked, not only the first one's
        meta = latest_metadata(instance, "evaluation_metrics", exp)
        linked = set(re.findall(r"#/runs/([0-9a-f]+)", " ".join(meta.values())))
        evaluations = {r.info.run_id for r in by_stage["evaluation"]
                       if r.data.tags.get("baton.experiment") == exp}
        assert len(evaluations) == 5 and evaluations <= linked, (exp, sorted(meta))
        # ... and to the experiment's status page and its jobs' logs there (web.url)
        for asset in ("evaluation_metrics", "analysis_report"):
            meta = latest_metadata(instance, asset, exp)
            assert meta["baton web"] == f"{urls['status pages']}experiments?name={exp}", meta
            assert any(k.startswith("baton web log") and "/logs/" in v
                       for k, v in meta.items()), (asset, exp, sorted(meta))


def test_demo_once_fails_when_a_stage_fails(tmp_path: Path) -> None:
    """One dataset of every evaluation fails: the demo names the failure and --once exits
    with 1, even though the other dataset's metrics were kept."""
    home = tmp_path / "demo"
    proc = subprocess.run([*BATON, "demo", "--once", "--home", str(home), "--backend", "local",
                           "--fail-dataset", "heldout", "--timeout", "900"], env=demo_env(),
                          capture_output=True, text=True, timeout=1200, check=False)
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:] + proc.stderr[-4000:]
    exps = experiments(home)
    assert len(exps) == 3
    for exp in exps:
        failed = re.findall(rf"^\[demo [\d:]+\] FAILED {re.escape(exp)}: evaluation of "
                            r"(\S+) failed: (.*)$", out, flags=re.M)
        assert len(failed) == 5, out[-4000:]  # every checkpoint, each named once
        assert all("heldout" in why and "failing on purpose" in why for _, why in failed)
        # what succeeded is kept
        kept = list((home / "drive" / "evaluation" / exp / "metrics").glob(
            "dataset=minimal_pairs/metric=accuracy/*.parquet"))
        assert len(kept) == 5
    assert "the pipeline did not finish cleanly: 15 failure(s)" in out
    assert "everything is still running" not in out


def _wait_for(proc: subprocess.Popen, log: Path, pattern: str, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while not re.search(pattern, text, flags=re.M):
        assert proc.poll() is None, text[-4000:]
        assert "did not finish cleanly" not in text and "gave up after" not in text, \
            text[-4000:]
        assert time.monotonic() < deadline, text[-4000:]
        time.sleep(2)
        text = log.read_text()
    return text


def _wait_until(proc: subprocess.Popen, log: Path, what: str, condition: Callable[[], bool],
                timeout: float = 900) -> None:
    """Wait for ``condition`` while the demo runs (its log tail when it does not come)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the demo ended before {what}:\n" + log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"no {what}:\n" + log.read_text()[-4000:]
        time.sleep(1)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return r.read().decode()


def _start_demo(tmp_path: Path, env: dict[str, str] | None = None
                ) -> tuple[Path, Path, subprocess.Popen]:
    """``baton demo`` in the background (not --once), its output in a log file."""
    home = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*BATON, "demo", "--home", str(home)],
                                env={**demo_env(), **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return home, log, proc


def hold_evaluations(home: Path, release: Path) -> dict[str, str]:
    """Make the demo's evaluations wait for ``release`` (tests/e2e/held_eval.py): the
    drive's eval.yaml, which the demo keeps (it is not one the demo wrote). Returns the
    environment the demo needs for its jobs to import the held evaluator."""
    eval_yaml = home / "drive" / "config" / "evaluation" / "base_eval.yaml"
    eval_yaml.parent.mkdir(parents=True)
    eval_yaml.write_text(f"evaluator: tests.e2e.held_eval:Held\noptions:\n"
                         f"  release: {release}\n")
    root = str(Path(__file__).resolve().parents[2])
    return {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def test_demo_ctrl_c_while_evaluating(tmp_path: Path) -> None:
    """Ctrl-C mid-pipeline: the demo's unfinished Slurm jobs are cancelled first (its
    evaluations are held, so none can end before), then the services stop, and nothing of
    the demo is left running."""
    release = tmp_path / "release"
    env = hold_evaluations(tmp_path / "demo", release)
    home, log, proc = _start_demo(tmp_path, env)
    try:
        text = _wait_for(proc, log, r"\] \S+: evaluating \d+/\d+")
        urls = printed_urls(text)
        assert set(urls) == SERVICES, text[-3000:]
        assert "baton_" in _get(urls["metrics exporter"])
        held = f"{release.name}.held.*"
        _wait_until(proc, log, "an evaluation task held",
                    lambda: any(release.parent.glob(held)))
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(300)
        release.touch()  # whatever the demo left behind may end
    text = log.read_text()
    assert code == 130, text[-4000:]
    cancelled = re.search(r"cancelled (\d+) unfinished Slurm job\(s\) of the demo", text)
    assert cancelled and int(cancelled.group(1)) >= 1, text[-4000:]
    stopped = text.find("stopped the services:")
    assert stopped > cancelled.start(), text[-4000:]  # the jobs first, then the services
    assert all(refuses(url) for url in urls.values()), urls
    assert leftover_processes(home) == [], text[-3000:]


# sorted by name, MLflow lists child runs beside their parents instead of folded under them
FLAT = "?orderByKey=attributes.run_name&orderByAsc=true"


def check_dagster_partitions(page: str, exps: list[str]) -> None:
    """The partitions view of an asset: every experiment, all materialized."""
    assert all(e in page for e in exps), page[-2000:]
    counts = dict(re.findall(r">(Materialized|Materializing|Failed|Missing) \((\d+)\)<", page))
    assert counts == {"Materialized": str(len(exps)), "Materializing": "0", "Failed": "0",
                      "Missing": "0"}, counts


def check_mlflow_runs(page: str, exps: list[str]) -> None:
    """The experiment's runs table: each experiment's training run, its five evaluation
    runs (one per checkpoint) and its analysis run."""
    shown = re.findall(r">((?:training|evaluation|analysis) [^<]+)</span></a>", page)
    for e in exps:
        assert f"training {e}" in shown and f"analysis {e}" in shown, (e, shown)
        assert len([n for n in shown if n.startswith(f"evaluation {e} ")]) == 5, (e, shown)


def holds(check: Callable[[str, list[str]], None], page: str, exps: list[str]) -> bool:
    """Whether the page passes ``check`` yet (what the browser waits for)."""
    try:
        check(page, exps)
    except AssertionError:
        return False
    return True


def test_demo_uis_and_ctrl_c(tmp_path: Path) -> None:
    home, log, proc = _start_demo(tmp_path)
    try:
        text = _wait_for(proc, log, "everything is still running")
        urls = printed_urls(text)
        exps = experiments(home)
        # the exporter serves baton's metrics while the demo runs
        body = _get(urls["metrics exporter"])
        assert re.search(r"^baton_\w+", body, flags=re.M), body[:2000]
        # Dagster: the report asset of every experiment is shown materialized
        page = dom(f"{urls['Dagster UI']}/assets/analysis_report?view=partitions",
                   tmp_path / "c1", lambda page: holds(check_dagster_partitions, page, exps))
        check_dagster_partitions(page, exps)
        screenshot(f"{urls['Dagster UI']}/asset-groups", "demo-dagster.png", tmp_path / "c2",
                   lambda page: "analysis_report" in page and "evaluation_metrics" in page)
        # MLflow: the campaign's experiment shows the training, evaluation and analysis runs
        from mlflow.tracking import MlflowClient

        experiment = MlflowClient(urls["MLflow"]).get_experiment_by_name(
            f"baton/{campaign_of(home, exps[0])}")
        assert experiment is not None
        runs = f"{urls['MLflow']}/#/experiments/{experiment.experiment_id}/runs"
        def runs_shown(page: str) -> bool:
            return holds(check_mlflow_runs, page, exps)

        check_mlflow_runs(dom(runs + FLAT, tmp_path / "c3", runs_shown), exps)
        screenshot(runs + FLAT, "demo-mlflow.png", tmp_path / "c4", runs_shown)
        # the status pages: every experiment, complete, with a working log link
        page = _get(urls["status pages"] + "experiments")
        assert all(f'data-experiment="{e}" data-state="complete"' in page for e in exps), \
            page[-2000:]
        link = re.search(r'href="(/logs/[^/"]+/stdout)"', page)
        assert link, page[-2000:]
        assert "<pre class=\"log\"" in _get(urls["status pages"] + link.group(1)[1:])
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(300)
    assert code == 130
    text = log.read_text()
    assert "stopped the services: MLflow, Dagster daemon, Dagster UI, metrics exporter, " \
        "status pages" in text
    assert "no unfinished Slurm jobs to cancel" in text
    assert all(refuses(url) for url in urls.values()), urls
    assert leftover_processes(home) == [], text[-3000:]
