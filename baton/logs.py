"""One logging set-up for every baton process: plain or JSON lines, optional rotation."""

from __future__ import annotations

import json
import logging
import logging.handlers
from datetime import UTC, datetime

from baton.config import LoggingConfig


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("experiment", "job_id", "stage"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(cfg: LoggingConfig, *, verbose: bool = False) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler
    if cfg.file:
        cfg.file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(cfg.file, maxBytes=cfg.max_bytes,
                                                       backupCount=cfg.backups)
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if cfg.json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    root.addHandler(handler)
    root.setLevel("DEBUG" if verbose else cfg.level)
    if not verbose:
        logging.getLogger("alembic").setLevel("WARNING")  # one line per migration check
