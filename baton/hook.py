"""The training-completion hook: one call at the end of a training script.

It checks the signal as the training sensor will (fields, paths on the drive, checkpoints
there to evaluate), logs the final metrics to MLflow, then writes ``.training_complete``
atomically (with retries on a flaky drive) and announces it. A signal the orchestrator
would quarantine is not written: the person who trained hears why, from the hook, instead
of nobody hearing it from the sensor. :func:`training_complete` never raises into the
training script and never blocks for long: a problem is logged in one line and ``None``
returned. :func:`announce_training` does the same work and raises the problem instead
(the shell form, ``baton signal training-complete``, reports it and exits 1)."""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from baton.config import Config, load_config
from baton.errors import BatonError, SignalError
from baton.inbox import canonical_path, publish
from baton.signals import TrainingComplete, check_signal, describe_validation_error, utcnow
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
    (with the reason logged) if it was refused or could not be written."""
    try:
        return announce_training(
            experiment, checkpoint_path, campaign=campaign, campaign_type=campaign_type,
            final_loss=final_loss, total_steps=total_steps, num_epochs=num_epochs,
            config_path=config_path, git_commit=git_commit, checkpoints=checkpoints,
            mlflow_run_id=mlflow_run_id, metrics=metrics, config=config)
    except Exception as exc:  # the training must not fail because of baton
        log.error("baton could not announce the end of training of %s: %s", experiment,
                  _one_line(exc))
        return None


def announce_training(experiment: str, checkpoint_path: str | Path, *,
                      campaign: str | None = None, campaign_type: str | None = None,
                      final_loss: float | None = None,
                      total_steps: int | None = None, num_epochs: int | None = None,
                      config_path: str | None = None, git_commit: str | None = None,
                      checkpoints: list[str | Path] | None = None,
                      mlflow_run_id: str | None = None,
                      metrics: Mapping[str, float] | None = None,
                      config: Config | None = None) -> Path:
    """:func:`training_complete`'s work; raises (a BatonError when the signal is refused)
    instead of logging. Nothing reaches MLflow or the drive before the signal passes."""
    config = config or load_config()
    try:
        signal = TrainingComplete(
            timestamp=utcnow(), experiment=experiment, campaign=campaign,
            campaign_type=campaign_type, checkpoint_path=str(Path(checkpoint_path).resolve()),
            hostname=socket.gethostname(), user=getpass.getuser(), config_path=config_path,
            num_epochs=num_epochs, final_loss=final_loss, total_steps=total_steps,
            git_commit=git_commit, mlflow_run_id=mlflow_run_id,
            checkpoints=[str(Path(c).resolve()) for c in checkpoints] if checkpoints else None)
    except ValidationError as exc:
        raise BatonError(f"training signal of {experiment!r}: "
                         f"{describe_validation_error(exc)}") from None
    target = canonical_path(config.drive, signal)
    try:
        check_signal(target, signal, config.drive)
    except OSError as exc:  # a checkpoint the drive will not let us look into
        raise SignalError(target, f"cannot check its checkpoints: {exc}") from None
    run_id = _log_to_mlflow(config, experiment, campaign, mlflow_run_id, {
        **(metrics or {}), **({"final_loss": final_loss} if final_loss is not None else {})},
        total_steps)
    if run_id != signal.mlflow_run_id:
        signal = signal.model_copy(update={"mlflow_run_id": run_id})
    try:
        path = publish(config.drive, signal)  # write_signal validates it once more
    except OSError as exc:
        raise SignalError(target, f"could not be written: {exc.strerror or exc}") from None
    log.info("training of %s announced: %s", experiment, path)
    return path


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, BatonError) else f"{type(exc).__name__}: {text}"


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
