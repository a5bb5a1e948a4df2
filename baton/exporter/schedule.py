"""The active campaigns' schedule, for the dashboard's ETA and progress against plan: when
each started and when its curators expect it to end (``baton campaign set``), and their
notes (a label of their own series, so a note shows in the dashboard's tooltips; an edit
starts a new series of this one only)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from baton.ledger import Ledger

NOTE_CHARS = 200  # a label is no place for a long text: `baton campaign list` has it whole


def note(text: str) -> str:
    """A curator's note as one line, cut to ``NOTE_CHARS`` (an ellipsis says it was)."""
    line = " ".join(text.split())
    return line if len(line) <= NOTE_CHARS else line[:NOTE_CHARS - 1] + "…"


def schedule_metrics(ledger: Ledger) -> list[Metric]:
    labels = ["campaign", "type"]
    started = GaugeMetricFamily(
        "baton_campaign_started_timestamp_seconds", "when the active campaign started "
        "(its curators' started_at), Unix time", labels=labels)
    expected_end = GaugeMetricFamily(
        "baton_campaign_expected_end_timestamp_seconds", "when the active campaign's curators "
        "expect it to end (expected_end), Unix time", labels=labels)
    notes = GaugeMetricFamily(
        "baton_campaign_notes_info", f"the curators' notes on the active campaign (one line, "
        f"at most {NOTE_CHARS} characters)", labels=[*labels, "notes"])
    for r in ledger.list_campaigns(active_only=True):
        key = [r.tag, r.type]
        if r.started_at is not None:
            started.add_metric(key, r.started_at.timestamp())
        if r.expected_end is not None:
            expected_end.add_metric(key, r.expected_end.timestamp())
        if r.notes:
            notes.add_metric([*key, note(r.notes)], 1)
    return [started, expected_end, notes]
