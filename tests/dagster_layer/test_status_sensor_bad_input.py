"""The ``status_reports`` sensor, ticked as the daemon ticks it: a spool file that cannot be
ingested neither stops the reports behind it nor the sensor's heartbeat (which would make
the stale-heartbeat alert blame the daemon); the tick names what was set aside."""

from __future__ import annotations

from pathlib import Path

from dagster import SkipReason

from baton.jobstatus.report import drive_spool, rejected_folder, report
from tests.e2e.harness import InProcess


def test_a_bad_spool_file_neither_blocks_the_reports_nor_stops_the_heartbeat(
        tmp_path: Path) -> None:
    with InProcess(tmp_path) as site:
        drive = site.drive.root
        spool = drive_spool(drive)
        spool.mkdir(parents=True, exist_ok=True)
        (spool / "0-not-utf8.json").write_bytes(b'{"message": "\xff"}')
        (spool / "0-surrogate.json").write_text(  # an older reporter's lone surrogate
            '{"id": "%s", "project": "p", "job": "j", "status": "running", "progress": null,'
            ' "message": "a\\ud800b", "time": "2026-03-01T08:00:00+00:00", "host": "h"}'
            % ("a" * 32))
        assert report("q", "k", "started", drive=drive)
        for _ in range(2):  # and again on the next tick: nothing left to block it
            result = site.tick("status_reports")
            assert isinstance(result, SkipReason)
            assert "file(s) set aside" in (result.skip_message or "")
            assert "status_reports" in site.ledger.heartbeats()
        assert sorted((r.project, r.message) for r in site.ledger.last_reports()) == [
            ("p", "a\ufffdb"), ("q", None)]
        assert [p.name for p in rejected_folder(drive).iterdir()
                if p.suffix != ".reason"] == ["0-not-utf8.json"]
