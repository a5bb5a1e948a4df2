"""Train the example model as a training script would: checkpoints on the shared drive,
metrics to MLflow as it goes, and the baton hook at the end."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from baton.config import Config
from baton.example.evaluator import HELDOUT_FROM
from baton.example.grammar import shipped_corpus
from baton.example.model import Hyper, TinyLM, train
from baton.fsio import atomic_write
from baton.hook import training_complete
from baton.tracking import Tracker

log = logging.getLogger(__name__)


def train_example(config: Config, experiment: str, hyper: Hyper,
                  campaign: str | None = None) -> Path | None:
    exp = config.drive.experiment(experiment)
    tracker = Tracker(config.mlflow.tracking_uri)
    tracker.start(f"baton/{campaign or experiment}", f"training {experiment}",
                  tags={"baton.stage": "training", "baton.experiment": experiment})
    tracker.params({f"hyper.{k}": v for k, v in hyper.__dict__.items()})
    saved: list[Path] = []

    def on_checkpoint(model: TinyLM, step: int, loss: float) -> None:
        saved.append(model.save(exp.checkpoint(step), step=step, loss=loss))
        tracker.metrics({"train_loss": loss}, step=step)

    sentences = shipped_corpus()[:HELDOUT_FROM]
    train(sentences, hyper, on_checkpoint)
    last = saved[-1]
    if exp.final_dir.exists():
        shutil.rmtree(exp.final_dir)
    shutil.copytree(last, exp.final_dir)
    loss = float(json.loads((last / "metadata.json").read_text())["loss"])
    # the training configuration the signal names: the analysis shows what a sweep varies
    settings = atomic_write(exp.model_dir / "train_config.json",
                            json.dumps(hyper.__dict__, indent=2).encode())
    log.info("trained %s: %d checkpoints, final loss %.3f", experiment, len(saved), loss)
    tracker.end()
    return training_complete(
        experiment, exp.final_dir, campaign=campaign, final_loss=round(loss, 6),
        total_steps=int(last.name.split("-")[1]), num_epochs=hyper.epochs,
        checkpoints=saved[:-1], mlflow_run_id=tracker.run_id, config_path=str(settings),
        config=config)
