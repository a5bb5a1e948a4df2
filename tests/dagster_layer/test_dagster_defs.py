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

ROOT = Path(__file__).resolve().parents[2]


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

defs = definitions.defs()  # what Dagster calls when it loads the code location
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
    import definitions

    defs = definitions.defs()
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

    import definitions
    from tests.e2e.harness import PER_SIGNAL, InProcess

    expected = {"submit_evaluation": "experiments", "record_evaluation": "experiments",
                "record_analysis": "experiments", "campaign_report_job": "campaigns"}
    for name, partitions in expected.items():
        job = definitions.defs().resolve_job_def(name)
        assert job.partitions_def is not None and job.partitions_def.name == partitions, name
    with InProcess(tmp_path, sensors=PER_SIGNAL) as site:
        defs = definitions.defs()  # loaded from the site's baton.yaml (BATON_CONFIG)
        [training_sensor] = [s for s in defs.sensors if s.name == "training_sensor"]
        site.train("p1")
        result = site.tick(training_sensor)
        assert isinstance(result, SensorResult)
        [request] = result.run_requests
        job = defs.resolve_job_def("submit_evaluation")  # its resources from the env
        run = job.execute_in_process(partition_key=request.partition_key,
                                     instance=site.instance, tags=request.tags)
        assert run.success
        [event] = run.get_asset_materialization_events()
        assert (event.asset_key.to_user_string(), event.partition) == ("evaluation_job", "p1")
        assert [j.experiment for j in site.ledger.jobs(stage="evaluation")] == ["p1"]


# --- the Dagster layer reads nothing at import time ----------------------------------------
LAYER = ("assets", "sensors", "resources", "ops_slurm")

IMPORT_QUIETLY = r"""
import collections.abc
import os
import sys
import threading

watched = os.environ["BATON_TEST_WATCHED"]  # the folder of baton.yaml, state and drive
config_vars = set(os.environ["BATON_TEST_CONFIG_VARS"].split())
modules = os.environ["BATON_TEST_MODULES"].split()
events = []


def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        if os.fsdecode(args[0]).startswith(watched):
            events.append(f"open {os.fsdecode(args[0])}")
    elif event in ("sqlite3.connect", "subprocess.Popen", "os.system", "os.posix_spawn",
                   "os.fork", "os.exec", "socket.connect", "socket.bind"):
        events.append(f"{event} {args!r}")


class Environ(collections.abc.MutableMapping):
    # os.environ, noting every variable that is looked up
    def __init__(self, env):
        self.env, self.read = env, set()

    def __getitem__(self, key):
        self.read.add(key)
        return self.env[key]

    def __setitem__(self, key, value):
        self.env[key] = value

    def __delitem__(self, key):
        del self.env[key]

    def __iter__(self):
        return iter(self.env)

    def __len__(self):
        return len(self.env)

    def copy(self):
        return dict(self.env)


import dagster  # noqa: E402,F401  (Dagster's own import runs `file` on the interpreter)

import baton.config  # noqa: E402

calls = []


def refuse(*args, **kwargs):
    calls.append((args, kwargs))
    raise AssertionError("baton's configuration was read at import time")


baton.config.load_config = refuse
baton.config.find_config_file = refuse
threads = set(threading.enumerate())
os.environ = Environ(os.environ)
sys.addaudithook(audit)
import importlib  # noqa: E402

for name in modules:
    importlib.import_module(name)
read = sorted(os.environ.read & config_vars)
started = [t.name for t in threading.enumerate() if t not in threads]
assert not calls, f"load_config called: {calls}"
assert not events, events
assert not read, f"configuration variables read: {read}"
assert not started, f"threads started: {started}"
print(f"imported {len(modules)} modules quietly")
"""


def layer_modules() -> list[str]:
    """Every module of the Dagster layer, and definitions.py."""
    names = ["definitions"]
    for folder in LAYER:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("config_text", [None, "sensors: [interval_seconds: 1\n",
                                         "sensors:\n  interval_seconds: -1\n"],
                         ids=["missing", "not-yaml", "invalid"])
def test_importing_the_dagster_layer_reads_nothing(tmp_path: Path,
                                                   config_text: str | None) -> None:
    """In a fresh interpreter, with BATON_CONFIG naming a missing or a bad baton.yaml, every
    module of assets/, sensors/, resources/, ops_slurm/ (and definitions.py) imports: no
    configuration loaded, no configuration variable looked up, no file of the deployment
    opened, no database, process, socket or thread started."""
    from baton.config import ENV_KEYS

    config_file = tmp_path / "baton.yaml"
    if config_text is not None:
        config_file.write_text(config_text)
    modules = layer_modules()
    assert {"sensors.signal_sensors", "resources", "assets.experiment",
            "ops_slurm.cancel"} <= set(modules)
    env = {**os.environ, "BATON_CONFIG": str(config_file), "BATON_TEST_WATCHED": str(tmp_path),
           "SHARED_DRIVE": str(tmp_path / "drive"), "BATON_STATE_DIR": str(tmp_path / "state"),
           "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'ledger.db'}",
           "DAGSTER_HOME": str(tmp_path / "dagster"),
           "BATON_TEST_CONFIG_VARS": " ".join(["BATON_CONFIG", *ENV_KEYS]),
           "BATON_TEST_MODULES": " ".join(modules)}
    proc = subprocess.run([sys.executable, "-c", IMPORT_QUIETLY], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"imported {len(modules)} modules quietly" in proc.stdout


SENSORS = {"training_sensor", "evaluation_sensor", "analysis_sensor", "slurm_tracker",
           "status_reports", "supervisor"}


def test_a_setting_changed_in_baton_yaml_reaches_the_sensors_when_the_location_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sensors.interval_seconds is each sensor's minimum_interval_seconds (a decorator
    argument): Dagster's load of the code location (``definitions.defs``) reads baton.yaml
    as it is then, so an edited baton.yaml shows on the next load, and the resources the
    runs get carry the same configuration."""
    import definitions
    from baton.config import ENV_KEYS

    for var in ENV_KEYS:
        monkeypatch.delenv(var, raising=False)
    config_file = tmp_path / "baton.yaml"
    monkeypatch.setenv("BATON_CONFIG", str(config_file))
    loaded = []
    for interval in (37, 41):
        config_file.write_text(f"shared_drive: {tmp_path / 'drive'}\n"
                               f"state_dir: {tmp_path / 'state'}\n"
                               f"sensors:\n  interval_seconds: {interval}\n"
                               f"stages:\n  evaluation:\n    time: '00:10:00'\n"
                               f"    mem: {interval}G\n    cpus: 1\n")
        defs = definitions.defs()  # as Dagster loads (or reloads) the code location
        loaded.append({s.name: s.minimum_interval_seconds for s in defs.sensors})
        assert loaded[-1] == dict.fromkeys(SENSORS, interval)
        resources = defs.resources or {}
        assert {k: r.settings.stage("evaluation").mem for k, r in resources.items()} == \
            dict.fromkeys(("slurm", "ledger", "drive", "mlflow"), f"{interval}G")
    assert loaded[0] != loaded[1]


def test_a_run_config_overrides_a_resource_field(tmp_path: Path) -> None:
    """A resource field set in a run's config (the Launchpad's ``resources:`` section) wins
    over baton.yaml for that run: here the cancel job runs against another ledger than the
    configuration names (which is left alone)."""
    import definitions
    from baton.config import load_config
    from baton.ledger import open_ledger

    config = load_config(None, {"SHARED_DRIVE": str(tmp_path / "drive"),
                                "BATON_STATE_DIR": str(tmp_path / "state")})
    other = tmp_path / "other" / "ledger.db"
    other.parent.mkdir()
    open_ledger(f"sqlite:///{other}", init=True).close()  # a run opens, never creates, one
    job = definitions.build_definitions(config).resolve_job_def("cancel_jobs")
    result = job.execute_in_process(run_config={
        "ops": {"cancel_slurm_jobs": {"config": {"experiments": ["x"]}}},
        "resources": {"ledger": {"config": {"url": f"sqlite:///{other}"}},
                      "slurm": {"config": {"backend": "local"}}}})
    assert result.success
    assert result.output_for_node("cancel_slurm_jobs") == []
    assert other.is_file()  # the run's ledger
    assert not (tmp_path / "state" / "ledger.db").exists()  # baton.yaml's, untouched


def test_the_cancel_job_returns_and_logs_only_what_slurm_cancelled(tmp_path: Path) -> None:
    """A job the ledger still holds as pending but Slurm no longer knows is not claimed as
    cancelled: the op returns the ids Slurm cancelled and warns with the reason for the rest."""
    from dagster import DagsterInstance

    import definitions
    from baton.config import load_config
    from baton.ledger import open_ledger

    config = load_config(None, {"SHARED_DRIVE": str(tmp_path / "drive"),
                                "BATON_STATE_DIR": str(tmp_path / "state"),
                                "BATON_SLURM_BACKEND": "local"})
    ledger = open_ledger(config.ledger_url, init=True)
    claim = ledger.claim_submission("k", stage="evaluation", experiment="x", backend="local")
    ledger.mark_submitted(claim.row_id, "424242")
    ledger.close()
    job = definitions.build_definitions(config).resolve_job_def("cancel_jobs")
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(run_config={
            "ops": {"cancel_slurm_jobs": {"config": {"experiments": ["x"]}}}},
            instance=instance)
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success
    assert result.output_for_node("cancel_slurm_jobs") == []
    assert any("424242" in m and "not cancelled" in m and "Invalid job id" in m
               for m in messages), messages
