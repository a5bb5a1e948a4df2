"""Files written so that a reader never sees part of one: temp file, fsync, rename.

Every writer of baton (signals, rendered scripts, reports, the local backend's state,
``baton sql``'s snapshot) goes through here; scanners skip the temp names."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from baton.retry import is_transient_oserror, retry


def is_temp_name(name: str) -> bool:
    """Temp files of :func:`atomic_write`, which scanners must ignore."""
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write(path: Path | str, data: bytes, *, attempts: int = 5, base_delay: float = 0.2
                 ) -> Path:
    """Write ``data`` to ``path`` via temp file + fsync + rename, retrying transient I/O
    errors of a network filesystem. Readers see the old file or the new, never a part."""
    path = Path(path)

    def once() -> Path:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path

    return retry(once, should_retry=is_transient_oserror, attempts=attempts, base=base_delay,
                 what=f"writing {path}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some network filesystems refuse fsync on a directory; the rename stands
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temp path beside ``path`` for a writer that needs a file name (pyarrow, the csv
    module); fsynced and renamed over ``path`` when the block ends, removed if it
    raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
