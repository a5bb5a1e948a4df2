"""baton's log: JSON lines with their context fields, a file rotated at a size and at UTC
midnight into gzipped files kept for ``keep_days``, shared safely by several processes,
``${VAR}`` in its path."""

from __future__ import annotations

import gzip
import json
import logging
import logging.config
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baton.config import LoggingConfig, load_config
from baton.errors import ConfigError
from baton.logs import RotatingLog, forwarded, log_context, setup_logging

ROOT = Path(__file__).resolve().parents[2]


def _json(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _file_log(tmp_path: Path, **kw: object) -> Path:
    path = tmp_path / "logs" / "watcher.log"
    setup_logging(LoggingConfig(json_lines=True, file=path, **kw))
    return path


def test_json_lines_carry_the_context_fields(tmp_path: Path) -> None:
    path = _file_log(tmp_path)
    log = logging.getLogger("baton.test")
    log.info("plain")
    log.warning("one job", extra={"experiment": "e1", "stage": "evaluation", "job_id": "42"})
    with log_context(experiment="e2", signal_key="k-9"):
        log.info("in a block")
        log.info("own field wins", extra={"experiment": "e3"})
    log.info("after the block")
    lines = _json(path)
    assert [d["message"] for d in lines] == ["plain", "one job", "in a block",
                                             "own field wins", "after the block"]
    assert "experiment" not in lines[0] and "experiment" not in lines[4]
    assert {k: lines[1][k] for k in ("level", "logger", "experiment", "stage", "job_id")} == \
        {"level": "WARNING", "logger": "baton.test", "experiment": "e1",
         "stage": "evaluation", "job_id": "42"}
    assert (lines[2]["experiment"], lines[2]["signal_key"]) == ("e2", "k-9")
    assert lines[3]["experiment"] == "e3"


def test_plain_lines_name_the_context(tmp_path: Path) -> None:
    path = tmp_path / "plain.log"
    setup_logging(LoggingConfig(file=path))
    logging.getLogger("baton.test").info("submitted", extra={"experiment": "e1",
                                                             "job_id": "7"})
    assert path.read_text().rstrip().endswith("baton.test: submitted [experiment=e1 job_id=7]")


def test_without_a_file_dagsters_lines_are_not_printed_twice(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Dagster prints its own lines in its processes; forwarded or propagated, they would
    be printed again on stderr."""
    setup_logging(LoggingConfig())
    logging.getLogger("dagster.code_server").warning("from dagster")
    logging.getLogger("baton.test").warning("from baton")
    err = capsys.readouterr().err
    assert "from baton" in err and "from dagster" not in err


def test_an_unknown_context_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log context field"), log_context(user="x"):
        pass


def test_a_logger_outside_the_tree_is_forwarded_with_its_fields(tmp_path: Path) -> None:
    """Dagster's context.log of a sensor is a Logger made outside logging's tree: only
    what is forwarded reaches baton's file, and only inside the block."""
    path = _file_log(tmp_path)
    outside = logging.Logger("dagster")
    outside.addHandler(logging.NullHandler())
    outside.warning("before")
    with forwarded(outside, sensor="training_sensor"):
        outside.warning("quarantined x", extra={"experiment": "e1"})
    outside.warning("after")
    lines = _json(path)
    assert [(d["logger"], d["message"], d["experiment"], d["sensor"]) for d in lines] == \
        [("dagster", "quarantined x", "e1", "training_sensor")]


def test_setting_up_once_keeps_the_same_configuration(tmp_path: Path) -> None:
    cfg = LoggingConfig(file=tmp_path / "a.log")
    setup_logging(cfg)
    first = logging.getLogger().handlers[0]
    setup_logging(cfg, once=True)  # a code server loading its definitions again
    assert logging.getLogger().handlers == [first]
    setup_logging(LoggingConfig(file=tmp_path / "b.log"), once=True)  # another: replaced
    assert [h.baseFilename for h in logging.getLogger().handlers] == [  # type: ignore[attr-defined]
        str(tmp_path / "b.log")]
    assert first.stream is None  # type: ignore[attr-defined]  # closed


def test_a_handler_closed_by_dict_config_writes_on(tmp_path: Path) -> None:
    """Dagster configures its loggers with logging.config.dictConfig in every run, which
    closes every handler and leaves baton's on the root logger."""
    path = _file_log(tmp_path)
    logging.getLogger("baton.test").info("before")
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                               "loggers": {"dagster": {"level": "INFO"}}})
    logging.getLogger("baton.test").info("after")
    assert [d["message"] for d in _json(path)] == ["before", "after"]


def _gz(folder: Path) -> list[Path]:
    return sorted(folder.glob("watcher.log.*.gz"))


def test_rotation_at_max_bytes_gzips_the_old_file(tmp_path: Path) -> None:
    path = _file_log(tmp_path, max_bytes=2000)
    log = logging.getLogger("baton.test")
    for i in range(40):  # ~80 bytes a line: over 2000 bytes once
        log.info("line %02d %s", i, "x" * 20)
    rotated = _gz(path.parent)
    assert rotated, list(path.parent.iterdir())
    old = b"".join(gzip.decompress(p.read_bytes()) for p in rotated).decode()
    messages = [json.loads(line)["message"] for line in old.splitlines()] + \
        [d["message"] for d in _json(path)]
    assert messages == [f"line {i:02d} {'x' * 20}" for i in range(40)]  # nothing lost
    assert path.stat().st_size < 2000 + 200
    assert not list(path.parent.glob("*.partial"))


def test_rotation_at_midnight_and_old_files_deleted(tmp_path: Path) -> None:
    path = _file_log(tmp_path, keep_days=30)
    old, recent = (path.parent / "watcher.log.20260101T000000.gz",
                   path.parent / "watcher.log.20260201T000000.gz")
    for f, days in ((old, 31), (recent, 29)):
        f.write_bytes(gzip.compress(b"old\n"))
        os.utime(f, (time.time() - days * 86400,) * 2)
    log = logging.getLogger("baton.test")
    log.info("yesterday")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, RotatingLog)
    handler._next_midnight = time.time() - 1  # midnight has passed (not waited for)
    log.info("today")
    assert not old.exists() and recent.exists()
    new = [p for p in _gz(path.parent) if p != recent]
    assert len(new) == 1
    assert json.loads(gzip.decompress(new[0].read_bytes()))["message"] == "yesterday"
    assert [d["message"] for d in _json(path)] == ["today"]
    assert handler._next_midnight > time.time()


def test_midnight_is_rotated_once_by_two_writers(tmp_path: Path) -> None:
    """Two processes' handlers on one file: the first to write after midnight rotates it,
    the other follows to the new file instead of rotating it again."""
    path = tmp_path / "watcher.log"
    first, second = (RotatingLog(path, 10**6, 30) for _ in range(2))
    try:
        for h in (first, second):
            h.setFormatter(logging.Formatter("%(message)s"))
            h.handle(logging.makeLogRecord({"msg": "yesterday", "levelno": logging.INFO}))
            h._next_midnight = time.time() - 1  # midnight has passed (not waited for)
        first.handle(logging.makeLogRecord({"msg": "today 1"}))
        second.handle(logging.makeLogRecord({"msg": "today 2"}))
    finally:
        first.close()
        second.close()
    [rotated] = _gz(tmp_path)
    assert gzip.decompress(rotated.read_bytes()).decode() == "yesterday\nyesterday\n"
    assert path.read_text() == "today 1\ntoday 2\n"


WRITER = """
import logging, sys
from pathlib import Path
from baton.config import LoggingConfig
from baton.logs import setup_logging
setup_logging(LoggingConfig(json_lines=True, file=Path(sys.argv[1]), max_bytes=4000))
log = logging.getLogger("writer")
for i in range(300):
    log.info("%s %03d %s", sys.argv[2], i, "y" * 30)
"""


def test_processes_sharing_the_file_rotate_it_without_losing_lines(tmp_path: Path) -> None:
    """The daemon's code server and its runs write the same file: each line is kept once,
    in the current file or a rotated one."""
    path = tmp_path / "watcher.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], env=env)
             for name in ("a", "b", "c")]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    text = "".join(gzip.decompress(p.read_bytes()).decode() for p in _gz(tmp_path))
    text += path.read_text()
    messages = sorted(json.loads(line)["message"] for line in text.splitlines())
    assert messages == sorted(f"{n} {i:03d} {'y' * 30}" for n in "abc" for i in range(300))
    assert len(_gz(tmp_path)) >= 3


def test_the_file_path_takes_environment_variables(tmp_path: Path) -> None:
    cfg_file = tmp_path / "baton.yaml"
    cfg_file.write_text("logging:\n  file: ${LOGS:-/nowhere}/baton/watcher.log\n"
                        "  keep_days: 7\n")
    config = load_config(cfg_file, {"LOGS": str(tmp_path / "var")})
    assert config.logging.file == tmp_path / "var" / "baton" / "watcher.log"
    assert load_config(cfg_file, {}).logging.file == Path("/nowhere/baton/watcher.log")


def test_a_relative_log_file_is_refused(tmp_path: Path) -> None:
    cfg_file = tmp_path / "baton.yaml"
    cfg_file.write_text("logging:\n  file: logs/watcher.log\n")
    with pytest.raises(ConfigError, match=r"logging.file.*not an absolute path"):
        load_config(cfg_file, {})


def test_a_configuration_written_before_keep_days_still_loads(tmp_path: Path) -> None:
    """``logging.backups`` (the number of rotated files kept, before rotation went by
    days) is read as ``keep_days``: a baton.yaml left running for a year keeps loading."""
    from baton.config import load_config

    path = tmp_path / "baton.yaml"
    path.write_text("logging:\n  backups: 7\n")
    assert load_config(path, env={}).logging.keep_days == 7
