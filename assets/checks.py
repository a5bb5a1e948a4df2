"""The model's checkpoint check: reported by the training sensor, runnable from the UI."""


from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from assets.partitions import experiments
from baton.pipeline.scan import checkpoint_problem
from baton.signals import read_signal
from resources import SharedDriveResource

CHECKPOINT_CHECK = "checkpoint_complete"


@asset_check(asset="model", name=CHECKPOINT_CHECK, partitions_def=experiments,
             description="the checkpoints the training signal names exist, are non-empty and "
                         "hold no partial files")
def checkpoint_complete(context: AssetCheckExecutionContext,
                        drive: SharedDriveResource) -> AssetCheckResult:
    layout = drive.layout()
    exp = context.partition_key
    sf = read_signal(layout.experiment(exp).training_signal, layout)
    problem = checkpoint_problem(sf)
    return AssetCheckResult(passed=problem is None,
                            metadata={"problem": problem or "none",
                                      "checkpoints": len(sf.signal.checkpoint_paths())})
