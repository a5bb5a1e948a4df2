"""The code location as Dagster sees it: it validates, and the instance runs on PostgreSQL
with deploy/dagster.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_validate(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "SHARED_DRIVE": str(tmp_path / "d"),
           "BATON_STATE_DIR": str(tmp_path / "s"), "BATON_CONFIG": ""}
    proc = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions",
                           "validate", "-w", str(ROOT / "workspace.yaml")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful for code location baton" in proc.stdout + proc.stderr


LOAD_STRICTLY = r"""
import warnings

# a deprecated (or superseded) API used by baton's code location is an error
warnings.simplefilter("error", DeprecationWarning)
warnings.simplefilter("error", PendingDeprecationWarning)
from dagster import SupersessionWarning  # noqa: E402

warnings.simplefilter("error", SupersessionWarning)
import definitions  # noqa: E402

defs = definitions.defs
for job in defs.jobs or []:
    defs.resolve_job_def(job.name)  # resolving a job is where deprecated arguments warn
defs.resolve_asset_graph()
print("loaded without warnings")
"""


def test_definitions_load_without_deprecation_warnings(tmp_path: Path) -> None:
    """Loading definitions.py (and resolving its jobs) under warnings-as-errors: nothing
    baton calls is deprecated. A fresh interpreter, so no earlier import hides a warning
    that fires only once."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "SHARED_DRIVE": str(tmp_path / "d"),
           "BATON_STATE_DIR": str(tmp_path / "s"), "BATON_CONFIG": "",
           "PYTHONWARNINGS": ""}
    proc = subprocess.run([sys.executable, "-c", LOAD_STRICTLY], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loaded without warnings" in proc.stdout


def test_definitions_hold_the_asset_graph() -> None:
    from definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"model", "evaluation_job", "evaluation_metrics", "analysis_job",
                    "analysis_report", "campaign_report"}
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert parents["evaluation_job"] == {"model"}
    assert parents["evaluation_metrics"] == {"evaluation_job"}
    assert parents["analysis_job"] == {"evaluation_metrics"}
    assert parents["analysis_report"] == {"analysis_job"}
    assert parents["campaign_report"] == {"analysis_report"}
    sensors = {s.name for s in defs.sensors}
    assert sensors == {"training_sensor", "evaluation_sensor", "analysis_sensor",
                       "slurm_tracker", "status_reports", "supervisor"}
    # short runs: their steps run in the run's process, UI launches and backfills included
    for name in ("submit_evaluation", "record_evaluation", "record_analysis",
                 "campaign_report_job", "cancel_jobs", "__ASSET_JOB"):
        assert defs.resolve_job_def(name).executor_def.name == "in_process", name


@pytest.mark.postgres
def test_instance_on_postgres(tmp_path: Path) -> None:
    url = os.environ.get("BATON_TEST_POSTGRES_URL")
    require(url is not None, "BATON_TEST_POSTGRES_URL is not set; start one with "
            "`export BATON_TEST_POSTGRES_URL=$(deploy/ci/postgres.sh)`")
    assert url is not None
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    u = urlparse(url)
    env = {"DAGSTER_PG_USERNAME": u.username or "", "DAGSTER_PG_PASSWORD": u.password or "",
           "DAGSTER_PG_HOST": u.hostname or "", "DAGSTER_PG_DB": u.path.lstrip("/"),
           "DAGSTER_PG_PORT": str(u.port or 5432)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        instance = DagsterInstance.from_config(str(tmp_path))
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        name = f"pg-{os.getpid()}"
        instance.add_dynamic_partitions("experiments", [name])
        instance.report_runless_asset_event(AssetMaterialization("model", partition=name))
        records = instance.fetch_materializations(AssetKey("model"), limit=50).records
        assert any(r.partition_key == name for r in records)
        instance.dispose()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v



def test_asset_jobs_are_partitioned_by_their_assets(tmp_path: Path) -> None:
    """No job states its partitions: each takes them from its assets, and a sensor's
    partitioned run request runs as before (here: the evaluation of one experiment)."""
    from dagster import SensorResult

    from definitions import defs
    from sensors.signal_sensors import training_sensor
    from tests.e2e.harness import InProcess

    expected = {"submit_evaluation": "experiments", "record_evaluation": "experiments",
                "record_analysis": "experiments", "campaign_report_job": "campaigns"}
    for name, partitions in expected.items():
        job = defs.resolve_job_def(name)
        assert job.partitions_def is not None and job.partitions_def.name == partitions, name
    with InProcess(tmp_path) as site:
        site.train("p1")
        result = site.tick(training_sensor)
        assert isinstance(result, SensorResult)
        [request] = result.run_requests
        job = defs.resolve_job_def(training_sensor.job_name)  # its resources from the env
        run = job.execute_in_process(partition_key=request.partition_key,
                                     instance=site.instance, tags=request.tags)
        assert run.success
        [event] = run.get_asset_materialization_events()
        assert (event.asset_key.to_user_string(), event.partition) == ("evaluation_job", "p1")
        assert [j.experiment for j in site.ledger.jobs(stage="evaluation")] == ["p1"]
