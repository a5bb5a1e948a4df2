"""The spool files status ingestion set aside are counted on /metrics
(``baton_status_rejected_files``), read from the drive without writing to it."""

from __future__ import annotations

from pathlib import Path

from baton.config import Config
from baton.jobstatus.ingest import ingest
from baton.jobstatus.report import drive_spool, rejected_folder, report
from baton.ledger import open_ledger
from tests.exporter.test_exporter import sample, scrape


def test_set_aside_spool_files_are_counted(config: Config, tmp_path: Path) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    drive = Path(config.shared_drive)
    text, _ = scrape(config, ledger)
    assert sample(text, "baton_status_rejected_files") == 0
    assert sample(text, "baton_exporter_component_up", component="drive") == 1
    assert not rejected_folder(drive).exists()  # the exporter creates nothing

    spool = drive_spool(drive)
    spool.mkdir(parents=True)
    (spool / "1-not-utf8.json").write_bytes(b'{"message": "\xff"}')
    (spool / "2-not-an-object.json").write_bytes(b"[1, 2]")
    assert report("p", "j", "running", drive=drive)
    assert ingest(drive, ledger) == 1
    assert len(list(rejected_folder(drive).iterdir())) == 4  # two files, two reasons
    text, _ = scrape(config, ledger)
    assert sample(text, "baton_status_rejected_files") == 2  # files, not their reasons

    for path in rejected_folder(drive).iterdir():  # the operator looked and cleared them
        path.unlink()
    text, _ = scrape(config, ledger)
    assert sample(text, "baton_status_rejected_files") == 0
    ledger.close()
