"""The training hook: it announces only what the sensors will accept (the same validation,
paths on the drive and checkpoints included), says why not in one logged line, and never
raises into training; with an MLflow that accepts connections and never answers it makes
one request, not one per metric, and the signal is written all the same. Its shell form
exits 1 with that line."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.config import Config
from baton.hook import training_complete
from baton.inbox import pending
from baton.layout import DriveLayout
from baton.signals import read_signal
from baton.tracking import Tracker


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP server that accepts every connection and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        srv.close()


@pytest.fixture
def mlflow_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Tracker's own timeout and retry settings, whatever the environment says."""
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)


def saved(folder: Path, name: str = "model.safetensors") -> Path:
    """A checkpoint folder as a training run leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"weights")
    return folder


def _hanging(config: Config, uri: str) -> Config:
    return config.model_copy(update={"mlflow": config.mlflow.model_copy(
        update={"tracking_uri": uri})})


def test_hook_with_a_hanging_mlflow_and_a_run_id(config: Config, silent_server: tuple,
                                                 mlflow_defaults: None) -> None:
    uri, accepted = silent_server
    ckpt = saved(config.drive.experiment("exp1").final_dir)
    metrics = {f"m{i}": float(i) for i in range(6)}
    path = training_complete("exp1", ckpt, final_loss=0.5, metrics=metrics,
                             mlflow_run_id="0123456789abcdef0123456789abcdef",
                             config=_hanging(config, uri))
    assert len(accepted) == 1  # one request timed out; no other was tried
    assert path is not None  # MLflow is down, the signal is written all the same
    sig = read_signal(path, config.drive).signal
    assert sig.experiment == "exp1" and sig.mlflow_run_id == "0123456789abcdef0123456789abcdef"


def test_hook_with_a_hanging_mlflow_and_no_run(config: Config, silent_server: tuple,
                                               mlflow_defaults: None) -> None:
    uri, accepted = silent_server
    ckpt = saved(config.drive.experiment("exp2").final_dir)
    path = training_complete("exp2", ckpt, final_loss=0.5, metrics={"a": 1.0, "b": 2.0},
                             config=_hanging(config, uri))
    assert len(accepted) == 1
    assert path is not None and read_signal(path, config.drive).signal.mlflow_run_id is None


def test_tracker_calls_return_none_after_the_first_failure(silent_server: tuple,
                                                           mlflow_defaults: None,
                                                           tmp_path: Path) -> None:
    uri, accepted = silent_server
    tracker = Tracker(uri)
    tracker.run_id = "0123456789abcdef0123456789abcdef"
    assert tracker.metrics({f"m{i}": 1.0 for i in range(5)}) is None
    assert tracker.params({"a": 1, "b": 2}) is None
    (tmp_path / "f.txt").write_text("x")
    assert tracker.artifact(tmp_path / "f.txt") is None
    assert tracker.end() is None
    assert len(accepted) == 1 and not tracker


# --- what the sensors would refuse is not announced ---------------------------------------
# Each case: (what the training left) -> the checkpoint and extra checkpoints to announce,
# and a fragment of the reason the training sensor would quarantine the signal with.
Case = Callable[[DriveLayout, Path], tuple[Path, list[Path]]]


def outside(drive: DriveLayout, tmp: Path) -> tuple[Path, list[Path]]:
    return saved(tmp / "scratch" / "final"), []


def linked_outside(drive: DriveLayout, tmp: Path) -> tuple[Path, list[Path]]:
    link = drive.experiment("exp1").final_dir
    link.parent.mkdir(parents=True)
    link.symlink_to(saved(tmp / "scratch" / "final"))
    return link, []


def extra_outside(drive: DriveLayout, tmp: Path) -> tuple[Path, list[Path]]:
    return saved(drive.experiment("exp1").final_dir), [saved(tmp / "scratch" / "ckpt-100")]


def missing(drive: DriveLayout, tmp: Path) -> tuple[Path, list[Path]]:
    return drive.experiment("exp1").final_dir, []


def empty(drive: DriveLayout, tmp: Path) -> tuple[Path, list[Path]]:
    final = drive.experiment("exp1").final_dir
    final.mkdir(parents=True)
    return final, []


def partial(drive: DriveLayout, tmp: Path) -> tuple[Path, list[Path]]:
    return saved(drive.experiment("exp1").final_dir, "model.safetensors.partial"), []


def extra_missing(drive: DriveLayout, tmp: Path) -> tuple[Path, list[Path]]:
    exp = drive.experiment("exp1")
    return saved(exp.final_dir), [exp.checkpoints_dir / "checkpoint-100"]


REFUSED: dict[str, tuple[Case, str]] = {
    "checkpoint outside the drive": (outside, "is outside the shared drive"),
    "checkpoint linked outside the drive": (linked_outside, "is outside the shared drive"),
    "extra checkpoint outside the drive": (extra_outside, "is outside the shared drive"),
    "checkpoint missing": (missing, "does not exist"),
    "checkpoint empty": (empty, "is empty"),
    "checkpoint partly written": (partial, "holds a partial file"),
    "extra checkpoint missing": (extra_missing, "does not exist"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_hook_refuses_what_the_sensor_would_quarantine(
        case: str, config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make, reason = REFUSED[case]
    final, extra = make(config.drive, tmp_path)
    with caplog.at_level(logging.ERROR, logger="baton.hook"):
        path = training_complete("exp1", final, checkpoints=list(extra) or None,
                                 config=config)
    assert path is None  # returned as a failure, not raised
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and reason in errors[0], errors
    assert "\n" not in errors[0] and "exp1" in errors[0]
    signal = config.drive.experiment("exp1").training_signal
    assert not signal.exists() and not signal.is_symlink()  # nothing claimed
    assert pending(config.drive, "training_complete") == []


def test_hook_refuses_bad_fields_in_one_line(config: Config,
                                             caplog: pytest.LogCaptureFixture) -> None:
    final = saved(config.drive.experiment("exp1").final_dir)
    with caplog.at_level(logging.ERROR, logger="baton.hook"):
        assert training_complete("exp1", final, total_steps=-1, git_commit="not hex",
                                 config=config) is None
        assert training_complete("../escape", final, config=config) is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and not any("\n" in e for e in errors), errors
    assert "total_steps" in errors[0] and "git_commit" in errors[0], errors[0]
    assert "'../escape' is not allowed" in errors[1], errors[1]
    assert pending(config.drive, "training_complete") == []
    assert list(config.drive.models.glob("*/.training_complete")) == []


def test_a_refused_signal_logs_no_mlflow_run(config: Config, silent_server: tuple,
                                            mlflow_defaults: None, tmp_path: Path) -> None:
    """MLflow hears of a training only when its signal is written."""
    uri, accepted = silent_server
    final = saved(tmp_path / "scratch" / "final")
    assert training_complete("exp1", final, final_loss=0.5, config=_hanging(config, uri)) \
        is None
    assert accepted == []


# --- the shell form -----------------------------------------------------------------------
def signal_cmd(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHARED_DRIVE": str(config.drive.root),
           "BATON_STATE_DIR": str(config.state_dir), "BATON_CONFIG": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "baton", "signal", "training-complete",
                           *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_shell_form_says_why_in_one_line_and_exits_1(config: Config, tmp_path: Path) -> None:
    scratch = saved(tmp_path / "scratch" / "final")
    for args, reason in (
            (["--experiment", "exp1", "--checkpoint", str(scratch)],
             "is outside the shared drive"),
            (["--experiment", "exp1", "--checkpoint",
              str(config.drive.experiment("exp1").final_dir)], "does not exist"),
            (["--experiment", "../escape", "--checkpoint", str(scratch)],
             "'../escape' is not allowed")):
        run = signal_cmd(config, *args)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("baton: error: "), run.stderr
        assert reason in lines[0], lines[0]
        assert run.stdout == ""
    assert list(config.drive.models.glob("*/.training_complete")) == []
    assert pending(config.drive, "training_complete") == []


def test_shell_form_reports_a_drive_that_refuses_the_write(config: Config) -> None:
    exp = config.drive.experiment("exp1")
    final = saved(exp.final_dir)
    exp.training_signal.mkdir()  # in the way: the rename onto it fails
    run = signal_cmd(config, "--experiment", "exp1", "--checkpoint", str(final))
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("baton: error: "), run.stderr
    assert str(exp.training_signal) in errors[0] and "Traceback" not in run.stderr
    assert pending(config.drive, "training_complete") == []


def test_shell_form_announces_a_good_checkpoint(config: Config) -> None:
    final = saved(config.drive.experiment("exp1").final_dir)
    run = signal_cmd(config, "--experiment", "exp1", "--checkpoint", str(final),
                     "--total-steps", "10")
    assert run.returncode == 0 and "error" not in run.stderr, run.stderr
    path = Path(run.stdout.strip())
    assert path == config.drive.experiment("exp1").training_signal
    assert read_signal(path, config.drive).signal.total_steps == 10
