"""One logging set-up for every baton process (the CLI, the exporter, Dagster's code servers
and runs): plain or JSON lines, the context of each line (experiment, stage, Slurm job id,
signal key, sensor), and a log file rotated daily or at a size, compressed, kept for days."""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from baton.config import LoggingConfig

# what a line may say about the work it is about; JSON lines carry each one set
CONTEXT_FIELDS = ("experiment", "stage", "job_id", "signal_key", "sensor")
_context: ContextVar[Mapping[str, str]] = ContextVar("baton_log_context",
                                                      default=MappingProxyType({}))


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every line logged inside the block (this thread or task) carries ``fields``, unless
    the call names its own (``extra=``)."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    token = _context.set({**_context.get(),
                          **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Fills a record's context fields from :func:`log_context`."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    return {k: str(v) for k in CONTEXT_FIELDS if (v := getattr(record, k, None)) is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context_of(record),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message [experiment=... job_id=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s",
                         "%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if fields := _context_of(record):
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return line


class RotatingLog(logging.FileHandler):
    """A log file rotated at UTC midnight or at ``max_bytes``, whichever comes first; each
    rotated file is gzipped (``watcher.log.20261207T031500123456.gz``) and deleted after
    ``keep_days``. Several processes write the same file (the daemon's code server, every
    run): each line is written under a shared lock on ``watcher.log.lock`` and a rotation
    under an exclusive one, so no line goes to a file being rotated away, and a process
    whose file another has rotated reopens the new one instead of rotating again."""

    def __init__(self, path: Path, max_bytes: int, keep_days: int) -> None:
        super().__init__(str(path), "a", encoding="utf-8")
        self.max_bytes, self.keep_days = max_bytes, keep_days
        self._lock_file = open(f"{path}.lock", "a")  # noqa: SIM115 - held while open
        self._next_midnight = _next_midnight(time.time())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._lock_file.closed:  # closed by logging.config.dictConfig (Dagster's
                # set-up of its loggers in a run), which leaves the handler on the root
                # logger: reopened, as FileHandler reopens its stream
                self._lock_file = open(f"{self.baseFilename}.lock", "a")  # noqa: SIM115
            fcntl.flock(self._lock_file, fcntl.LOCK_SH)
            try:
                if self._moved():
                    self._follow_rotation()
                if self._due():
                    fcntl.flock(self._lock_file, fcntl.LOCK_EX)
                    if self._moved():
                        self._follow_rotation()
                    elif self._due():
                        self._rotate()
                super().emit(record)
            finally:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        super().close()
        self._lock_file.close()

    def _due(self) -> bool:
        written = self.stream.tell() if self.stream is not None else 0
        if time.time() >= self._next_midnight:
            if written:
                return True
            self._next_midnight = _next_midnight(time.time())  # nothing to keep of the day
        return written >= self.max_bytes

    def _rotate(self) -> None:
        """Under the exclusive lock: the file gzipped away, a new one opened."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")  # sorts as written
        target, n = f"{self.baseFilename}.{stamp}.gz", 1
        while os.path.exists(target):
            n += 1
            target = f"{self.baseFilename}.{stamp}-{n}.gz"
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        _gzip_rotate(self.baseFilename, target)
        self._delete_old()
        self._reopen()
        self._next_midnight = _next_midnight(time.time())

    def _moved(self) -> bool:
        if self.stream is None:
            return False
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            return True
        mine = os.fstat(self.stream.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (mine.st_dev, mine.st_ino)

    def _follow_rotation(self) -> None:
        """Another process rotated the file: write to the new one, whose day starts now
        (its midnight is that process's to keep; not rotated twice)."""
        self._reopen()
        self._next_midnight = _next_midnight(time.time())

    def _reopen(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = self._open()

    def _delete_old(self) -> None:
        base = Path(self.baseFilename)
        cutoff = time.time() - self.keep_days * 86400
        for old in base.parent.glob(f"{base.name}.*.gz"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)


def _gzip_rotate(source: str, dest: str) -> None:
    """``source`` compressed into ``dest`` (via a temporary name: never half a file), then
    removed."""
    partial = f"{dest}.partial"
    with open(source, "rb") as src, gzip.open(partial, "wb") as out:
        shutil.copyfileobj(src, out)
    os.replace(partial, dest)
    os.remove(source)


def _next_midnight(now: float) -> float:
    return (now // 86400 + 1) * 86400  # UTC


def _not_dagster(record: logging.LogRecord) -> bool:
    """Without a file, Dagster's lines are left to Dagster's own console handlers (its
    processes print them already), not printed twice."""
    return not (record.name == "dagster" or record.name.startswith("dagster."))


def setup_logging(cfg: LoggingConfig, *, verbose: bool = False, once: bool = False) -> None:
    """Route every logger of the process to ``cfg``'s file (``dagster``'s too: they
    propagate to the root), or to stderr. ``once``: leave a set-up of the same ``cfg`` in
    place, for processes that may load the configuration again (a code server reloading
    its definitions)."""
    root = logging.getLogger()
    if once and any(getattr(h, "baton_config", None) == cfg for h in root.handlers):
        return
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if cfg.file:
        cfg.file.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingLog(cfg.file, cfg.max_bytes, cfg.keep_days)
    else:
        handler = logging.StreamHandler()
        handler.addFilter(_not_dagster)
    handler.baton_config = cfg  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if cfg.json_lines else TextFormatter())
    root.addHandler(handler)
    root.setLevel("DEBUG" if verbose else cfg.level)
    if not verbose:
        logging.getLogger("alembic").setLevel("WARNING")  # one line per migration check


class _Forward(logging.Handler):
    """Hands each record to the root logger's handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        root = logging.getLogger()
        if root.isEnabledFor(record.levelno):
            root.handle(record)


@contextmanager
def forwarded(log: logging.Logger, **fields: object) -> Iterator[None]:
    """Inside the block, the lines of ``log`` also go to the process's log (baton's file),
    each with ``fields`` (see :func:`log_context`): for a logger outside the logging tree,
    such as Dagster's ``context.log`` of a sensor tick or a run, whose lines would
    otherwise reach only Dagster's own log."""
    handler = _Forward()
    log.addHandler(handler)
    try:
        with log_context(**fields):
            yield
    finally:
        log.removeHandler(handler)
