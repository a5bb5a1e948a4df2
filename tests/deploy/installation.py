"""An installation of baton in a temporary folder, made as docs/operator/deployment.md says
(its folders, /etc/baton/env from deploy/baton.env, baton.yaml, deploy/dagster.yaml on
PostgreSQL, `baton db init`, `dagster instance migrate`, `baton alerts render`, the
Prometheus, Alertmanager and exporter configurations), with every path under the folder
and every port a free one, and deploy/supervisord.conf run by a real supervisord."""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import yaml
from sqlalchemy import create_engine, make_url, text

from tests.e2e.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
E2E = ROOT / "tests" / "e2e"
PROGRAMS = ("dagster-daemon", "dagster-webserver", "exporter", "web", "mlflow", "prometheus",
            "alertmanager")
EXPORTER_USER, EXPORTER_PASSWORD = "prometheus", secrets.token_hex(8)


def read_env_file(path: Path) -> dict[str, str]:
    """``VAR=value`` lines, as systemd's EnvironmentFile= reads them (comments skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


class Installation:
    def __init__(self, tmp: Path, postgres_url: str) -> None:
        self.tmp = tmp
        self.etc, self.var, self.log = tmp / "etc-baton", tmp / "var-lib-baton", tmp / "log"
        self.prefix = tmp / "opt-baton"
        for folder in (self.etc, self.var, self.log, self.prefix, tmp / "drive"):
            folder.mkdir(parents=True)
        # the checkout at the prefix, with this Python's environment as its .venv
        for entry in ROOT.iterdir():
            if entry.name not in (".venv", ".git"):
                (self.prefix / entry.name).symlink_to(entry)
        (self.prefix / ".venv").symlink_to(sys.prefix)
        self.pg = make_url(postgres_url)
        token = secrets.token_hex(4)
        self.databases = {"dagster": f"t_dagster_{token}", "ledger": f"t_ledger_{token}"}
        self._admin("CREATE DATABASE {}")
        self.ports = {name: free_port() for name in
                      ("DAGSTER_WEBSERVER_PORT", "BATON_EXPORTER_PORT", "BATON_WEB_PORT",
                       "MLFLOW_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT")}
        ledger = self.pg.set(database=self.databases["ledger"])
        self.env_file = {
            "BATON_CONFIG": str(self.etc / "baton.yaml"),
            "SHARED_DRIVE": str(tmp / "drive"),
            "BATON_DATABASE_URL": ledger.render_as_string(hide_password=False),
            "BATON_LOG_DIR": str(self.log),
            "DAGSTER_HOME": str(self.var / "dagster"),
            "DAGSTER_PG_HOST": self.pg.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.pg.port or 5432),
            "DAGSTER_PG_DB": self.databases["dagster"],
            "DAGSTER_PG_USERNAME": self.pg.username or "",
            "DAGSTER_PG_PASSWORD": self.pg.password or "",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.ports['MLFLOW_PORT']}",
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{self.var / 'mlflow.db'}",
            "MLFLOW_ARTIFACTS_DESTINATION": str(self.var / "mlflow-artifacts"),
            "BATON_PREFIX": str(self.prefix),
            "BATON_USER": getpass.getuser(),
            "BATON_ETC": str(self.etc),
            "BATON_VAR": str(self.var),
            "DAGSTER_WEBSERVER_FLAGS": "--read-only",
            "BATON_EXPORTER_HOST": "127.0.0.1",
            **{name: str(port) for name, port in self.ports.items()},
        }
        self.env = {**{k: v for k, v in os.environ.items()
                       if not k.startswith(("BATON_", "DAGSTER_", "MLFLOW_"))
                       and k != "SHARED_DRIVE"}, **self.env_file}
        self.supervisord: subprocess.Popen[bytes] | None = None
        self.main = tmp / "supervisord.conf"
        self.scrape_job = ""

    def _admin(self, statement: str) -> None:
        engine = create_engine(self.pg.set(drivername="postgresql+psycopg2"),
                               isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for name in self.databases.values():
                    conn.execute(text(statement.format(name)))
        finally:
            engine.dispose()

    def drop_databases(self) -> None:
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")

    def run(self, *argv: str) -> str:
        proc = subprocess.run(argv, cwd=self.prefix, env=self.env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc.stdout

    # --- the documented steps -----------------------------------------------------------
    def configure(self, baton_yaml: str) -> None:
        (self.etc / "baton.yaml").write_text(baton_yaml)
        bindir = self.prefix / ".venv" / "bin"
        self.run(str(bindir / "baton"), "db", "init")
        home = Path(self.env_file["DAGSTER_HOME"])
        home.mkdir(parents=True)
        shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
        self.run(str(bindir / "dagster"), "instance", "migrate")
        self.run(str(bindir / "baton"), "alerts", "render", "--out", str(self.etc / "alerts.yml"))
        # the exporter behind basic auth, and Prometheus scraping it with the password
        hashed = bcrypt.hashpw(EXPORTER_PASSWORD.encode(), bcrypt.gensalt(10)).decode()
        (self.etc / "exporter-web.yml").write_text(
            yaml.safe_dump({"basic_auth_users": {EXPORTER_USER: hashed}}))
        (self.etc / "exporter.password").write_text(EXPORTER_PASSWORD)
        prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        prom["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        prom["rule_files"] = [str(self.etc / "alerts.yml")]
        # the exporter here is plain HTTP behind basic auth (its TLS is tested in
        # tests/exporter/): whatever TLS the shipped scrape job sets is left out
        scrape = prom["scrape_configs"][0]
        scrape.pop("tls_config", None)
        scrape.update(
            scheme="http",
            static_configs=[{"targets": [f"127.0.0.1:{self.ports['BATON_EXPORTER_PORT']}"]}],
            basic_auth={"username": EXPORTER_USER,
                        "password_file": str(self.etc / "exporter.password")})
        self.scrape_job = scrape["job_name"]
        prom["alerting"]["alertmanagers"][0]["static_configs"] = [
            {"targets": [f"127.0.0.1:{self.ports['ALERTMANAGER_PORT']}"]}]
        (self.etc / "prometheus.yml").write_text(yaml.safe_dump(prom))
        shutil.copy(DEPLOY / "alertmanager.yml", self.etc / "alertmanager.yml")

    def start(self) -> None:
        """supervisord on deploy/supervisord.conf, included from a main configuration as
        Debian's /etc/supervisor/supervisord.conf includes conf.d/ (its socket, pid file
        and log here: no root needed)."""
        self.main.write_text(
            f"[unix_http_server]\nfile={self.tmp / 'supervisor.sock'}\nchmod=0700\n\n"
            f"[supervisord]\nlogfile={self.log / 'supervisord.log'}\n"
            f"pidfile={self.tmp / 'supervisord.pid'}\nchildlogdir={self.log}\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{self.tmp / 'supervisor.sock'}\n\n"
            f"[include]\nfiles = {DEPLOY / 'supervisord.conf'}\n")
        self.supervisord = subprocess.Popen(
            ["supervisord", "-n", "-c", str(self.main)], env=self.env, cwd=self.tmp,
            stdout=open(self.log / "supervisord.stdout", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.supervisord and self.supervisord.poll() is None:
            self.supervisord.send_signal(signal.SIGTERM)  # stops every program first
            try:
                self.supervisord.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.supervisord.pid, signal.SIGKILL)
                self.supervisord.wait(30)

    # --- supervisorctl ------------------------------------------------------------------
    def ctl(self, *args: str) -> str:
        proc = subprocess.run(["supervisorctl", "-c", str(self.main), *args], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        return proc.stdout

    def status(self) -> dict[str, tuple[str, int | None]]:
        """program -> (state, pid)."""
        states = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith("baton:"):
                pid = int(parts[3].rstrip(",")) if parts[1] == "RUNNING" else None
                states[parts[0].removeprefix("baton:")] = (parts[1], pid)
        return states

    def wait_for(self, what: str, condition: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.supervisord is not None and self.supervisord.poll() is not None:
                raise AssertionError(f"supervisord exited while waiting for {what}:\n"
                                     + self.tail("supervisord.log"))
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.status()}\n"
                                     + "\n".join(self.tail(f"{p}.out") for p in PROGRAMS))
            time.sleep(1)

    def tail(self, name: str, n: int = 30) -> str:
        path = self.log / name
        lines = path.read_text(errors="replace").splitlines()[-n:] if path.exists() else []
        return f"--- {name}\n" + "\n".join(lines)
