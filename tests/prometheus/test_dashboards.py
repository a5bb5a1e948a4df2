"""The Grafana dashboard is generated with Grafana's builder library, has the
production-dashboard layout and colors, and every PromQL query in it parses and runs on a
real Prometheus with real values of the dashboard's variables in it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, start_http_server

from baton.alert_rules import EXPORTER_UP
from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.exporter.dashboard import DASHBOARD_STATES
from baton.exporter.schedule import NOTE_CHARS, note
from baton.ledger import Ledger, open_ledger
from baton.slurm.states import JobStatus
from prometheus.dashboards import OUT, dashboard, provisioning, queries
from prometheus.panels import STATE_COLORS
from prometheus.sdk import JSONEncoder, dm, register_default_plugins
from tests.conftest import require
from tests.e2e.harness import free_port
from tests.prometheus.grafana_variables import instant_query, substitute, variable_values
from tests.prometheus.server import start_prometheus

STARTED = datetime(2026, 1, 5, tzinfo=UTC)
NOTES = "node gpu07 drained;\n rerun lr 0.8 after the fix"


def scheduled(config: Config, ledger: Ledger, tag: str, **values: object) -> None:
    """An active campaign with the curators' schedule and notes, and one finished job."""
    ledger.claim_submission("c1", stage="evaluation", experiment="e1", backend="local",
                            campaign=tag)
    done = ledger.claim_submission("c2", stage="evaluation", experiment="e2",
                                   backend="sbatch", campaign=tag)
    ledger.mark_submitted(done.row_id, "902", submitted_at=STARTED)
    ledger.apply_statuses({"902": JobStatus(job_id="902", state="COMPLETED")})
    ledger.note_campaign(tag, None, "test", config.campaigns)
    ledger.update_campaign(tag, active=True, started_at=STARTED, notes=NOTES,
                           expected_end=datetime.now(UTC) + timedelta(days=30), **values)


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
    assert camp["query"]["query"].startswith("query_result(sort(baton_campaign_priority ")
    assert "allValue" not in camp and camp["sort"] == 0
    # row 2: one row per campaign, experiment and stage with the seed's five columns, and
    # the finished and failed shares of the expected tasks
    table = next(p for p in board["panels"] if p["title"] == "Progress by campaign and stage")
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    index = organize["indexByName"]
    assert sorted(index, key=index.__getitem__) == ["campaign", "experiment", "stage", "expected",
                                             "submitted", "running", "finished", "failed",
                                             "finished %", "failed %"]
    assert [t["expr"].split('column="')[1].split('"')[0] for t in table["targets"]] == [
        "expected", "submitted", "running", "finished", "failed", "finished", "failed"]
    active = next(p for p in board["panels"] if p["title"].startswith("Active campaigns"))
    assert {"id": "sortBy", "options": {"sort": [{"field": "priority"}]}} in \
        active["transformations"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def overrides(panel: dict) -> dict[str, dict[str, object]]:
    """A panel's field overrides by field name: {property id: value}."""
    return {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
            for o in panel["fieldConfig"]["overrides"]}


def test_colors_names_and_schema() -> None:
    """The production-dashboard design's colors (a tile per state in its color; finished
    cells scale green, failed cells red), display names in titles, and JSON that Grafana's
    own models read back unchanged at the SDK's schema version."""
    board = dashboard()
    by_title = {p["title"]: p for p in board["panels"]}
    tiles = by_title["Jobs by state"]
    assert tiles["options"]["colorMode"] == "background"
    assert set(STATE_COLORS) == set(DASHBOARD_STATES)
    assert {state: o["color"] for state, o in overrides(tiles).items()} == {
        state: {"mode": "fixed", "fixedColor": color} for state, color in STATE_COLORS.items()}
    assert STATE_COLORS["failed"] == "red" and STATE_COLORS["finished"] == "green"
    # tiles of what needs a person red from 1; an exporter part or scrape down (0) red
    for title, steps in (("Gave up (open)", [("green", None), ("red", 1)]),
                         ("Exporter parts up", [("red", None), ("green", 1)])):
        thresholds = by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [(t["color"], t["value"]) for t in thresholds] == steps, title
    cells = overrides(by_title["Progress by campaign and stage"])
    for column, scheme in (("finished %", "continuous-greens"), ("failed %", "continuous-reds")):
        assert cells[column]["color"] == {"mode": scheme}
        assert cells[column]["custom.cellOptions"]["type"] == "color-background"
        assert (cells[column]["min"], cells[column]["max"], cells[column]["unit"]) == \
            (0, 100, "percent")
    # one panel per active campaign, titled with its display name (the variable's text)
    repeated = [p for p in board["panels"] if p.get("repeat") == "campaign"]
    assert [p["title"] for p in repeated] == ["${campaign:text}"]
    assert "{{display_name}}" in [t["legendFormat"] for t in
                                  by_title["Completion per campaign"]["targets"]]
    register_default_plugins()
    model = dm.Dashboard.from_json(board)
    assert json.loads(JSONEncoder(sort_keys=True).encode(model)) == board
    assert board["schemaVersion"] == dm.Dashboard().schema_version


def test_every_query_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool is not installed (apt-get install prometheus)")
    # as Grafana sends them: several values of a variable as a regex alternation
    values = {"stage": ["evaluation", "analysis"], "campaign": ["sweep.lr", "base"]}
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"baton:dashboard_query_{i}", "expr": substitute(q, values)}
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
    scheduled(config, ledger, "camp")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(config, ledger, QueueSnapshot(lambda: Counter())))
    with_campaign = {s.name.removesuffix("_bucket") for fam in registry.collect()
                     for s in fam.samples if "campaign" in s.labels}
    assert {"baton_campaign_jobs", "baton_progress_tasks", "baton_campaign_info",
            "baton_campaign_started_timestamp_seconds", "baton_campaign_notes_info",
            "baton_campaign_expected_end_timestamp_seconds"} <= with_campaign
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


def test_notes_are_one_short_line() -> None:
    assert note(NOTES) == "node gpu07 drained; rerun lr 0.8 after the fix"
    long = note("x " * 500)
    assert len(long) == NOTE_CHARS and long.endswith("…")


def test_schedule_and_notes_on_the_dashboard() -> None:
    """ETA and progress from started_at / expected_end beside completion; the notes as a
    column whose whole text shows on hover, and in the plan's tooltips."""
    board = dashboard()
    by_title = {p["title"]: p for p in board["panels"]}
    active = by_title["Active campaigns (priority order)"]
    index = next(t for t in active["transformations"] if t["id"] == "organize"
                 )["options"]["indexByName"]
    assert sorted(index, key=index.__getitem__) == [
        "campaign", "type", "display_name", "priority", "completion", "expected", "started",
        "expected end", "time gone", "time left", "projected end", "notes"]
    cells = overrides(active)
    assert cells["notes"]["custom.inspect"] is True
    assert cells["projected end"]["unit"] == cells["started"]["unit"] == "dateTimeAsIso"
    exprs = [t["expr"] for t in active["targets"]]
    assert any("baton_campaign_expected_end_timestamp_seconds" in e and "time()" in e
               for e in exprs)
    repeated = next(p for p in board["panels"] if p.get("repeat") == "campaign")
    assert [t["legendFormat"] for t in repeated["targets"]] == ["completion", "time gone"]
    assert "not exported" not in json.dumps(board)


def test_exporter_health_is_on_the_dashboard() -> None:
    exprs = queries(dashboard())
    assert "baton_exporter_component_up" in exprs
    assert EXPORTER_UP in exprs  # the scrape, whatever the job's name


def test_variables_and_queries_on_a_real_prometheus(config: Config, tmp_path: Path) -> None:
    """A real Prometheus scrapes the exporter's collector on a ledger with an active
    campaign: each variable's own query gives its options (the campaign by its tag, shown
    by its display name; the stages), and every panel query runs with those values in it;
    each one filtered by ``$campaign`` finds the campaign's series."""
    require(shutil.which("prometheus") is not None,
            "prometheus is not installed (apt-get install prometheus)")
    tag, name = "sweep.lr-2", "Sweep (lr) #2"  # a dot to escape, a display name to show
    ledger = open_ledger(config.ledger_url, init=True)
    scheduled(config, ledger, tag, display_name=name)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(config, ledger, QueueSnapshot(lambda: Counter())))
    exporter_port, prom_port = free_port(), free_port()
    server, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    prom = start_prometheus(tmp_path, {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "baton", "static_configs": [
            {"targets": [f"127.0.0.1:{exporter_port}"]}]}]}, prom_port)
    query = instant_query(f"http://127.0.0.1:{prom_port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if query("baton_campaign_info"):
                    break
            except OSError:  # not listening yet
                pass
            assert time.monotonic() < deadline, "Prometheus scraped nothing in 60 s"
            time.sleep(0.5)
        board = dashboard()
        options = {v["name"]: variable_values(v, query) for v in board["templating"]["list"]}
        assert options["campaign"] == [(name, tag)]
        assert "evaluation" in [value for _, value in options["stage"]]
        values = {var: [value for _, value in opts] for var, opts in options.items()}
        for expr in queries(board):
            result = query(substitute(expr, values))
            if "$campaign" in expr:
                assert result, expr
        completion = next(t["expr"] for p in board["panels"] for t in p.get("targets", [])
                          if p["title"] == "Completion per campaign")
        assert [r["metric"]["display_name"] for r in query(substitute(completion, values))
                ] == [name]
        # the schedule: started and expected end exported; time gone, time left and the
        # projected end (ETA) computed from them; the notes a label the tooltips show
        [started] = query("baton_campaign_started_timestamp_seconds")
        assert float(started["value"][1]) == STARTED.timestamp()
        by_title = {p["title"]: p for p in board["panels"]}
        active = by_title["Active campaigns (priority order)"]
        columns = next(t for t in active["transformations"] if t["id"] == "organize"
                       )["options"]["renameByName"]
        results = {columns.get(f"Value #{t['refId']}", t["refId"]): query(
            substitute(t["expr"], values)) for t in active["targets"]}
        assert 0 < float(results["time gone"][0]["value"][1]) < 100
        assert 29 * 86400 < float(results["time left"][0]["value"][1]) <= 30 * 86400
        assert STARTED.timestamp() * 1000 < float(results["projected end"][0]["value"][1])
        notes = active["targets"][-1]  # a labels-only query: the notes column
        assert [r["metric"]["notes"] for r in query(substitute(notes["expr"], values))
                ] == [note(NOTES)]
        plan = by_title["Progress against plan"]
        for t in plan["targets"]:
            [series] = query(substitute(t["expr"], values))
            assert (series["metric"]["display_name"], series["metric"]["notes"]) == (
                name, note(NOTES))
            assert "{{notes}}" in t["legendFormat"]
        assert plan["options"]["tooltip"]["mode"] == "multi"
        assert not plan["options"]["legend"]["showLegend"]  # the names show on hover
    finally:
        prom.terminate()
        prom.wait(30)
        server.shutdown()
