"""The demo's campaign, small: the example model trained at two learning rates (its
training configuration names them), each evaluated as the pipeline does (the training
signal's checkpoints and ``final``, by evaluation job 31), and analysed by analysis job 77."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.analyze.run import analyze
from baton.config import Config, DagsterConfig, WebConfig, load_config
from baton.evaluate.harness import evaluate
from baton.example.model import Hyper
from baton.example.train import train_example
from baton.signals import TrainingComplete, read_signal

RATES = {"demo-lr0p05": 0.05, "demo-lr0p8": 0.8}
DAGSTER = "http://dagster.lab:3000"  # dagster.url: where the report links its assets
WEB = "https://lab.example/baton"  # web.url: the status pages it links
EVAL_JOB, ANALYSIS_JOB = "31", "77"


def demo_campaign(tmp: Path) -> tuple[Config, Path]:
    """The campaign and the report of its first experiment."""
    config = load_config(env={"SHARED_DRIVE": str(tmp / "drive"),
                              "BATON_STATE_DIR": str(tmp / "state")})
    config = config.model_copy(update={"dagster": DagsterConfig(url=DAGSTER + "/"),
                                       "web": WebConfig(url=WEB)})
    config.drive.create()
    with pytest.MonkeyPatch.context() as env:
        for name, lr in RATES.items():
            train_example(config, name, Hyper(lr=lr, epochs=1, checkpoint_every=150), "demo")
            training = read_signal(config.drive.experiment(name).training_signal).signal
            assert isinstance(training, TrainingComplete)
            env.setenv("BATON_STAGE", "evaluation")
            env.setenv("SLURM_JOB_ID", EVAL_JOB)
            for ckpt in training.checkpoint_paths():
                assert evaluate(config, name, ckpt)[0]
        env.setenv("BATON_STAGE", "analysis")
        env.setenv("SLURM_JOB_ID", ANALYSIS_JOB)
        ok, signal = analyze(config, "demo-lr0p05")
    assert ok
    report = read_signal(signal).signal.report_path
    return config, Path(report)
