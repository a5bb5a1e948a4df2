"""Series the exporter emits stay bounded as the ledger grows: the progress table covers
active campaigns and unfinished work only, free text is never a label, and scripts that
ended long ago leave the status metrics."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import insert

from baton.config import Config
from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.ledger import Ledger, open_ledger
from baton.ledger.schema import status_events, training_runs
from baton.slurm.states import JobStatus


def trained(ledger: Ledger, config: Config, experiment: str, campaign: str | None) -> None:
    with ledger.write() as conn:
        conn.execute(insert(training_runs).values(
            experiment_name=experiment, campaign=campaign, status="completed",
            completed_at=datetime.now(UTC), signal_key=f"sig-{experiment}"))
    ledger.note_campaign(campaign, None, experiment, config.campaigns)


def ran(ledger: Ledger, experiment: str, stage: str, state: str,
        campaign: str | None) -> None:
    key = f"{stage}-{experiment}"
    claim = ledger.claim_submission(key, stage=stage, experiment=experiment,
                                    backend="local", campaign=campaign)
    ledger.mark_submitted(claim.row_id, key)
    ledger.apply_statuses({key: JobStatus(job_id=key, state=state)})


def reported(ledger: Ledger, job: str, status: str, ago: timedelta) -> None:
    at = datetime.now(UTC) - ago
    with ledger.write() as conn:
        conn.execute(insert(status_events).values(
            event_id=uuid.uuid4().hex, project="nightly", job=job, status=status,
            reported_at=at, ingested_at=at))


def samples(config: Config, ledger: Ledger) -> list[tuple[str, dict[str, str], float]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatonCollector(config, ledger, QueueSnapshot(lambda: Counter())))
    return [(s.name, s.labels, s.value) for fam in registry.collect() for s in fam.samples]


def test_progress_table_covers_active_campaigns_and_unfinished_work(config: Config) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    trained(ledger, config, "live-1", "live")
    ran(ledger, "live-1", "evaluation", "COMPLETED", "live")
    ran(ledger, "live-1", "analysis", "COMPLETED", "live")
    for i in range(50):  # a finished campaign nobody shows any more: history, not progress
        trained(ledger, config, f"old-{i}", "old")
        ran(ledger, f"old-{i}", "evaluation", "COMPLETED", "old")
        ran(ledger, f"old-{i}", "analysis", "FAILED", "old")
    trained(ledger, config, "old-busy", "old")
    ran(ledger, "old-busy", "evaluation", "RUNNING", "old")
    ran(ledger, "loose-done", "evaluation", "COMPLETED", None)
    ran(ledger, "loose-waiting", "evaluation", "PENDING", None)
    ledger.update_campaign("live", active=True, notes="known issue: node vm is slow\n"
                           "see the logbook", display_name="Live pass 1")
    ledger.update_campaign("old", notes="done")
    got = samples(config, ledger)
    table = [(labels, v) for name, labels, v in got if name == "baton_progress_tasks"]
    shown = {(labels["campaign"], labels["experiment"]) for labels, _ in table}
    assert shown == {("live", "live-1"), ("old", "old-busy"), ("none", "loose-waiting")}
    # five columns per (experiment, stage): the table is whole for what it shows
    assert len(table) == 5 * 2 + 5 * 2 + 5 * 1
    values = {(labels["experiment"], labels["stage"], labels["column"]): v
              for labels, v in table}
    assert values[("live-1", "evaluation", "finished")] == 1
    assert values[("old-busy", "evaluation", "running")] == 1
    assert values[("loose-waiting", "evaluation", "submitted")] == 1
    # completion still counts every experiment of a campaign, shown or not
    by_name = {(name, labels.get("campaign")): v for name, labels, v in got}
    assert by_name[("baton_campaign_expected_jobs", "old")] == 51 * 2
    # the display name is a label of the campaign's info; the curators' free-text notes
    # only of a series of their own (an edit starts a new series of that one only), one
    # line, for the active campaigns only (not "old"'s)
    info = [labels for name, labels, _ in got if name == "baton_campaign_info"]
    assert info == [{"campaign": "live", "type": "default", "display_name": "Live pass 1"}]
    assert [(name, labels) for name, labels, _ in got if "notes" in labels] == [
        ("baton_campaign_notes_info", {"campaign": "live", "type": "default",
                                       "notes": "known issue: node vm is slow see the logbook"})]
    ledger.close()


def test_status_metrics_drop_scripts_that_ended_long_ago(config: Config) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    reported(ledger, "fetch", "running", timedelta(days=30))  # silent: the alert needs it
    reported(ledger, "daily-2026-10-01", "completed", timedelta(days=8))
    reported(ledger, "daily-2026-11-29", "completed", timedelta(hours=1))
    reported(ledger, "broken", "failed", timedelta(days=6))
    got = samples(config, ledger)
    jobs = {labels["job_name"] for name, labels, _ in got
            if name == "baton_status_last_report_timestamp_seconds"}
    assert jobs == {"fetch", "daily-2026-11-29", "broken"}
    intervals = {labels["job_name"] for name, labels, _ in got
                 if name == "baton_status_expected_interval_seconds"}
    assert intervals == jobs
    ledger.close()


def test_jobs_named_in_status_intervals_are_expected_before_their_first_report(
        config: Config) -> None:
    """``status.intervals`` naming ``nightly/backup`` makes it expected: its interval shows
    before it ever reports (the never-reported alert compares the two), and its last report
    stays however old it is (a declared job's silence must not look like never reported)."""
    config = config.model_copy(update={"status": config.status.model_copy(update={
        "intervals": {"nightly/backup": 86400.0, "nightly/weekly": 7 * 86400.0,
                      "mosquito": 600.0}})})
    ledger = open_ledger(config.ledger_url, init=True)
    reported(ledger, "weekly", "completed", timedelta(days=8))  # declared: still shown
    reported(ledger, "daily-2026-10-01", "completed", timedelta(days=8))  # not: dropped
    got = samples(config, ledger)
    last = {labels["job_name"] for name, labels, _ in got
            if name == "baton_status_last_report_timestamp_seconds"}
    assert last == {"weekly"}
    intervals = {(labels["project"], labels["job_name"]): v for name, labels, v in got
                 if name == "baton_status_expected_interval_seconds"}
    assert intervals == {("nightly", "backup"): 86400.0, ("nightly", "weekly"): 7 * 86400.0}
    ledger.close()
