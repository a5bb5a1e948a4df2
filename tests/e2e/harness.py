"""A real Dagster daemon on baton's code location, with its own DAGSTER_HOME, drive, state
and baton.yaml, for the end-to-end tests; and the same code location in process
(``InProcess``: sensors and runs through Dagster's testing API) for the faster ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.config import load_config
from baton.dagster_instance import RunMonitoring, dagster_instance_yaml
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.signals import TrainingComplete

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
# a run whose process died (a SIGKILLed daemon) fails within a minute, and the sensor that
# asked for it asks again; a live run of the tests starts and ends well within these
E2E_MONITORING = RunMonitoring(start_timeout_seconds=45, max_runtime_seconds=120,
                               poll_interval_seconds=3)


class Pipeline:
    def __init__(self, tmp: Path, backend: str, extra_env: dict[str, str] | None = None,
                 extra_config: str = "", slurm_config: str = "",
                 monitoring: RunMonitoring = E2E_MONITORING, sensors_config: str = "") -> None:
        self.tmp = tmp
        self.home = tmp / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(dagster_instance_yaml(monitoring))
        self.drive = DriveLayout(tmp / "drive")
        self.drive.create()
        self.config_file = tmp / "baton.yaml"
        py = sys.executable
        self.config_file.write_text(
            f"shared_drive: {self.drive.root}\nstate_dir: {tmp / 'state'}\n"
            f"slurm:\n  backend: {backend}\n  local_max_concurrent: 4\n"
            # the test cluster is the tests' own: no shared site's call budget slows them
            f"  calls_per_second: 50\n  calls_burst: 500\n{slurm_config}"
            "sensors:\n  interval_seconds: 1\n  debounce_seconds: 0.2\n"
            "  full_rescan_seconds: 30\n  missing_signal_grace_seconds: 20\n"
            f"{sensors_config}stages:\n"
            f"  evaluation:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
            f"    command: {py} {E2E / 'fake_eval.py'}\n"
            f"  analysis:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
            f"    command: {py} {E2E / 'fake_analysis.py'}\n" + extra_config)
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home),
                    "BATON_CONFIG": str(self.config_file), **(extra_env or {})}
        for var in ("SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
                    "BATON_SLURM_BACKEND"):
            self.env.pop(var, None)
        # create Dagster's storage once, before daemon and webserver race to create it
        subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
                       env=self.env, check=True, capture_output=True, timeout=300)
        self.config = load_config(self.config_file, self.env)
        self.ledger: Ledger = open_ledger(self.config.ledger_url, init=True)
        self.daemon: subprocess.Popen[bytes] | None = None

    # --- the daemon ----------------------------------------------------------------------
    def start(self) -> None:
        log = open(self.tmp / "daemon.log", "ab")  # noqa: SIM115 - the daemon keeps it
        self.daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
             str(ROOT / "workspace.yaml")], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL, group: bool = True) -> None:
        """Stop the daemon; ``group=False`` kills only the daemon process, as a crash of it
        would (the runs it launched go on)."""
        if self.daemon and self.daemon.poll() is None:
            if group:
                os.killpg(self.daemon.pid, sig)
            else:
                os.kill(self.daemon.pid, sig)
            self.daemon.wait(60)
        self.daemon = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_tail(self, n: int = 60) -> str:
        path = self.tmp / "daemon.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) \
            if path.exists() else ""

    # --- what a training run does ---------------------------------------------------------
    def train(self, experiment: str, campaign: str | None = None,
              checkpoints: list[str] | None = None) -> Path:
        layout = self.drive.experiment(experiment)
        layout.final_dir.mkdir(parents=True, exist_ok=True)
        (layout.final_dir / "model.safetensors").write_bytes(b"\0" * 1024)
        return publish(self.drive, TrainingComplete(
            timestamp=datetime.now(UTC), experiment=experiment, campaign=campaign,
            checkpoint_path=str(layout.final_dir), hostname="gpu01", user="tester",
            final_loss=1.5, total_steps=100, checkpoints=checkpoints))

    # --- Dagster's view ------------------------------------------------------------------
    def instance(self):
        from dagster import DagsterInstance

        os.environ["DAGSTER_HOME"] = str(self.home)
        return DagsterInstance.get()

    def materialized(self, asset: str, partition: str) -> bool:
        from dagster import AssetKey, AssetRecordsFilter

        records = self.instance().fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]),
            limit=1).records
        return bool(records)

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(f"the daemon died while waiting for {what}:\n"
                                     + self.log_tail())
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n" + self.log_tail())
            time.sleep(1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webserver:
    """dagster-webserver on the same instance and code location, for the GraphQL API and
    the UI."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(pipeline.tmp / "webserver.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-w",
             str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT, env=pipeline.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        pipeline.wait_for("the webserver", self._up, timeout=120)
        self.graphql("mutation { setNuxSeen }")  # no "join the community" modal on top

    def _up(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as r:
                return r.status == 200
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError((self.p.tmp / "webserver.log").read_text()) from None
            return False

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        import json
        import urllib.request

        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            doc = json.loads(r.read())
        assert "errors" not in doc, doc
        return doc["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)


# --- in process: sensors and runs of the code location, without a daemon ------------------
class InProcess:
    """baton's code location evaluated in this process, against a temporary Dagster
    instance: sensors through ``build_sensor_context`` (their asset events, partitions and
    cursors applied to the instance as the daemon applies them), runs through
    ``materialize``; the real resources point at a temporary drive, a SQLite ledger and
    the local Slurm backend. Use as a context manager: it sets ``BATON_CONFIG`` (and
    ``extra_env``) for its duration, and builds the sensors and resources from that
    baton.yaml, as the code location does (``sensors``: by name)."""

    JOB_ASSETS = {
        "submit_evaluation": ("evaluation_job",),
        "record_evaluation": ("evaluation_metrics", "analysis_job"),
        "record_analysis": ("analysis_report",),
        "campaign_report_job": ("campaign_report",),
    }

    def __init__(self, tmp: Path, datasets: list[str] | None = None,
                 extra_env: dict[str, str] | None = None,
                 sensors: dict[str, object] | None = None) -> None:
        self.tmp = tmp
        self.drive = DriveLayout(tmp / "drive")
        self.drive.create()
        self.config_file = tmp / "baton.yaml"
        py = sys.executable
        sensor_lines = "".join(f"  {k}: {v}\n" for k, v in {
            "interval_seconds": 1, "debounce_seconds": 0, "full_rescan_seconds": 600,
            "missing_signal_grace_seconds": 60, **(sensors or {})}.items())
        self.config_file.write_text(
            f"shared_drive: {self.drive.root}\nstate_dir: {tmp / 'state'}\n"
            f"database_url: sqlite:///{tmp / 'state' / 'ledger.db'}\n"
            "slurm:\n  backend: local\n  local_max_concurrent: 2\n"
            f"sensors:\n{sensor_lines}"
            "stages:\n"
            f"  evaluation:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
            f"    command: {py} {E2E / 'fake_eval.py'}\n"
            + (f"    datasets: [{', '.join(datasets)}]\n" if datasets else "") +
            f"  analysis:\n    time: '00:05:00'\n    mem: 200M\n    cpus: 1\n"
            f"    command: {py} {E2E / 'fake_analysis.py'}\n")
        self.env = {"BATON_CONFIG": str(self.config_file), **(extra_env or {})}
        self.cursors: dict[str, str | None] = {}

    def __enter__(self) -> InProcess:
        from dagster import DagsterInstance

        from resources import (
            LedgerResource,
            MLflowResource,
            SharedDriveResource,
            SlurmResource,
        )
        from sensors import build_sensors

        self._saved = {k: os.environ.get(k) for k in (
            *self.env, "SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
            "BATON_SLURM_BACKEND", "MLFLOW_TRACKING_URI")}
        for var in self._saved:
            os.environ.pop(var, None)
        os.environ.update(self.env)
        self.config = load_config()
        self.ledger: Ledger = open_ledger(self.config.ledger_url, init=True)
        self.resources = {
            "slurm": SlurmResource(settings=self.config, backend="local"),
            "ledger": LedgerResource(settings=self.config, url=self.config.ledger_url),
            "drive": SharedDriveResource(settings=self.config, root=str(self.drive.root)),
            "mlflow": MLflowResource(settings=self.config),
        }
        self.sensors = {s.name: s for s in build_sensors(self.config)}
        self.instance = DagsterInstance.ephemeral()
        return self

    def __exit__(self, *exc: object) -> None:
        self.instance.dispose()
        for var, value in self._saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

    # --- what a training run does ---------------------------------------------------------
    def train(self, experiment: str, checkpoints: list[str] | None = None,
              announce: bool = True) -> Path:
        layout = self.drive.experiment(experiment)
        layout.final_dir.mkdir(parents=True, exist_ok=True)
        (layout.final_dir / "model.safetensors").write_bytes(b"\0" * 1024)
        signal = TrainingComplete(
            timestamp=datetime.now(UTC), experiment=experiment, hostname="gpu01",
            user="tester", checkpoint_path=str(layout.final_dir), final_loss=1.5,
            total_steps=100, checkpoints=checkpoints)
        if announce:
            return publish(self.drive, signal)
        from baton.signals import write_signal

        return write_signal(layout.training_signal, signal)  # no inbox marker

    def checkpoint(self, experiment: str, step: int) -> str:
        ckpt = self.drive.experiment(experiment).checkpoint(step)
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "model.safetensors").write_bytes(b"\1" * 64)
        return str(ckpt)

    # --- sensors, as the daemon evaluates them ---------------------------------------------
    def tick(self, sensor: Any, cursor: str | None = None, apply: bool = True) -> Any:
        """Evaluate ``sensor`` (a sensor or its name) once with its last cursor (or
        ``cursor``), then apply what it returned to the instance: new partitions and asset
        events (not with ``apply`` False: a daemon that died before storing them). Returns
        the result (a SensorResult or SkipReason)."""
        from dagster import SensorResult, build_sensor_context

        sensor = self.sensors[sensor] if isinstance(sensor, str) else sensor
        name = sensor.name
        with build_sensor_context(  # the resources' nested settings live in its scope
                instance=self.instance, resources=self.resources,
                cursor=cursor if cursor is not None else self.cursors.get(name)) as context:
            result = sensor(context)
        if isinstance(result, SensorResult) and apply:
            for request in result.dynamic_partitions_requests or []:
                self.instance.add_dynamic_partitions(request.partitions_def_name,
                                                     list(request.partition_keys or []))
            for event in result.asset_events or []:
                self.instance.report_runless_asset_event(event)
            if result.cursor is not None:
                self.cursors[name] = result.cursor
        return result

    def run(self, request: Any, sensor: Any) -> Any:
        """Execute a run request of ``sensor`` (a sensor or its name) as the daemon would
        launch it (its run key tag included), with ``materialize`` over the job's assets."""
        from assets.batches import BATCH_JOBS

        sensor = self.sensors[sensor] if isinstance(sensor, str) else sensor
        tags = {"dagster/run_key": request.run_key, **request.tags}
        batch = {j.name: j for j in BATCH_JOBS}.get(request.job_name or "")
        if batch is not None:  # one run of a batch job (sensors.batch), its config as asked
            return batch.execute_in_process(run_config=request.run_config,
                                            instance=self.instance, resources=self.resources,
                                            tags=tags, raise_on_error=False)
        return self.materialize(self.JOB_ASSETS[request.job_name or sensor.job_name],
                                request.partition_key, tags=tags)

    def materialize(self, assets: tuple[str, ...] | list[str], partition: str | None,
                    tags: dict[str, str] | None = None) -> Any:
        from dagster import materialize

        wanted = [d for name, d in code_location_assets().items() if name in assets]
        return materialize(wanted, partition_key=partition, instance=self.instance,
                           resources=self.resources, tags=tags, raise_on_error=False)

    def materialize_checks(self, checks: list[Any], partition: str) -> Any:
        """Run asset checks on their own for one partition, as the UI's "Execute checks"
        launches them (the partition as a run tag: a run of checks alone selects no asset
        whose partitioning Dagster could validate a partition key against)."""
        from dagster import AssetSelection, materialize

        targets = {key.asset_key.to_user_string() for c in checks for key in c.check_keys}
        specs = [d for name, d in code_location_assets().items() if name in targets]
        return materialize([*specs, *checks], selection=AssetSelection.checks(*checks),
                           tags={"dagster/partition": partition}, instance=self.instance,
                           resources=self.resources, raise_on_error=False)

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 120,
                 between: Callable[[], object] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if between is not None:
                between()
            time.sleep(0.3)

    def check(self, asset: str, check: str, partition: str) -> Any:
        """The latest evaluation of ``asset``'s check ``check`` for ``partition`` stored in
        the instance (an AssetCheckEvaluation), or None."""
        return latest_check(self.instance, asset, check, partition)


# the one-run-per-signal path (``sensors.batch: false``): the tests of the per-partition
# assets as a sensor's run, a UI launch or a backfill runs them for one experiment
PER_SIGNAL = {"batch": "false"}


def per_signal(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``InProcess``'s arguments with the one-run-per-signal path (see PER_SIGNAL)."""
    return {**kwargs, "sensors": {**PER_SIGNAL, **(kwargs.get("sensors") or {})}}


def code_location_assets() -> dict[str, Any]:
    """The assets of definitions.py by name, before Definitions binds its resources."""
    from assets.campaign import campaign_report
    from assets.experiment import (
        analysis_job,
        analysis_report,
        evaluation_job,
        evaluation_metrics,
        model,
    )

    return {"model": model, "evaluation_job": evaluation_job,
            "evaluation_metrics": evaluation_metrics, "analysis_job": analysis_job,
            "analysis_report": analysis_report, "campaign_report": campaign_report}


def latest_check(instance: Any, asset: str, check: str, partition: str) -> Any:
    """The latest stored evaluation of a partition's asset check (AssetCheckEvaluation)."""
    from dagster import AssetCheckKey, AssetKey

    records = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey(asset), check), limit=1000)
    for record in records:  # newest first
        if record.partition == partition and record.event is not None:
            evaluation = record.event.asset_check_evaluation
            if evaluation is not None:
                return evaluation
    return None
