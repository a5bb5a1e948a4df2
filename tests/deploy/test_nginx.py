"""deploy/nginx/baton.conf, run by a real nginx in front of a real `dagster-webserver
--read-only`, a real MLflow server and `baton web --root-path /baton`: without credentials
(or with wrong ones) 401; with them the pages load in Chromium, MLflow's client works
through it and baton web's links resolve through the proxy; plain HTTP is
redirected to HTTPS; a GraphQL mutation that would launch a run or a backfill is refused.
The password hashes nginx is documented to take (bcrypt, SHA-512 crypt, apr1) each let
their user in."""

from __future__ import annotations

import base64
import getpass
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.browser import ARTIFACTS, Page, browser
from tests.e2e.harness import ROOT, Pipeline, free_port
from tests.exporter.web_config_files import bcrypt_hash, self_signed
from tests.web.site import FAILED_LOG, fill

pytestmark = pytest.mark.slow
CONF = ROOT / "deploy" / "nginx" / "baton.conf"
BIN = Path(sys.executable).parent
USERS = {"alice": "alice-bcrypt-pw", "bob": "bob-sha512-pw", "carol": "carol-apr1-pw"}


def htpasswd(path: Path) -> None:
    """One user per hash the configuration names: bcrypt, SHA-512 crypt, apr1."""
    def openssl(kind: str, password: str) -> str:
        return subprocess.run(["openssl", "passwd", kind, "-stdin"], input=password,
                              capture_output=True, text=True, check=True).stdout.strip()

    path.write_text(f"alice:{bcrypt_hash(USERS['alice'])}\n"
                    f"bob:{openssl('-6', USERS['bob'])}\n"
                    f"carol:{openssl('-apr1', USERS['carol'])}\n")


def nginx_conf(folder: Path, ports: dict[str, int]) -> Path:
    """The deployed server configuration with this test's ports, certificate and password
    file, inside the least nginx.conf that runs it unprivileged under ``folder``."""
    text = CONF.read_text()
    swaps = {"listen 80;": f"listen 127.0.0.1:{ports['http']};",
             "listen 443 ssl http2;": f"listen 127.0.0.1:{ports['https']} ssl http2;",
             "127.0.0.1:3000": f"127.0.0.1:{ports['dagster']}",
             "127.0.0.1:5000": f"127.0.0.1:{ports['mlflow']}",
             "127.0.0.1:8090": f"127.0.0.1:{ports['web']}",
             "/etc/nginx/ssl/baton.crt": str(folder / "nginx.crt"),
             "/etc/nginx/ssl/baton.key": str(folder / "nginx.key"),
             "/etc/nginx/baton.htpasswd": str(folder / "htpasswd")}
    for old, new in swaps.items():
        assert text.count(old) == 1, f"{CONF} no longer has {old!r} once"
        text = text.replace(old, new)
    text = "\n".join(line for line in text.splitlines() if "listen [::]" not in line)
    (folder / "baton.conf").write_text(text)
    temp = folder / "temp"
    temp.mkdir()
    main = folder / "nginx.conf"
    main.write_text(
        # as root, workers run as this user too (they read the password file in tmp)
        f"user {getpass.getuser()};\ndaemon off;\nworker_processes 1;\n"
        f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"  access_log {folder / 'access.log'};\n"
        + "".join(f"  {kind}_temp_path {temp / kind};\n"
                  for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {folder / 'baton.conf'};\n}}\n")
    return main


def wait_until(what: str, ok: Callable[[], bool], procs: dict[str, subprocess.Popen],
               folder: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited while waiting for {what}:\n"
                                     + (folder / f"{name}.log").read_text()[-3000:])
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


class Proxy:
    """HTTPS requests to the nginx under test, trusting its self-signed certificate."""

    def __init__(self, port: int, plain_port: int, ca: Path) -> None:
        self.base = f"https://localhost:{port}"
        self.plain_port = plain_port
        self.tls = ssl.create_default_context(cafile=str(ca))

    def get(self, path: str, user: str | None = None, password: str | None = None,
            body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if user is not None:
            headers["Authorization"] = basic(user, password or USERS[user])
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60, context=self.tls) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def up(self, path: str) -> bool:
        try:
            return self.get(path, "alice")[0] == 200
        except OSError:
            return False

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        status, _, raw = self.get("/dagster/graphql", "alice",
                                  body={"query": query, "variables": variables or {}})
        assert status == 200, (status, raw[:2000])
        doc = json.loads(raw)
        assert "errors" not in doc, doc
        return doc["data"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextmanager
def services(tmp: Path) -> Iterator[Proxy]:
    """nginx, the read-only Dagster webserver (on a Dagster instance and baton.yaml of
    ``tmp``), MLflow and baton web (on that baton.yaml's ledger, filled as the pipeline
    leaves it: tests/web/site.py), each in a session of its own."""
    require(shutil.which("nginx") is not None, "nginx is not installed (apt-get install "
            "nginx-light)")
    ports = {name: free_port() for name in ("http", "https", "dagster", "mlflow", "web")}
    pipeline = Pipeline(tmp, "local")
    fill(pipeline.config, pipeline.ledger)
    with (pipeline.home / "dagster.yaml").open("a") as f:
        f.write("nux:\n  enabled: false\n")  # no first-visit pop-up over the screenshot
    self_signed(tmp, "nginx")
    htpasswd(tmp / "htpasswd")
    origin = f"https://localhost:{ports['https']}"  # nginx passes on $host: no port
    commands = {
        "dagster": [str(BIN / "dagster-webserver"), "--read-only", "-h", "127.0.0.1", "-p",
                    str(ports["dagster"]), "--path-prefix", "/dagster", "-w",
                    str(ROOT / "workspace.yaml")],
        "mlflow": [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                   str(ports["mlflow"]), "--workers", "1", "--static-prefix", "/mlflow",
                   "--allowed-hosts", "localhost", "--cors-allowed-origins", origin,
                   "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                   "--default-artifact-root", str(tmp / "mlflow-artifacts")],
        "web": [sys.executable, "-m", "baton", "web", "--host", "127.0.0.1", "--port",
                str(ports["web"]), "--root-path", "/baton"],
        "nginx": ["nginx", "-p", str(tmp), "-c", str(nginx_conf(tmp, ports))],
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands.items():
            with open(tmp / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(argv, cwd=ROOT, env=pipeline.env, stdout=log,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True)
        proxy = Proxy(ports["https"], ports["http"], tmp / "nginx.crt")
        wait_until("the Dagster UI through nginx", lambda: proxy.up("/dagster/server_info"),
                   procs, tmp)
        wait_until("MLflow through nginx", lambda: proxy.up("/mlflow/health"), procs, tmp)
        wait_until("baton web through nginx", lambda: proxy.up("/baton/healthz"), procs, tmp)
        yield proxy
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)


def signed_in(page: Page, user: str) -> None:
    """Every request of the tab carries ``user``'s credentials, and the test's self-signed
    certificate is accepted."""
    page.call("Network.enable")
    page.call("Network.setExtraHTTPHeaders", headers={"Authorization": basic(user,
                                                                            USERS[user])})
    page.call("Security.setIgnoreCertificateErrors", ignore=True)


def shot(page: Page, url: str, name: str, ready: Callable[[str], bool]) -> str:
    shown = page.open(url, ready)
    assert ready(shown), f"{url} did not show what was waited for:\n{shown[-2000:]}"
    ARTIFACTS.mkdir(exist_ok=True)
    data = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, len(data)
    (ARTIFACTS / name).write_bytes(data)
    return shown


def test_nginx_in_front_of_the_read_only_dagster_ui_and_mlflow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with services(tmp_path) as proxy:
        # nothing gets through without the right credentials
        for path in ("/dagster/", "/dagster/graphql", "/mlflow/", "/mlflow/health",
                     "/baton/", "/baton/experiments"):
            status, headers, _ = proxy.get(path)
            assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="baton"', \
                (path, status)
            assert proxy.get(path, "alice", "not-" + USERS["alice"])[0] == 401, path
        plain = http.client.HTTPConnection("127.0.0.1", proxy.plain_port, timeout=30)
        plain.request("GET", "/dagster/runs", headers={"Host": "localhost"})
        moved = plain.getresponse()
        assert (moved.status, moved.getheader("Location")) == (
            301, "https://localhost/dagster/runs"), moved.status  # plain HTTP: to HTTPS
        for user in USERS:  # bcrypt, SHA-512 crypt and apr1 hashes
            assert proxy.get("/dagster/server_info", user)[0] == 200, user

        # baton web under /baton/: its links carry the prefix and resolve through nginx
        status, _, raw = proxy.get("/baton/", "alice")  # redirected to /baton/experiments
        assert status == 200 and 'id="experiments"' in raw.decode(), raw[-2000:]
        status, _, raw = proxy.get("/baton/experiments?name=lr-0.9-broken", "carol")
        page = raw.decode()
        assert status == 200 and 'data-experiment="lr-0.9-broken"' in page, page[-2000:]
        assert 'href="/baton/static/style.css"' in page and 'href="/baton/queue"' in page
        log = re.search(r'href="(/baton/logs/\d+/stderr)"', page)
        assert log, page[-2000:]
        status, _, raw = proxy.get(log.group(1), "bob")
        assert status == 200 and FAILED_LOG.splitlines()[1] in raw.decode(), raw[-2000:]
        assert proxy.get("/baton/static/style.css", "bob")[0] == 200
        assert proxy.get("/baton/queue", "bob")[0] == 200

        # the UI cannot launch anything: reads pass, mutations are refused
        repos = proxy.graphql("{ repositoriesOrError { ... on RepositoryConnection { nodes {"
                              " name location { name } jobs { name } } } } }")
        repo = repos["repositoriesOrError"]["nodes"][0]
        job = next(j["name"] for j in repo["jobs"] if j["name"] == "submit_evaluation")
        selector = {"repositoryLocationName": repo["location"]["name"],
                    "repositoryName": repo["name"]}
        launched = proxy.graphql(
            "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {"
            " __typename ... on UnauthorizedError { message } } }",
            {"p": {"selector": {**selector, "jobName": job}, "runConfigData": {}}})
        assert launched["launchRun"]["__typename"] == "UnauthorizedError", launched
        backfill = proxy.graphql(
            "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p)"
            " { __typename } }",
            {"p": {"selector": {"repositorySelector": selector,
                                "partitionSetName": f"{job}_partition_set"},
                   "partitionNames": ["exp1"]}})
        assert backfill["launchPartitionBackfill"]["__typename"] == "UnauthorizedError", \
            backfill
        runs = proxy.graphql("{ runsOrError { ... on Runs { results { runId } } } }")
        assert runs["runsOrError"]["results"] == [], runs

        # MLflow's own client logs through the proxy with the documented variables
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", USERS["bob"])
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH",
                           str(tmp_path / "nginx.crt"))
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")  # baton's tracker sets 5
        from mlflow.tracking import MlflowClient

        client = MlflowClient(proxy.base + "/mlflow")
        experiment = client.create_experiment("baton/behind-nginx")
        client.create_run(experiment, run_name="training exp1")

        # and the pages load in a browser that sends the credentials
        with browser(tmp_path / "chrome") as page:
            signed_in(page, "alice")
            shown = shot(page, proxy.base + "/dagster/asset-groups", "nginx-dagster.png",
                         lambda dom: "evaluation_metrics" in dom and "analysis_report" in dom)
            assert "evaluation_job" in shown
            shot(page, f"{proxy.base}/mlflow/#/experiments/{experiment}/runs",
                 "nginx-mlflow.png", lambda dom: "training exp1" in dom)
        access = (tmp_path / "access.log").read_text()
        assert " /mlflow/ajax-api/" in access and '"POST /dagster/graphql' in access
