"""The Grafana dashboard is generated, has the production-dashboard layout, and every
PromQL query in it parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from baton.alert_rules import EXPORTER_UP
from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import open_ledger
from prometheus.dashboards import OUT, dashboard, provisioning, queries
from tests.conftest import require


def test_generated_files_are_up_to_date() -> None:
    assert json.loads((OUT / "dashboards" / "baton.json").read_text()) == dashboard()
    for rel, text in provisioning().items():
        assert (OUT / rel).read_text() == text


def test_layout_and_variables() -> None:
    board = dashboard()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows[:3] == ["Status", "Progress", "Throughput and resources"]
    assert {"Pipeline latency", "Supervision", "Alerts"} <= set(rows)
    titles = {p["title"] for p in board["panels"]}
    for needed in ("Jobs by state", "Completion per campaign", "Active jobs",
                   "Failure rate (1h)", "Progress by campaign and stage",
                   "Jobs finished per hour", "Memory used / requested", "CPU per stage",
                   "Restarts", "Firing alerts", "Active campaigns (priority order)",
                   "Last status of every reporting script", "Supervision decisions (1h)",
                   "Gave up (open)"):
        assert needed in titles
    assert [v["name"] for v in board["templating"]["list"]] == ["stage", "campaign"]
    # the seed's $tag: active campaigns in priority order; "All" is all of those only
    camp = board["templating"]["list"][1]
    assert camp["query"]["query"] == "query_result(sort(baton_campaign_priority))"
    assert "allValue" not in camp and camp["sort"] == 0
    # row 2: one row per campaign, experiment and stage with the seed's five columns
    table = next(p for p in board["panels"] if p["title"] == "Progress by campaign and stage")
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    assert list(organize["indexByName"]) == ["campaign", "experiment", "stage", "expected",
                                             "submitted", "running", "finished", "failed"]
    assert [t["expr"].split('column="')[1].split('"')[0] for t in table["targets"]] == [
        "expected", "submitted", "running", "finished", "failed"]
    active = next(p for p in board["panels"] if p["title"].startswith("Active campaigns"))
    assert {"id": "sortBy", "options": {"sort": [{"field": "priority"}]}} in \
        active["transformations"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool is not installed (apt-get install prometheus)")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"baton:dashboard_query_{i}",
         "expr": q.replace("$stage", ".*").replace("$campaign", ".*")}
        for i, q in enumerate(queries(dashboard()))]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_campaign_filters_every_panel_it_can(config: Config) -> None:
    """A panel whose metric has a campaign label filters by ``$campaign``; any other panel
    says in its description that it is not per campaign. Which metrics have the label is
    read from a real scrape of the exporter (a ledger with a campaign, activated)."""
    ledger = open_ledger(config.ledger_url, init=True)
    ledger.claim_submission("c1", stage="evaluation", experiment="e1", backend="local",
                            campaign="camp")
    ledger.note_campaign("camp", None, "test", config.campaigns)
    ledger.update_campaign("camp", active=True)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(config, ledger, QueueSnapshot(lambda: Counter())))
    with_campaign = {s.name.removesuffix("_bucket") for fam in registry.collect()
                     for s in fam.samples if "campaign" in s.labels}
    assert {"baton_campaign_jobs", "baton_progress_tasks", "baton_campaign_info"} <= \
        with_campaign
    filtered = 0
    for p in dashboard()["panels"]:
        exprs = [t["expr"] for t in p.get("targets", [])]
        if not exprs:
            continue
        names = {n for e in exprs for n in re.findall(r"\b(baton_[a-z_]+)", e)}
        if names & with_campaign:
            assert all('campaign=~"$campaign"' in e for e in exprs
                       if set(re.findall(r"\b(baton_[a-z_]+)", e)) & with_campaign), p["title"]
            filtered += 1
        else:
            assert "Not per campaign:" in p.get("description", ""), p["title"]
    assert filtered >= 5  # row 1 tiles, completion, the two tables


def test_exporter_health_is_on_the_dashboard() -> None:
    exprs = queries(dashboard())
    assert "baton_exporter_component_up" in exprs
    assert EXPORTER_UP in exprs  # the scrape, whatever the job's name
