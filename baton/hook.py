"""The training-completion hook: one call at the end of a training script.

It writes ``.training_complete`` atomically (with retries on a flaky drive), announces it,
and logs the final metrics to MLflow. It never raises into the training script and never
blocks for long: a failure is logged and ``None`` returned."""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from baton.config import Config, load_config
from baton.inbox import publish
from baton.signals import TrainingComplete, utcnow
from baton.tracking import Tracker

log = logging.getLogger(__name__)


def training_complete(experiment: str, checkpoint_path: str | Path, *,
                      campaign: str | None = None, campaign_type: str | None = None,
                      final_loss: float | None = None,
                      total_steps: int | None = None, num_epochs: int | None = None,
                      config_path: str | None = None, git_commit: str | None = None,
                      checkpoints: list[str | Path] | None = None,
                      mlflow_run_id: str | None = None,
                      metrics: Mapping[str, float] | None = None,
                      config: Config | None = None) -> Path | None:
    """Announce that ``experiment`` finished training. Returns the signal's path, or None
    (with the reason logged) if it could not be written."""
    try:
        config = config or load_config()
        run_id = _log_to_mlflow(config, experiment, campaign, mlflow_run_id, {
            **(metrics or {}), **({"final_loss": final_loss} if final_loss is not None else {})},
            total_steps)
        signal = TrainingComplete(
            timestamp=utcnow(), experiment=experiment, campaign=campaign,
            campaign_type=campaign_type, checkpoint_path=str(Path(checkpoint_path).resolve()),
            hostname=socket.gethostname(), user=getpass.getuser(), config_path=config_path,
            num_epochs=num_epochs, final_loss=final_loss, total_steps=total_steps,
            git_commit=git_commit, mlflow_run_id=run_id,
            checkpoints=[str(Path(c).resolve()) for c in checkpoints] if checkpoints else None)
        path = publish(config.drive, signal)
        log.info("training of %s announced: %s", experiment, path)
        return path
    except Exception as exc:  # the training must not fail because of baton
        log.error("baton could not announce the end of training of %s: %s", experiment, exc)
        return None


def _log_to_mlflow(config: Config, experiment: str, campaign: str | None,
                   run_id: str | None, metrics: dict[str, Any], step: int | None) -> str | None:
    if not config.mlflow.tracking_uri:
        return run_id
    tracker = Tracker(config.mlflow.tracking_uri)
    if run_id:
        tracker.run_id = run_id
    elif not tracker.start(f"baton/{campaign or experiment}", f"training {experiment}",
                           tags={"baton.stage": "training", "baton.experiment": experiment}):
        return None
    tracker.metrics(metrics, step=step)
    if not run_id:
        tracker.end()
    return tracker.run_id
