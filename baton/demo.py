"""``baton demo``: the whole pipeline on one machine, on the embedded defaults.

Starts the MLflow server, the Dagster daemon and web UI, trains a small campaign of the
example model that differs in one hyperparameter, and lets it flow through evaluation and
analysis (local backend, or real Slurm where ``sbatch`` is on PATH), showing progress."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from baton.config import Config, default_drive, load_config
from baton.errors import BatonError
from baton.example.model import Hyper
from baton.example.train import train_example
from baton.ledger import open_ledger
from baton.ledger import stages as st
from baton.slurm.backend import choose_backend_name

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = (0.05, 0.2, 0.8)


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise BatonError("no free port")


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str
    health: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class Demo:
    home: Path
    once: bool = False
    backend: str = "auto"
    services: list[Service] = field(default_factory=list)

    # --- set-up --------------------------------------------------------------------------
    def write_config(self, mlflow_uri: str) -> Path:
        path = self.home / "baton.yaml"
        path.write_text(
            f"# written by baton demo\nshared_drive: {self.home / 'drive'}\n"
            f"state_dir: {self.home / 'state'}\n"
            f"mlflow:\n  tracking_uri: {mlflow_uri}\n"
            f"slurm:\n  backend: {self.backend}\n  local_max_concurrent: 2\n"
            "sensors:\n  interval_seconds: 2\n  debounce_seconds: 0.5\n"
            "  full_rescan_seconds: 60\n  missing_signal_grace_seconds: 60\n"
            "stages:\n"
            "  evaluation:\n    time: '00:10:00'\n    mem: 1G\n    cpus: 1\n"
            "  analysis:\n    time: '00:10:00'\n    mem: 2G\n    cpus: 1\n")
        return path

    def env(self, config_path: Path, mlflow_uri: str) -> dict[str, str]:
        env = {**os.environ, "BATON_CONFIG": str(config_path),
               "DAGSTER_HOME": str(self.home / "dagster"), "MLFLOW_TRACKING_URI": mlflow_uri,
               "PYTHONUNBUFFERED": "1"}
        for var in ("SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
                    "BATON_SLURM_BACKEND"):
            env.pop(var, None)
        return env

    def start(self, env: dict[str, str], mlflow_port: int, dagster_port: int) -> None:
        bindir = Path(sys.executable).parent
        (self.home / "dagster").mkdir(parents=True, exist_ok=True)
        (self.home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        (self.home / "logs").mkdir(exist_ok=True)
        # create Dagster's storage once, before two processes race to create it
        subprocess.run([str(bindir / "dagster"), "instance", "migrate"], env=env, check=True,
                       capture_output=True, timeout=300)
        state = self.home / "state"
        state.mkdir(exist_ok=True)
        artifacts = self.home / "drive" / "mlflow-artifacts"
        self.services = [
            Service("MLflow", [str(bindir / "mlflow"), "server", "--host", "127.0.0.1",
                               "--port", str(mlflow_port), "--workers", "1",
                               "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
                               "--artifacts-destination", str(artifacts)],
                    f"http://127.0.0.1:{mlflow_port}", "/health"),
            Service("Dagster daemon", [str(bindir / "dagster-daemon"), "run", "-w",
                                       str(ROOT / "workspace.yaml")], "", ""),
            Service("Dagster UI", [str(bindir / "dagster-webserver"), "-w",
                                   str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p",
                                   str(dagster_port)],
                    f"http://127.0.0.1:{dagster_port}", "/server_info"),
        ]
        for svc in self.services:
            svc.log = self.home / "logs" / f"{svc.name.lower().replace(' ', '-')}.log"
            with open(svc.log, "ab") as out:
                svc.proc = subprocess.Popen(svc.argv, cwd=ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        for svc in self.services:
            if svc.health:
                self.wait_healthy(svc)

    def wait_healthy(self, svc: Service, timeout: float = 180) -> None:
        say(f"starting {svc.name} ...")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.proc and svc.proc.poll() is not None:
                raise BatonError(f"{svc.name} exited; see {svc.log}")
            try:
                with urllib.request.urlopen(svc.url + svc.health, timeout=2) as r:
                    if r.status == 200:
                        say(f"{svc.name} is up: {svc.url}")
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise BatonError(f"{svc.name} did not come up within {timeout:.0f}s; see {svc.log}")

    def stop(self) -> None:
        for svc in reversed(self.services):
            if svc.proc and svc.proc.poll() is None:
                os.killpg(svc.proc.pid, signal.SIGTERM)
        for svc in self.services:
            if svc.proc:
                try:
                    svc.proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(svc.proc.pid, signal.SIGKILL)
        say("stopped the MLflow server, the Dagster daemon and the Dagster UI")


def say(message: str) -> None:
    print(f"[demo {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def progress(config: Config, experiments: list[str]) -> dict[str, str]:
    """One phrase per experiment: where it is in the pipeline (from the ledger)."""
    ledger = open_ledger(config.ledger_url)
    out = {}
    for exp in experiments:
        tasks = st.evaluation_tasks(ledger, exp)
        analysis = st.current_analysis(ledger, exp)
        if analysis is not None and analysis.status == "completed" and st.has_fact(
                ledger, f"run:analysis_report:{analysis.trigger_key}"):
            out[exp] = "reported"
        elif analysis is not None and analysis.status == "failed":
            out[exp] = "FAILED (analysis)"
        elif tasks and all(t.status == "failed" for t in tasks):
            out[exp] = "FAILED (evaluation)"
        elif analysis is not None:
            out[exp] = f"analysis {analysis.status}"
        elif tasks:
            done = sum(t.status in ("completed", "failed") for t in tasks)
            out[exp] = f"evaluating {done}/{len(tasks)}"
        elif ledger.training_run(exp):
            out[exp] = "trained"
        else:
            out[exp] = "waiting"
    ledger.close()
    return out


def run_demo(home: Path | None = None, once: bool = False, backend: str = "auto",
             timeout: float = 1800) -> int:
    home = (home or default_drive().parent / "demo").resolve()
    home.mkdir(parents=True, exist_ok=True)
    backend = choose_backend_name(backend)
    demo = Demo(home, once, backend)
    mlflow_port, dagster_port = free_port(5000), free_port(3000)
    mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
    config_path = demo.write_config(mlflow_uri)
    env = demo.env(config_path, mlflow_uri)
    os.environ.update({k: env[k] for k in ("BATON_CONFIG", "DAGSTER_HOME",
                                           "MLFLOW_TRACKING_URI")})
    config = load_config(config_path, env)
    config.drive.create()
    say(f"home {home}; Slurm backend: {backend}")
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        demo.start(env, mlflow_port, dagster_port)
        campaign = "demo-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        experiments = [f"{campaign}-lr{lr:g}".replace(".", "p") for lr in LEARNING_RATES]
        for exp, lr in zip(experiments, LEARNING_RATES, strict=True):
            say(f"training {exp} (learning rate {lr}) ...")
            if train_example(config, exp, Hyper(lr=lr), campaign) is None:
                raise BatonError(f"training {exp} did not write its signal")
        code = watch(config, experiments, campaign, timeout)
        summary(config, demo, experiments, campaign)
        if once:
            return code
        say("everything is still running: browse the UIs; Ctrl-C stops it all")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        demo.stop()
        signal.signal(signal.SIGTERM, previous)


def watch(config: Config, experiments: list[str], campaign: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    table = config.drive.analysis / "campaigns" / campaign / "summary.csv"
    while True:
        now = progress(config, experiments)
        if now != last:
            say("  ".join(f"{e}: {s}" for e, s in now.items()))
            last = now
        failed = [e for e, s in now.items() if s.startswith("FAILED")]
        if all(s == "reported" or s.startswith("FAILED") for s in now.values()) and (
                table.exists() or failed):
            return 1 if failed else 0
        if time.monotonic() > deadline:
            say(f"gave up after {timeout:.0f}s")
            return 2
        time.sleep(2)


def summary(config: Config, demo: Demo, experiments: list[str], campaign: str) -> None:
    for svc in demo.services:
        if svc.url:
            say(f"{svc.name}: {svc.url}")
    for exp in experiments:
        report = config.drive.experiment(exp).reports_dir / "report.html"
        say(f"report {exp}: {report}" + ("" if report.exists() else " (missing)"))
    say(f"campaign table: {config.drive.analysis / 'campaigns' / campaign / 'summary.csv'}")
    say(f"ad-hoc SQL: BATON_CONFIG={config.source} baton sql \"SELECT * FROM jobs\"")
