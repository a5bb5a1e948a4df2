"""10. ``baton exporter --web-config`` under load: 1,000 requests from 50 concurrent
clients on localhost, each a new connection with basic auth over TLS (a full handshake each
time, as a scrape of this HTTP/1.0 server makes it), against the same command without a web
config (plain HTTP, no auth). Both are the real command in its own process, over the same
ledger; a request that fails or is not 200 is counted, and the run fails unless there are
none. The exporter's own CPU time per request (the clients run on the same two cores)
separates what the server pays from what the load costs the machine."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import psutil

from baton.config import load_config
from baton.ledger import open_ledger
from bench.common import Result, percentile, say
from bench.context import Context

TITLE = "exporter: 1,000 requests from 50 clients with basic auth + TLS vs plain HTTP"
BENCH = "10 exporter web config"
CLIENTS, REQUESTS = 50, 1000
USER, PASSWORD = "prometheus", "bench-password"


def _web_config(root: Path) -> Path:
    """A self-signed certificate for localhost (openssl) and a bcrypt hash of cost 10, as
    `htpasswd -nBC 10` makes it."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(root / "exporter.key"), "-out", str(root / "exporter.crt")],
                   check=True, capture_output=True)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    path = root / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: exporter.crt\n  key_file: exporter.key\n"
                    f"basic_auth_users:\n  {USER}: {hashed}\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Exporter:
    """`baton exporter` in its own process group, up once /healthz answers."""

    def __init__(self, env: dict[str, str], log: Path, tls: ssl.SSLContext | None,
                 *args: str) -> None:
        self.port, self.tls = _free_port(), tls
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "baton", "exporter", "--port", str(self.port), *args],
            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)
        deadline = time.monotonic() + 60
        while self.get("/healthz") != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the exporter did not start: {log.read_text()[-500:]}")
            time.sleep(0.2)

    def get(self, path: str) -> int:
        if self.tls is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "localhost", self.port, timeout=60, context=self.tls)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        try:
            conn.request("GET", path, headers={"Authorization": f"Basic {auth}"})
            response = conn.getresponse()
            response.read()
            return response.status
        except OSError:
            return 0
        finally:
            conn.close()

    def load(self) -> tuple[list[float], int, float]:
        """Seconds of each of REQUESTS requests to /metrics from CLIENTS threads, how many
        failed, and the exporter's CPU seconds per request."""
        def one(_: int) -> tuple[float, bool]:
            t = time.perf_counter()
            ok = self.get("/metrics") == 200
            return time.perf_counter() - t, ok

        for _ in range(5):  # warm up: the first computation, the password check remembered
            self.get("/metrics")
        process = psutil.Process(self.proc.pid)
        cpu = sum(process.cpu_times()[:2])
        with ThreadPoolExecutor(CLIENTS) as pool:
            done = list(pool.map(one, range(REQUESTS)))
        cpu = (sum(process.cpu_times()[:2]) - cpu) / REQUESTS
        return [s for s, _ in done], sum(not ok for _, ok in done), cpu

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


def run(ctx: Context) -> list[Result]:
    root = ctx.dir("exporter_webconfig")
    env = {**os.environ, "SHARED_DRIVE": str(root / "drive"),
           "BATON_STATE_DIR": str(root / "state"), "BATON_SLURM_BACKEND": "local",
           "BATON_CONFIG": "", "BATON_DATABASE_URL": ""}
    config = load_config(None, env)
    config.drive.create()
    ledger = open_ledger(config.ledger_url, init=True)
    for i in range(200):
        ledger.claim_submission(f"k{i}", stage="evaluation", experiment=f"e{i % 20}",
                                backend="local")
    ledger.close()
    web = _web_config(root)
    tls = ssl.create_default_context(cafile=root / "exporter.crt")
    measured = {}
    for name, args, context in (("web config", ("--web-config", str(web)), tls),
                                ("plain", (), None)):
        exporter = _Exporter(env, root / f"{name}.log", context, *args)
        ctx.at_exit(exporter.stop)
        try:
            measured[name] = exporter.load()
        finally:
            exporter.stop()
    (mine, errors, cpu), (base, base_errors, base_cpu) = (measured["web config"],
                                                          measured["plain"])
    say(f"  basic auth + TLS: p50 {statistics.median(mine) * 1000:.1f} ms, p99 "
        f"{percentile(mine, 99) * 1000:.1f} ms, {errors} errors, {cpu * 1000:.2f} ms CPU; "
        f"plain: p50 {statistics.median(base) * 1000:.1f} ms, p99 "
        f"{percentile(base, 99) * 1000:.1f} ms, {base_errors} errors, "
        f"{base_cpu * 1000:.2f} ms CPU")
    if errors or base_errors:
        raise RuntimeError(f"{errors} failed requests with the web config, {base_errors} "
                           "without")
    figure = f"{REQUESTS:,} requests, {CLIENTS} clients"
    plain = "no web config: plain HTTP, no auth"
    return [Result(BENCH, f"{figure}, p50", statistics.median(mine), "s",
                   statistics.median(base), plain),
            Result(BENCH, f"{figure}, p99", percentile(mine, 99), "s",
                   percentile(base, 99), plain),
            Result(BENCH, f"{figure}, failed requests", errors, "requests", base_errors,
                   plain),
            Result(BENCH, f"{figure}, exporter CPU per request", cpu, "s", base_cpu, plain)]
