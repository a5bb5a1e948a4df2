"""16. The Dagster UI as the lab grows: 100 / 10,000 / 100,000 experiments (dynamic
partitions of ``experiments``, each with its ``model`` and ``evaluation_job``
materialized), served by a real ``dagster-webserver`` on baton's code location (SQLite
storage). Timed: the GraphQL queries the asset pages make (posted as the UI posts them),
the partitions page of ``evaluation_job`` in headless Chromium until it shows every
partition's status, and the webserver's memory after the pages; each against the same at
100 experiments, so the ratio says how the UI grows with the lab (Dagster's docs advise at
most 100,000 partitions per asset)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from baton.dagster_instance import DEMO_MONITORING, dagster_instance_yaml
from bench import devtools
from bench.common import Result, say, timed
from bench.context import Context
from bench.drive_fill import experiment_name

TITLE = "the Dagster UI at 100 / 10,000 / 100,000 experiments (GraphQL, Chromium, memory)"
BENCH = "16 dagster ui"
ROOT = Path(__file__).resolve().parents[1]
FILLED = ("model", "evaluation_job")  # the others stay unmaterialized: see fill()
CHUNK = 10_000  # experiments per step of the fill (a progress line each)
ASSETS = ("model", "evaluation_job", "evaluation_metrics", "analysis_job",
          "analysis_report", "campaign_report")
PAGE = "/assets/evaluation_job?view=partitions"
QUICK, FULL = [100, 2_000], [100, 10_000, 100_000]  # experiments

# The query texts are the UI's own, as dagster-webserver 1.13.27 bundles them
# (dagster_webserver/webapp/build/_next/static/chunks/*.js, fragments inlined); the page
# at PAGE sends both (Chromium's resource timings list /graphql?op=PartitionHealthQuery
# and op=AssetGraphLiveQuery, which it polls every 5 s, as the catalog at /assets does).
PARTITION_HEALTH = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses {
          ranges { status startTime endTime startKey endKey }
        }
        ... on DefaultPartitionStatuses {
          materializedPartitions materializingPartitions failedPartitions
        }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses {
                ranges { status startTime endTime startKey endKey }
              }
              ... on DefaultPartitionStatuses {
                materializedPartitions materializingPartitions failedPartitions
              }
            }
          }
        }
      }
    }
  }
}"""
ASSET_GRAPH_LIVE = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) {
    id
    ...AssetNodeLiveFragment
  }
  assetsLatestInfo(assetKeys: $assetKeys) {
    id
    assetKey { path }
    unstartedRunIds
    inProgressRunIds
    latestRun { id status startTime endTime }
  }
}

fragment AssetNodeLiveFragment on AssetNode {
  id
  opNames
  repository { id }
  assetKey { path }
  assetMaterializations(limit: 1) { timestamp runId stepKey }
  assetObservations(limit: 1) { timestamp runId stepKey }
  assetChecksOrError {
    ... on AssetChecks {
      checks {
        name
        canExecuteIndividually
        executionForLatestMaterialization {
          id runId status timestamp stepKey
          evaluation { severity }
        }
        partitionDefinition { name description }
        partitionStatuses {
          ... on AssetCheckDefaultPartitionStatuses {
            succeededPartitions failedPartitions inProgressPartitions skippedPartitions
            executionFailedPartitions
          }
          ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
          ... on AssetCheckMultiPartitionStatuses {
            primaryDimensionName
            ranges {
              primaryDimStartKey primaryDimEndKey
              secondaryDim {
                ... on AssetCheckDefaultPartitionStatuses {
                  succeededPartitions failedPartitions inProgressPartitions
                  skippedPartitions executionFailedPartitions
                }
                ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
              }
            }
          }
        }
      }
    }
  }
  partitionStats { numMaterialized numMaterializing numPartitions numFailed }
}"""
QUERIES = {
    "PartitionHealthQuery (evaluation_job)":
        (PARTITION_HEALTH, {"assetKey": {"path": ["evaluation_job"]}}),
    "AssetGraphLiveQuery (6 assets)":
        (ASSET_GRAPH_LIVE, {"assetKeys": [{"path": [a]} for a in ASSETS]}),
}


# --- the fill --------------------------------------------------------------------------
def fill(home: Path, have: int, n: int) -> None:
    """Experiments ``have``..``n``: their partitions, then each one's ``model`` and
    ``evaluation_job`` materialization reported one by one, as the sensors and runs record
    them (public API): some 6 ms an event (20 minutes for 100,000 experiments on the 2-core
    test machine), most of it SQLAlchemy compiling each insert and connecting (SQLite's
    event storage writes no batches). Two assets, not five: five would take 50 minutes,
    and the page timed shows ``evaluation_job``."""
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    instance = DagsterInstance.from_config(str(home))
    started, done, total = time.monotonic(), 0, (n - have) * len(FILLED)
    try:
        for start in range(have, n, CHUNK):
            names = [experiment_name(i) for i in range(start, min(start + CHUNK, n))]
            instance.add_dynamic_partitions("experiments", names)
            for asset, name in itertools.product(FILLED, names):
                instance.report_runless_asset_event(
                    AssetMaterialization(AssetKey(asset), partition=name))
            done += len(names) * len(FILLED)
            say(f"  fill: {done:,}/{total:,} events, {time.monotonic() - started:.0f}s")
    finally:
        instance.dispose()


def staging(ctx: Context) -> Path:
    """Where the fill writes: tmpfs when there is one (the fill is twice as fast without
    the disk's syncs); served() copies it to the disk before the webserver reads it."""
    shm = Path("/dev/shm")
    home = Path(tempfile.mkdtemp(prefix="baton-bench-16-",
                                 dir=shm if shm.is_dir() else ctx.workdir))
    ctx.at_exit(lambda: shutil.rmtree(home, ignore_errors=True))
    (home / "dagster.yaml").write_text(dagster_instance_yaml(DEMO_MONITORING))
    return home


def served(stage: Path, root: Path) -> Path:
    """A copy of the filled DAGSTER_HOME on the disk, as a deployment keeps it."""
    home = root / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(stage, home)
    return home


# --- the webserver ---------------------------------------------------------------------
class Webserver:
    """``dagster-webserver`` on baton's code location and ``home``, as the e2e tests start
    it (tests/e2e/harness.py), in its own process group."""

    def __init__(self, root: Path, home: Path) -> None:
        config = root / "baton.yaml"
        config.write_text(f"shared_drive: {root / 'drive'}\nstate_dir: {root / 'state'}\n")
        (root / "drive").mkdir(exist_ok=True)
        env = {**os.environ, "DAGSTER_HOME": str(home), "BATON_CONFIG": str(config)}
        for var in ("SHARED_DRIVE", "BATON_STATE_DIR", "BATON_DATABASE_URL"):
            env.pop(var, None)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(root / "webserver.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-webserver"), "-w",
                 str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.log = root / "webserver.log"
        self._wait_up()
        self.post("mutation { setNuxSeen }")  # no "join the community" modal on top

    def _wait_up(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2):
                    return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"dagster-webserver did not answer in {timeout:.0f}s")

    def post(self, query: str, variables: dict | None = None) -> int:
        """Post one GraphQL query; returns the reply's size in bytes."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as reply:
            raw = reply.read()
        if "errors" in json.loads(raw):
            raise RuntimeError(f"GraphQL errors: {raw[:2000]!r}")
        return len(raw)

    def rss_mb(self) -> float:
        """Resident memory of the webserver and its code server (the process tree)."""
        import psutil

        top = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [top, *top.children(recursive=True)]) / 1e6

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the measurement -------------------------------------------------------------------
def page_seconds(page: devtools.Page, url: str, n: int) -> float:
    """From navigating to ``url`` until the partitions tab shows every partition counted
    as materialized and the first partition in its list."""
    shown = (f"document.body !== null && document.body.innerText.includes("
             f"'Materialized ({n})') && document.body.innerText.includes("
             f"'{experiment_name(0)}')")
    page.call("Page.navigate", url="about:blank")
    start = time.perf_counter()
    page.call("Page.navigate", url=url)
    deadline = start + devtools.DEADLINE_S
    while not page.evaluate(shown):
        if time.perf_counter() > deadline:
            text = page.evaluate("document.body ? document.body.innerText : ''") or ""
            raise RuntimeError(f"{url} did not show {n:,} materialized partitions in "
                               f"{devtools.DEADLINE_S:.0f}s; it shows: {text[:600]!r}")
        time.sleep(0.05)
    return time.perf_counter() - start


def measure(web: Webserver, root: Path, n: int, repeat: int) -> dict[str, tuple[float, str]]:
    """Each figure at this size: (value, unit). A query's first call after the fill is
    timed apart: it brings Dagster's cached partition status up to date with the new
    events, as the first page after a burst of experiments does."""
    out: dict[str, tuple[float, str]] = {}
    for name, (query, variables) in QUERIES.items():
        start = time.perf_counter()
        size = web.post(query, variables)
        first = time.perf_counter() - start
        seconds = timed(lambda q=query, v=variables: web.post(q, v), repeat=repeat, warmup=0)
        out[f"{name}, first after the fill"] = (first, "s")
        out[name] = (seconds, "s")
        out[f"{name}, reply size"] = (size / 1e3, "KB")
        say(f"  {name}: first {first * 1000:.0f} ms, then {seconds * 1000:.0f} ms, "
            f"{size / 1e3:,.0f} KB")
    executable = devtools.chromium()
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with devtools.browser(root / f"chrome-{n}", executable) as page:
        seconds = timed(lambda: page_seconds(page, web.url + PAGE, n), repeat=repeat)
    out[f"{PAGE} in Chromium until every partition shows"] = (seconds, "s")
    say(f"  {PAGE}: {seconds:.2f} s")
    rss = web.rss_mb()
    out["webserver memory after the pages (RSS, process tree)"] = (rss, "MB")
    say(f"  webserver resident memory {rss:.0f} MB")
    return out


def run(ctx: Context) -> list[Result]:
    sizes = ctx.pick(QUICK, FULL)
    root = ctx.dir("dagster_ui")
    stage = staging(ctx)
    results: list[Result] = []
    base: dict[str, tuple[float, str]] = {}
    have = 0
    for n in sizes:
        say(f"  filling {n:,} experiments ({', '.join(FILLED)} materialized)")
        fill(stage, have, n)
        have = n
        web = Webserver(root, served(stage, root))
        ctx.at_exit(web.stop)
        try:
            figures = measure(web, root, n, repeat=3 if n >= 100_000 else 5)
        finally:
            web.stop()
        base = base or figures
        label = f"{n:,} experiments, SQLite"
        for name, (value, unit) in figures.items():
            baseline = base[name][0] if n != sizes[0] else None
            results.append(Result(BENCH, f"{name}, {label}", value, unit, baseline,
                                  f"{sizes[0]:,} experiments"))
    return results
