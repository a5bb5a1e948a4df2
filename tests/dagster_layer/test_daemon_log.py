"""A real ``dagster-daemon`` writes baton's configured log: the sensors' lines (from their
code server) and the runs' lines (from each run's process), as JSON lines that carry the
experiment, the stage, the Slurm job id and the sensor; the file's path comes from
``${VAR}`` in baton.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton.inbox import publish
from baton.signals import TrainingComplete
from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.slow


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_daemon_writes_the_configured_watcher_log(tmp_path: Path) -> None:
    logs = tmp_path / "var-log"
    pipe = Pipeline(tmp_path, "local", extra_env={"BATON_TEST_LOG_DIR": str(logs)},
                    extra_config="logging:\n  json_lines: true\n"
                                 "  file: ${BATON_TEST_LOG_DIR}/baton/watcher.log\n")
    watcher = logs / "baton" / "watcher.log"
    # a signal whose checkpoint is missing: the training sensor quarantines it, and says so
    missing = pipe.drive.experiment("exp-bad").final_dir
    publish(pipe.drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment="exp-bad", checkpoint_path=str(missing),
        hostname="gpu01", user="tester", final_loss=1.0, total_steps=10))
    pipe.train("exp-good")  # evaluated: a run submits its job
    pipe.start()
    try:
        def find(**want: str) -> dict[str, Any] | None:
            return next((d for d in _lines(watcher)
                         if all(str(d.get(k, "")).find(v) >= 0 for k, v in want.items())),
                        None)

        pipe.wait_for("the quarantine line",
                      lambda: find(message="training_sensor - quarantined") is not None,
                      timeout=180)
        pipe.wait_for("the submission line", lambda: find(message="submitted as") is not None,
                      timeout=240)
    finally:
        pipe.stop()
    # the sensor's own line (its context.log, which Dagster keeps with the tick)
    quarantined = find(logger="dagster", message="training_sensor - quarantined")
    assert quarantined is not None
    assert quarantined["level"] == "WARNING"
    assert quarantined["experiment"] == "exp-bad"
    assert quarantined["sensor"] == "training_sensor"
    assert "does not exist" in quarantined["message"]
    submitted = find(message="submitted as")
    assert submitted is not None
    job = pipe.ledger.jobs(experiment="exp-good", stage="evaluation")[0].job_id
    assert (submitted["experiment"], submitted["stage"], submitted["job_id"]) == \
        ("exp-good", "evaluation", job)
