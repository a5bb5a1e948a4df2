"""A lab's own fields in a training signal reach the ``model`` materialization's metadata
in Dagster (and the ledger), as written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, SensorResult

from baton.inbox import publish
from baton.signals import TrainingComplete
from tests.e2e.harness import InProcess

LAB = {"dataset_version": "v2.1", "seeds": [1, 2, 3], "optimizer": {"name": "adamw"}}


def test_lab_fields_are_in_the_model_metadata(tmp_path: Path) -> None:
    with InProcess(tmp_path / "site") as site:
        layout = site.drive.experiment("exp1")
        layout.final_dir.mkdir(parents=True)
        (layout.final_dir / "model.safetensors").write_bytes(b"\1" * 64)
        publish(site.drive, TrainingComplete(
            timestamp=datetime.now(UTC), experiment="exp1", hostname="gpu01", user="u",
            checkpoint_path=str(layout.final_dir), final_loss=1.5, **LAB))
        result = site.tick("training_sensor")
        assert isinstance(result, SensorResult)  # and the evaluation submitted:
        assert site.ledger.jobs(experiment="exp1", stage="evaluation")
        records = site.instance.fetch_materializations(AssetRecordsFilter(
            asset_key=AssetKey("model"), asset_partitions=["exp1"]), limit=1).records
        meta = records[0].asset_materialization.metadata
        assert meta["lab_fields"].value == LAB
        assert meta["final_loss"].value == 1.5
        assert site.ledger.training_run("exp1").metadata["seeds"] == [1, 2, 3]
