"""Dagster's side of the call counts: what a sensor asks Slurm is the daemon's, what a
run asks is the run's (real Dagster in-process, real squeue)."""

from __future__ import annotations

import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    SensorEvaluationContext,
    SkipReason,
    asset,
    build_sensor_context,
    materialize,
    sensor,
)

from baton.config import Config
from baton.slurm.budget import read_calls
from resources import SlurmResource

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


@asset
def asks_the_queue(slurm: SlurmResource) -> None:
    slurm.client().queue_states()


@sensor(asset_selection=[asks_the_queue])
def polls_the_queue(context: SensorEvaluationContext, slurm: SlurmResource) -> SkipReason:
    slurm.client().queue_states()
    slurm.client().queue_states()
    return SkipReason("only asked")


def test_sensor_calls_are_the_daemons_and_run_calls_the_runs(config: Config) -> None:
    slurm = SlurmResource(settings=config, backend="sbatch")
    defs = Definitions(assets=[asks_the_queue], sensors=[polls_the_queue],
                       resources={"slurm": slurm})
    with DagsterInstance.ephemeral() as instance:
        with build_sensor_context(instance=instance, definitions=defs,
                                  resources={"slurm": slurm}) as context:
            polls_the_queue(context)
        assert read_calls(config.state_dir) == {("squeue", "daemon"): 2}
        assert materialize([asks_the_queue], resources={"slurm": slurm},
                           instance=instance).success
    assert read_calls(config.state_dir) == {("squeue", "daemon"): 2, ("squeue", "run"): 1}
