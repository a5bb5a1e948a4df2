"""A fresh ledger facing a drive with history (issue 14, point 3): the training sensor
submits nothing for an experiment whose results are already on the drive while the ledger
has no evaluation of it. The hold shows in the sensor's log, as an observation on the
model's partition in Dagster, and as the exporter's baton_experiments_held (which the
alert BatonExperimentsHeld watches); `baton db adopt` releases it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter

from baton.exporter.collector import BatonCollector, QueueSnapshot
from baton.inbox import publish
from baton.signals import EvalComplete
from tests.e2e.harness import PER_SIGNAL, InProcess


def _held_metric(site: InProcess) -> float:
    collector = BatonCollector(site.config, site.ledger, QueueSnapshot(lambda: None))
    [family] = [m for m in collector.compute_ledger() if m.name == "baton_experiments_held"]
    return sum(s.value for s in family.samples)


def _evaluated_before(site: InProcess, experiment: str) -> None:
    """What an evaluation that ran before the ledger was lost left on the drive."""
    final = str(site.drive.experiment(experiment).final_dir)
    publish(site.drive, EvalComplete(timestamp=datetime.now(UTC), experiment=experiment,
                                     job_id="41", status="complete",
                                     checkpoints_evaluated=[final]))


def test_fresh_ledger_holds_what_the_drive_has_results_of_until_adopted(
        tmp_path: Path, ledger_url: str) -> None:
    with InProcess(tmp_path, extra_env={"BATON_DATABASE_URL": ledger_url},
                   sensors=PER_SIGNAL) as site:
        site.train("old")
        _evaluated_before(site, "old")
        site.train("new")
        result = site.tick("training_sensor")
        # only the experiment without history is evaluated
        assert [r.partition_key for r in result.run_requests] == ["new"]
        assert site.ledger.held_experiments()[0][0] == "old"
        assert _held_metric(site) == 1
        seen = site.instance.fetch_observations(AssetRecordsFilter(
            asset_key=AssetKey("model"), asset_partitions=["old"]), limit=5).records
        [held] = [r.asset_observation.metadata["held"].value for r in seen
                  if "held" in r.asset_observation.metadata]
        assert "baton db rebuild" in held and "baton db adopt" in held
        # the evaluation sensor takes the old signal; nothing it could join
        site.tick("evaluation_sensor")
        # still held on the next ticks ("new" is asked again until its run exists)
        for _ in range(2):
            again = site.tick("training_sensor")
            assert [r.partition_key for r in again.run_requests] == ["new"]
        assert site.ledger.jobs() == []
        jobs = site.config.state_dir / "local-slurm" / "jobs"
        assert not jobs.exists()  # sbatch was never called

        proc = subprocess.run([sys.executable, "-m", "baton", "db", "adopt", "old"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "adopted old" in proc.stdout
        released = site.tick("training_sensor")
        assert sorted(r.partition_key for r in released.run_requests) == ["new", "old"]
        assert site.ledger.held_experiments() == []
        assert _held_metric(site) == 0


def test_adopt_names_experiments_or_the_whole_drive(tmp_path: Path) -> None:
    with InProcess(tmp_path, sensors=PER_SIGNAL) as site:
        site.train("old")
        _evaluated_before(site, "old")
        proc = subprocess.run([sys.executable, "-m", "baton", "db", "adopt"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode != 0 and "--all" in proc.stderr
        assert "Traceback" not in proc.stderr
        proc = subprocess.run([sys.executable, "-m", "baton", "db", "adopt", "--all"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        result = site.tick("training_sensor")
        assert [r.partition_key for r in result.run_requests] == ["old"]
