"""``baton demo``: the whole pipeline on one machine, on the embedded defaults.

Starts the MLflow server, the Dagster daemon and web UI, the metrics exporter and the
status pages (``baton web``), trains a small campaign of the example model that differs in
one hyperparameter, and lets it flow through evaluation and analysis (local backend, or
real Slurm where ``sbatch`` is on PATH), showing progress. Ctrl-C cancels the demo's
unfinished Slurm jobs, then stops the services."""

from __future__ import annotations

import contextlib
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
from baton.dagster_instance import DEMO_MONITORING, dagster_instance_yaml
from baton.demo_processes import demo_processes, killpg
from baton.errors import BatonError
from baton.example.model import Hyper
from baton.example.train import train_example
from baton.ledger import open_ledger
from baton.slurm.backend import choose_backend_name

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = (0.05, 0.2, 0.8)
PHASES = ("waiting", "trained", "evaluating", "analysis", "reported")
EVAL_CONFIG_MARK = "# written by baton demo --fail-dataset"


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
    url: str  # what the user opens ("" when there is nothing to open)
    health: str  # the URL that answers 200 when the service is up ("": none)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class Demo:
    home: Path
    once: bool = False
    backend: str = "auto"
    fail_dataset: str | None = None
    services: list[Service] = field(default_factory=list)
    config: Config | None = None

    # --- set-up --------------------------------------------------------------------------
    def write_config(self, mlflow_uri: str, dagster_url: str, web_url: str) -> Path:
        """The demo's baton.yaml; the UIs' addresses make the links between them (the
        report's and the status pages' to Dagster, the Dagster metadata's to the pages)."""
        path = self.home / "baton.yaml"
        path.write_text(
            f"# written by baton demo\nshared_drive: {self.home / 'drive'}\n"
            f"state_dir: {self.home / 'state'}\n"
            f"mlflow:\n  tracking_uri: {mlflow_uri}\n"
            f"dagster:\n  url: {dagster_url}\nweb:\n  url: {web_url}\n"
            f"slurm:\n  backend: {self.backend}\n  local_max_concurrent: 2\n"
            # the demo's cluster is its own: a faster call budget than a shared site's
            "  calls_per_second: 5\n  calls_burst: 50\n"
            "sensors:\n  interval_seconds: 2\n  debounce_seconds: 0.5\n"
            "  full_rescan_seconds: 60\n  missing_signal_grace_seconds: 60\n"
            "stages:\n"
            "  evaluation:\n    time: '00:10:00'\n    mem: 1G\n    cpus: 1\n"
            "  analysis:\n    time: '00:10:00'\n    mem: 2G\n    cpus: 1\n")
        return path

    def write_eval_config(self, config: Config) -> None:
        """With ``--fail-dataset``, the drive's eval.yaml makes the example evaluator fail
        on that dataset (to see what a failure looks like); without it, a file an earlier
        demo wrote there is removed."""
        path = config.drive.config / "evaluation" / "base_eval.yaml"
        if self.fail_dataset:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{EVAL_CONFIG_MARK}\nevaluator: example\n"
                            f"options:\n  fail_dataset: {self.fail_dataset}\n")
        elif path.is_file() and path.read_text().startswith(EVAL_CONFIG_MARK):
            path.unlink()

    def env(self, config_path: Path, mlflow_uri: str) -> dict[str, str]:
        env = {**os.environ, "BATON_CONFIG": str(config_path),
               "DAGSTER_HOME": str(self.home / "dagster"), "MLFLOW_TRACKING_URI": mlflow_uri,
               "PYTHONUNBUFFERED": "1"}
        for var in ("SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL",
                    "BATON_SLURM_BACKEND"):
            env.pop(var, None)
        return env

    def start(self, env: dict[str, str], mlflow_port: int, dagster_port: int,
              exporter_port: int, web_port: int) -> None:
        bindir = Path(sys.executable).parent
        (self.home / "dagster").mkdir(parents=True, exist_ok=True)
        (self.home / "dagster" / "dagster.yaml").write_text(
            dagster_instance_yaml(DEMO_MONITORING))
        (self.home / "logs").mkdir(exist_ok=True)
        # create Dagster's storage once, before two processes race to create it
        subprocess.run([str(bindir / "dagster"), "instance", "migrate"], env=env, check=True,
                       capture_output=True, timeout=300)
        state = self.home / "state"
        state.mkdir(exist_ok=True)
        artifacts = self.home / "drive" / "mlflow-artifacts"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        dagster_url = f"http://127.0.0.1:{dagster_port}"
        exporter_url = f"http://127.0.0.1:{exporter_port}/metrics"
        web_url = f"http://127.0.0.1:{web_port}"
        self.services = [
            Service("MLflow", [str(bindir / "mlflow"), "server", "--host", "127.0.0.1",
                               "--port", str(mlflow_port), "--workers", "1",
                               "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
                               "--artifacts-destination", str(artifacts)],
                    mlflow_url, mlflow_url + "/health"),
            Service("Dagster daemon", [str(bindir / "dagster-daemon"), "run", "-w",
                                       str(ROOT / "workspace.yaml")], "", ""),
            Service("Dagster UI", [str(bindir / "dagster-webserver"), "-w",
                                   str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p",
                                   str(dagster_port)],
                    dagster_url, dagster_url + "/server_info"),
            Service("metrics exporter", [sys.executable, "-m", "baton", "exporter", "--host",
                                         "127.0.0.1", "--port", str(exporter_port)],
                    exporter_url, exporter_url),
            Service("status pages", [sys.executable, "-m", "baton", "web", "--host",
                                     "127.0.0.1", "--port", str(web_port)],
                    web_url + "/", web_url + "/healthz"),
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
                with urllib.request.urlopen(svc.health, timeout=2) as r:
                    if r.status == 200:
                        say(f"{svc.name} is up: {svc.url}")
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise BatonError(f"{svc.name} did not come up within {timeout:.0f}s; see {svc.log}")

    # --- tear-down -----------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel the demo's unfinished Slurm jobs first (they would run on while the
        services take their time to stop), then stop the services (the daemon first:
        nothing new is submitted), cancel what a run submitted in between, and wait for
        every process of the demo to end."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits
        try:
            if self.config is not None:
                cancel_unfinished(self.config)
            self._stop_services()
            if self.config is not None:
                cancel_unfinished(self.config, quiet=True)
            self._sweep()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_services(self) -> None:
        started = [svc for svc in self.services if svc.proc]
        for svc in sorted(started, key=lambda s: s.name != "Dagster daemon"):
            if svc.proc and svc.proc.poll() is None:
                killpg(svc.proc.pid, signal.SIGTERM)
        for svc in started:
            assert svc.proc
            try:
                svc.proc.wait(30)
            except subprocess.TimeoutExpired:
                killpg(svc.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    svc.proc.wait(10)
            killpg(svc.proc.pid, signal.SIGKILL)  # what the service left in its group
        if started:
            say("stopped the services: " + ", ".join(svc.name for svc in started))

    def _sweep(self, timeout: float = 60) -> None:
        """Wait for the processes still carrying the demo's home (job steps Slurm is
        killing, a Dagster run worker) to end; after ``timeout``, end them."""
        deadline = time.monotonic() + timeout
        left = demo_processes(self.home)
        if left:
            say(f"waiting for {len(left)} process(es) of the demo to end ...")
        while left and time.monotonic() < deadline:
            time.sleep(1)
            left = demo_processes(self.home)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not left:
                return
            say(f"ending {len(left)} leftover process(es): " + ", ".join(
                f"{pid} ({cmd[:60]})" for pid, cmd in left.items()))
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(5)
            left = demo_processes(self.home)
        if left:
            say(f"could not end: {', '.join(map(str, left))}")


def cancel_unfinished(config: Config, timeout: float = 60, quiet: bool = False) -> list[str]:
    """Cancel, through the Slurm backend, the jobs the ledger still has as unfinished, and
    wait (at most ``timeout``) until the backend says they ended. Returns their ids.
    ``quiet``: say nothing when there is nothing to cancel."""
    from baton.slurm.factory import make_backend

    try:
        ledger = open_ledger(config.ledger_url)
        try:
            ids = [r.job_id for r in ledger.unfinished_jobs(settle_seconds=0)]
        finally:
            ledger.close()
        backend = make_backend(config) if ids else None
        live = [j for j, s in backend.status(ids).items() if not s.terminal] if backend else []
        if backend is None or not live:
            if not quiet:
                say("no unfinished Slurm jobs to cancel")
            return []
        backend.cancel(live)
        say(f"cancelled {len(live)} unfinished Slurm job(s) of the demo ({backend.name}): "
            + ", ".join(live))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.terminal for s in backend.status(live).values()):
                break
            time.sleep(1)
        else:
            say(f"the cancelled jobs had not all ended after {timeout:.0f}s")
        return live
    except Exception as exc:  # stopping goes on: say what could not be done
        say(f"could not cancel the demo's unfinished Slurm jobs: {exc}")
        return []


def say(message: str) -> None:
    print(f"[demo {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Failed:
    """One failed stage of one experiment: what, why, and whether the why is the stage's
    own word (its signal) rather than Slurm's (the job failed; its signal may follow)."""

    subject: str  # "evaluation of checkpoint-400", "analysis"
    reason: str
    final: bool = True


@dataclass
class Progress:
    """Where one experiment is, from the ledger."""

    phase: str = "waiting"
    tasks: int = 0
    done: int = 0
    failed: list[Failed] = field(default_factory=list)
    analysis: str | None = None  # the analysis row's status

    def text(self, phase: str | None = None) -> str:
        phase = phase or self.phase
        if phase == "evaluating":
            evals = sum(f.subject != "analysis" for f in self.failed)
            return f"evaluating {self.done}/{self.tasks}" + (f" ({evals} failed)" if evals
                                                              else "")
        if phase == "analysis":
            return f"analysis {self.analysis or 'queued'}"
        return phase

    @property
    def finished(self) -> bool:
        """Nothing more will happen to it."""
        return self.phase == "reported" or self.analysis == "failed" or (
            self.tasks > 0 and self.done == self.tasks and len(self.failed) == self.tasks
            and self.analysis is None)


def _short(text: str | None, limit: int = 300) -> str:
    text = " ".join((text or "no error message").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def progress(config: Config, experiments: list[str]) -> dict[str, Progress]:
    """Where each experiment is in the pipeline, and what failed (from the ledger)."""
    ledger = open_ledger(config.ledger_url)
    out = {}
    try:
        for exp in experiments:
            tasks = ledger.evaluation_tasks(exp)
            analysis = ledger.current_analysis(exp)
            p = Progress(tasks=len(tasks),
                         done=sum(t.status in ("completed", "failed") for t in tasks),
                         failed=[Failed(f"evaluation of {Path(t.checkpoint_path or '?').name}",
                                        _short(t.error_message),
                                        bool((t.metadata or {}).get("signal")))
                                 for t in tasks if t.status == "failed"])
            if analysis is not None:
                p.analysis = analysis.status
                if analysis.status == "failed":
                    p.failed.append(Failed("analysis", _short(analysis.error_message)))
            if analysis is not None and analysis.status == "completed" and ledger.has_fact(
                    f"run:analysis_report:{analysis.trigger_key}"):
                p.phase = "reported"
            elif analysis is not None:
                p.phase = "analysis"
            elif tasks:
                p.phase = "evaluating"
            elif ledger.training_run(exp):
                p.phase = "trained"
            out[exp] = p
    finally:
        ledger.close()
    return out


def run_demo(home: Path | None = None, once: bool = False, backend: str = "auto",
             timeout: float = 1800, fail_dataset: str | None = None) -> int:
    home = (home or default_drive().parent / "demo").resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission: nothing else is started
        raise BatonError(f"demo home {home}: cannot make it a folder: "
                         f"{exc.strerror or exc}") from None
    backend = choose_backend_name(backend)
    demo = Demo(home, once, backend, fail_dataset)
    mlflow_port, dagster_port = free_port(5000), free_port(3000)
    exporter_port, web_port = free_port(9108), free_port(8090)
    mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
    config_path = demo.write_config(mlflow_uri, f"http://127.0.0.1:{dagster_port}",
                                    f"http://127.0.0.1:{web_port}")
    env = demo.env(config_path, mlflow_uri)
    os.environ.update({k: env[k] for k in ("BATON_CONFIG", "DAGSTER_HOME",
                                           "MLFLOW_TRACKING_URI")})
    config = load_config(config_path, env)
    config.drive.create()
    open_ledger(config.ledger_url, init=True).close()  # the demo creates its own ledger
    demo.write_eval_config(config)
    say(f"home {home}; Slurm backend: {backend}"
        + (f"; the evaluator fails on {fail_dataset} (--fail-dataset)" if fail_dataset else ""))
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    # Ctrl-C stops the demo even when it was started where SIGINT is ignored (a shell's
    # background job, nohup): Python then installs no handler of its own
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        demo.start(env, mlflow_port, dagster_port, exporter_port, web_port)
        urls(demo)
        demo.config = config  # from here on, stopping cancels the demo's jobs
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
        if code == 0:
            say("everything is still running: browse the UIs; Ctrl-C stops it all")
        else:
            say(f"the pipeline {'FAILED' if code == 1 else 'did not finish in time'}; the "
                "services are still running so you can look at it in the UIs; Ctrl-C stops "
                "it all")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("interrupted: stopping ...")
        return 130
    finally:
        demo.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def watch(config: Config, experiments: list[str], campaign: str, timeout: float,
          signal_grace: float = 30) -> int:
    """Print each experiment's progress as it changes (a phase passed between two looks
    is printed too) and each failure once, with the stage's own reason (a failed job's
    signal may land a moment after Slurm said it failed: up to ``signal_grace`` seconds);
    0 when every report and the campaign table are written, 1 when anything failed, 2 on
    timeout."""
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    reached: dict[str, int] = {}
    failures: dict[tuple[str, str], str] = {}  # (experiment, subject) -> reason, printed
    first_seen: dict[tuple[str, str], float] = {}
    table = config.drive.analysis / "campaigns" / campaign / "summary.csv"
    while True:
        now = progress(config, experiments)
        waiting = False
        for exp, p in now.items():
            index = PHASES.index(p.phase)
            for passed in PHASES[reached.get(exp, 0) + 1:index]:
                if passed in ("evaluating", "analysis"):
                    say(f"{exp}: {p.text(passed)}")
            reached[exp] = max(reached.get(exp, 0), index)
            if p.text() != shown.get(exp):
                say(f"{exp}: {p.text()}")
                shown[exp] = p.text()
            for f in p.failed:
                key = (exp, f.subject)
                first_seen.setdefault(key, time.monotonic())
                ripe = f.final or time.monotonic() - first_seen[key] > signal_grace
                if key not in failures and ripe:
                    say(f"FAILED {exp}: {f.subject} failed: {f.reason}")
                    failures[key] = f.reason
                waiting = waiting or key not in failures
        if all(p.finished for p in now.values()) and not waiting and (
                table.exists() or failures):
            if failures:
                say(f"the pipeline did not finish cleanly: {len(failures)} failure(s):")
                for (exp, subject), reason in failures.items():
                    say(f"  {exp}: {subject} failed: {reason}")
                return 1
            return 0
        if time.monotonic() > deadline:
            say(f"gave up after {timeout:.0f}s: " + "  ".join(
                f"{e}: {p.text()}" for e, p in now.items()))
            return 2
        time.sleep(2)


def urls(demo: Demo) -> None:
    for svc in demo.services:
        if svc.url:
            say(f"{svc.name}: {svc.url}")


def summary(config: Config, demo: Demo, experiments: list[str], campaign: str) -> None:
    urls(demo)
    for exp in experiments:
        report = config.drive.experiment(exp).reports_dir / "report.html"
        say(f"report {exp}: {report}" + ("" if report.exists() else " (missing)"))
    say(f"campaign table: {config.drive.analysis / 'campaigns' / campaign / 'summary.csv'}")
    say(f"ad-hoc SQL: BATON_CONFIG={config.source} baton sql \"SELECT * FROM jobs\"")
