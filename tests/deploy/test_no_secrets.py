"""No secret in any output: the pipeline runs (in process, local backend) with a
PostgreSQL ledger whose URL carries its password, MLflow behind its basic-auth app reached
with MLFLOW_TRACKING_USERNAME/PASSWORD, and the exporter behind a web config scraped with
its password; then every file the run left (baton's JSON log, signals, rendered job
scripts, job logs, reports), the Dagster event log, `baton config show` and the
exporter's /metrics and log are searched for each password, in every form it could take
(bare, in a URL, base64 in an Authorization header)."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from baton.hook import training_complete
from tests.conftest import require
from tests.dagster_layer.test_asset_checks import (
    analysis_sensor,
    evaluation_sensor,
    join,
    requests_of,
    slurm_tracker,
    submit,
)
from tests.e2e.harness import PER_SIGNAL, InProcess, free_port
from tests.exporter.web_config_files import PASSWORD as SCRAPE_PASSWORD
from tests.exporter.web_config_files import USER as SCRAPE_USER
from tests.exporter.web_config_files import web_config

pytestmark = pytest.mark.slow
MLFLOW_USER, MLFLOW_PASSWORD = "tracker", "mlflow-Pw-7a91c3"
BIN = Path(sys.executable).parent


def forms(user: str, password: str) -> list[str]:
    """How a password shows when it leaks: in a URL, as a libpq or Python mapping key, and
    in a basic-auth header; bare too, when it is long enough not to be a common word."""
    found = [f":{password}@", f"password={password}", f"'password': '{password}'",
             f'"password": "{password}"',
             base64.b64encode(f"{user}:{password}".encode()).decode()]
    return found + ([password] if len(password) >= 12 else [])


def leaks(text: str, wanted: dict[str, list[str]]) -> list[str]:
    return [f"{name} ({form!r})" for name, many in wanted.items() for form in many
            if form in text]


@pytest.fixture
def mlflow_with_auth(tmp_path: Path) -> Iterator[str]:
    """``mlflow server --app-name basic-auth`` whose admin is MLFLOW_USER; its own files
    (the user store, its log) apart from what the test searches."""
    home = tmp_path / "mlflow-server"
    home.mkdir()
    (home / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{home / 'auth.db'}\n"
        f"admin_username = {MLFLOW_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # a password's check (PBKDF2) takes seconds on a loaded machine: once per client
        "auth_cache_ttl_seconds = 600\n")
    port = free_port()
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(home / "auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_PASSWORD,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}  # its CSRF tokens
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--backend-store-uri",
             f"sqlite:///{home / 'mlflow.db'}", "--default-artifact-root",
             str(home / "artifacts")], env=env, cwd=home, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "MLflow did not come up"
                time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


def run_pipeline(site: InProcess) -> None:
    """One experiment from the training hook (which logs its MLflow run) through its
    evaluation and analysis, as the daemon would drive it."""
    final = site.drive.experiment("exp1").final_dir
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"\0" * 1024)
    assert training_complete("exp1", final, final_loss=1.5, total_steps=100,
                             config=site.config) is not None
    submit(site, "exp1")
    assert site.run(join(site, "exp1"), evaluation_sensor).success
    found = []

    def analysed() -> bool:
        found.extend(r for r in requests_of(site.tick(analysis_sensor))
                     if r.job_name == "record_analysis")
        return bool(found)

    site.wait_for("the analysis", analysed, between=lambda: site.tick(slurm_tracker))
    assert site.run(found[0], analysis_sensor).success


def dagster_events(site: InProcess) -> str:
    """Every event the instance stored: each run's log, and the asset events reported
    outside runs (the sensors'), serialized as Dagster stores them."""
    from dagster import AssetRecordsFilter, serialize_value

    instance = site.instance
    parts = [serialize_value(entry) for run in instance.get_runs()
             for entry in instance.all_logs(run.run_id)]
    for key in instance.get_asset_keys():
        for fetch in (instance.fetch_materializations, instance.fetch_observations):
            records = fetch(AssetRecordsFilter(asset_key=key), limit=1000).records
            parts += [serialize_value(r.event_log_entry) for r in records]
    assert any('"mlflow"' in p for p in parts), "no MLflow link in the metadata"
    return "\n".join(parts)


def scrape(env: dict[str, str], folder: Path) -> str:
    """/metrics of the exporter with a web config, on the same ledger, fetched with the
    password (what the exporter logs goes to ``folder``/exporter.out)."""
    web = web_config(folder)
    port = free_port()
    with open(folder / "exporter.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "-v", "exporter", "--port",
                                 str(port), "--web-config", str(web)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    tls = ssl.create_default_context(cafile=str(folder / "exporter.crt"))
    auth = base64.b64encode(f"{SCRAPE_USER}:{SCRAPE_PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"https://localhost:{port}/metrics",
                                     headers={"Authorization": f"Basic {auth}"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10, context=tls) as r:
                    body = r.read().decode()
                if "baton_jobs_finished_total" in body:
                    return body
            except OSError:
                pass
            assert proc.poll() is None, (folder / "exporter.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the exporter served no job metrics"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)
def test_no_secret_in_any_output(ledger_url: str, mlflow_with_auth: str,
                                 tmp_path: Path) -> None:
    db = make_url(ledger_url)
    assert db.password, "the test's PostgreSQL URL has no password to look for"
    wanted = {"the ledger's password": forms(db.username or "", db.password),
              "the MLflow password": forms(MLFLOW_USER, MLFLOW_PASSWORD),
              "the exporter's password": forms(SCRAPE_USER, SCRAPE_PASSWORD)}
    site_dir = tmp_path / "site"
    log_file = site_dir / "logs" / "baton.jsonl"
    env = {"BATON_DATABASE_URL": ledger_url, "MLFLOW_TRACKING_URI": mlflow_with_auth,
           "MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
           # baton's tracker gives MLflow 5 s by default: too few for a loaded CI machine
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "120"}
    # the per-partition assets' path, which the helpers above drive (the batch jobs record
    # through the same functions: assets/batches.py)
    site = InProcess(site_dir, extra_env=env, sensors=PER_SIGNAL)
    with site.config_file.open("a") as f:
        f.write(f"logging:\n  level: DEBUG\n  json_lines: true\n  file: {log_file}\n")
    from baton.logs import setup_logging

    with site:
        setup_logging(site.config.logging)  # as the code location's processes do
        run_pipeline(site)
        events = dagster_events(site)
        cli_env = dict(os.environ)  # the site's, as InProcess set it
        shown = subprocess.run([sys.executable, "-m", "baton", "-v", "config", "show"],
                               env=cli_env, capture_output=True, text=True, timeout=60)
        # the URL is shown, its password masked
        assert shown.returncode == 0 and f"{db.username}:***@" in shown.stdout, shown
        metrics = scrape(cli_env, tmp_path)
    assert log_file.is_file() and '"experiment": "exp1"' in log_file.read_text()
    outputs = {"baton config show": shown.stdout + shown.stderr, "Dagster's event log": events,
               "the exporter's /metrics": metrics}
    skip = tmp_path / "mlflow-server"  # MLflow's own store, not baton's output
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and skip not in path.parents:
            outputs[str(path.relative_to(tmp_path))] = path.read_bytes().decode(
                errors="replace")
    assert any(name.endswith(".sh") for name in outputs), sorted(outputs)
    found = {name: where for name, text in outputs.items() if (where := leaks(text, wanted))}
    assert found == {}, found


WRONG = "Wrong-Pw-5e0d1b"
BAD_LEDGER_URLS = {  # each with WRONG as its password
    "refused": lambda url: make_url(url).set(password=WRONG).render_as_string(
        hide_password=False),
    "port-not-a-number": lambda url: f"postgresql://baton:{WRONG}@127.0.0.1:port/baton",
    "no-scheme": lambda url: f"baton:{WRONG}@127.0.0.1/baton",
}


@pytest.mark.parametrize("kind", BAD_LEDGER_URLS)
def test_a_bad_ledger_url_names_no_password(kind: str, tmp_path: Path) -> None:
    """A ledger URL that the server refuses, or that cannot be read: each command that
    opens the ledger says so in one line with the password masked, and `baton config
    show` shows the URL masked."""
    url = os.environ.get("BATON_TEST_POSTGRES_URL")
    require(url is not None, "BATON_TEST_POSTGRES_URL is not set")
    assert url is not None
    env = {**os.environ, "BATON_CONFIG": "", "SHARED_DRIVE": str(tmp_path / "drive"),
           "BATON_STATE_DIR": str(tmp_path / "state"),
           "BATON_DATABASE_URL": BAD_LEDGER_URLS[kind](url)}

    def baton(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "baton", *argv], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    for argv in (["db", "check"], ["status", "list"], ["sql", "SELECT 1"]):
        proc = baton(*argv)
        assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, (argv, proc)
        assert "***@" in proc.stderr and WRONG not in proc.stdout + proc.stderr, (argv, proc)
    shown = baton("config", "show")
    assert shown.returncode == 0 and "***@" in shown.stdout, shown
    assert WRONG not in shown.stdout + shown.stderr


def test_an_mlflow_uri_with_a_password_is_refused(tmp_path: Path) -> None:
    """A password in the tracking URI would be copied into every job script, every MLflow
    link of the Dagster metadata and `baton config show`: it is refused, naming the
    variables that carry it instead, and not echoed."""
    env = {**os.environ, "BATON_CONFIG": "", "SHARED_DRIVE": str(tmp_path / "drive"),
           "BATON_STATE_DIR": str(tmp_path / "state"),
           "MLFLOW_TRACKING_URI": "https://tracker:Sekr1t-Pw-2f7c@mlflow.lab.example/"}
    proc = subprocess.run([sys.executable, "-m", "baton", "config", "show"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == "", proc
    [line] = proc.stderr.splitlines()
    assert "mlflow.tracking_uri" in line and "MLFLOW_TRACKING_PASSWORD" in line, line
    assert "Sekr1t-Pw-2f7c" not in line
