"""13. ``baton web``'s pages on a ledger of a lab that has run for a while (bench/ledger_fill.py:
12,500 job rows hold 10,000 experiments; 10^6 job rows hold 800,000): each page's time
from request to last byte, served by a real ``baton web`` process (uvicorn, SQLite),
against a plain query per page as the baseline (the one SELECT of the rows the page shows,
through sqlite3, nothing rendered); and the process' resident memory once every page was
served, against the 100 MB it may use."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from baton.config import Config
from baton.ledger import open_ledger
from baton.ledger.schema import OPEN_JOB_SQL
from baton.slurm.states import FAILED_STATES
from bench.common import Result, say, timed
from bench.context import Context
from bench.ledger_fill import fill_range

TITLE = "baton web: each page's time and the server's memory, vs a plain query per page"
BENCH = "13 web pages"
RSS_BUDGET_MB = 100.0
FAILED = ", ".join(f"'{s}'" for s in sorted(FAILED_STATES))
# page -> the plain query of the rows it shows
PAGES = {
    "experiments": "SELECT * FROM training_runs ORDER BY id DESC LIMIT 51",
    "experiments?state=failed": "SELECT * FROM training_runs WHERE status = 'failed' "
                                "ORDER BY id DESC LIMIT 51",
    "experiments?state=waiting": "SELECT * FROM training_runs WHERE experiment_name IN "
                                 "(SELECT experiment FROM supervisions WHERE action = "
                                 "'gave_up') ORDER BY id DESC LIMIT 51",
    "experiments?name=exp-00001": "SELECT * FROM training_runs WHERE experiment_name "
                                  "LIKE '%exp-00001%' ORDER BY id DESC LIMIT 51",
    "queue": f"SELECT * FROM slurm_jobs WHERE {OPEN_JOB_SQL} ORDER BY id LIMIT 101",
    "failures": f"SELECT * FROM slurm_jobs WHERE state IN ({FAILED}) ORDER BY id DESC "
                "LIMIT 51",
    "status": "SELECT project, job, max(reported_at) FROM status_events "
              "GROUP BY project, job ORDER BY project, job LIMIT 101",
    "campaigns": "SELECT * FROM campaigns WHERE active ORDER BY priority",
    "logs/100001/stdout": "SELECT stdout_path FROM slurm_jobs WHERE job_id = '100001'",
}


def _serve(root: Path, config_path: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "BATON_CONFIG": ""}
    proc = subprocess.Popen([sys.executable, "-m", "baton", "--config", str(config_path),
                             "web", "--port", "0", "--refresh", "0"], cwd=root, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.kill()
        raise RuntimeError(f"baton web did not start: {line!r}")
    return proc, line.split()[1].rstrip("/")


def _get(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=120) as reply:
            reply.read()
    except urllib.error.HTTPError as exc:  # the log page of a job with no log: a 404 page
        exc.read()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pages(url: str, db: sqlite3.Connection, label: str) -> list[Result]:
    out = []
    for page, query in PAGES.items():
        ours = timed(lambda page=page: _get(f"{url}/{page}"), repeat=5)
        plain = timed(lambda query=query: db.execute(query).fetchall(), repeat=5)
        out.append(Result(BENCH, f"/{page}, {label}", ours, "s", plain, "plain query"))
        say(f"  /{page}: {ours * 1000:.0f} ms (plain query {plain * 1000:.1f} ms)")
    return out


def run(ctx: Context) -> list[Result]:
    sizes = ctx.pick([12_500], [12_500, 1_000_000])
    root = ctx.dir("web")
    config = Config(shared_drive=root / "drive", state_dir=root)
    config_path = root / "baton.yaml"
    config_path.write_text(f"shared_drive: {config.shared_drive}\nstate_dir: {root}\n")
    results: list[Result] = []
    have = 0
    ledger = open_ledger(config.ledger_url, init=True)
    try:
        for n in sizes:
            say(f"  filling the ledger to {n:,} job rows")
            fill_range(ledger, have, n)
            have = n
            label = f"{n:,} job rows, {n * 4 // 5:,} experiments"
            proc, url = _serve(root, config_path)
            db = sqlite3.connect(f"file:{root / 'ledger.db'}?mode=ro", uri=True)
            try:
                results += _pages(url, db, label)
                rss = _rss_mb(proc.pid)
                results.append(Result(BENCH, f"resident memory after every page, {label}",
                                      rss, "MB", RSS_BUDGET_MB, "budget"))
                say(f"  resident memory {rss:.0f} MB")
            finally:
                db.close()
                proc.terminate()
                proc.wait(30)
    finally:
        ledger.close()
    return results
