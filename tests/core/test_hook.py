"""The training hook with an MLflow that accepts connections and never answers: one
timeout, not one per metric; the signal is written all the same and nothing raises."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.config import Config
from baton.hook import training_complete
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


def _hanging(config: Config, uri: str) -> Config:
    return config.model_copy(update={"mlflow": config.mlflow.model_copy(
        update={"tracking_uri": uri})})


def test_hook_with_a_hanging_mlflow_and_a_run_id(config: Config, silent_server: tuple,
                                                 mlflow_defaults: None) -> None:
    uri, accepted = silent_server
    ckpt = config.drive.experiment("exp1").final_dir
    ckpt.mkdir(parents=True)
    metrics = {f"m{i}": float(i) for i in range(6)}
    start = time.monotonic()
    path = training_complete("exp1", ckpt, final_loss=0.5, metrics=metrics,
                             mlflow_run_id="0123456789abcdef0123456789abcdef",
                             config=_hanging(config, uri))
    took = time.monotonic() - start
    assert took < 12, f"the hook took {took:.1f}s with 7 metrics to log"
    assert len(accepted) == 1  # one request timed out; no other was tried
    assert path is not None  # MLflow is down, the signal is written all the same
    sig = read_signal(path, config.drive).signal
    assert sig.experiment == "exp1" and sig.mlflow_run_id == "0123456789abcdef0123456789abcdef"


def test_hook_with_a_hanging_mlflow_and_no_run(config: Config, silent_server: tuple,
                                               mlflow_defaults: None) -> None:
    uri, accepted = silent_server
    ckpt = config.drive.experiment("exp2").final_dir
    ckpt.mkdir(parents=True)
    start = time.monotonic()
    path = training_complete("exp2", ckpt, final_loss=0.5, metrics={"a": 1.0, "b": 2.0},
                             config=_hanging(config, uri))
    assert time.monotonic() - start < 12
    assert len(accepted) == 1
    assert path is not None and read_signal(path, config.drive).signal.mlflow_run_id is None


def test_tracker_calls_return_none_after_the_first_failure(silent_server: tuple,
                                                           mlflow_defaults: None,
                                                           tmp_path: Path) -> None:
    uri, accepted = silent_server
    tracker = Tracker(uri)
    tracker.run_id = "0123456789abcdef0123456789abcdef"
    start = time.monotonic()
    assert tracker.metrics({f"m{i}": 1.0 for i in range(5)}) is None
    assert tracker.params({"a": 1, "b": 2}) is None
    (tmp_path / "f.txt").write_text("x")
    assert tracker.artifact(tmp_path / "f.txt") is None
    assert tracker.end() is None
    assert time.monotonic() - start < 12
    assert len(accepted) == 1 and not tracker
