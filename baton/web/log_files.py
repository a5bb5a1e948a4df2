"""A job's stdout or stderr from the drive, for the pages: its tail and its whole file.
Only the paths the ledger holds for the job are read (never a path from the request); a
log ``baton db prune`` compressed (``.gz`` beside it) is read as well."""

from __future__ import annotations

import gzip
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TAIL_BYTES = 1 << 20  # a tail reads at most the last MiB of a plain file
CHUNK = 1 << 16


def opened(path: Path) -> IO[bytes] | None:
    """The log, or its compressed copy, open for reading; None when neither exists."""
    packed = path.with_name(path.name + ".gz")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        pass
    try:
        return gzip.open(packed, "rb")
    except FileNotFoundError:
        return None


def tail(src: IO[bytes], lines: int) -> tuple[str, bool]:
    """The last ``lines`` lines (decoded, bad bytes replaced) and whether the file holds
    more before them."""
    if not isinstance(src, gzip.GzipFile):
        size = src.seek(0, 2)
        src.seek(max(0, size - TAIL_BYTES))
        skipped = size > TAIL_BYTES
    else:
        skipped = False
    kept: deque[bytes] = deque(maxlen=lines + 1)
    for line in src:
        kept.append(line)
    more = skipped or len(kept) > lines
    if len(kept) > lines:
        kept.popleft()
    return b"".join(kept).decode("utf-8", "replace"), more


def chunks(src: IO[bytes]) -> Iterator[bytes]:
    """The whole file, a chunk at a time (a download does not hold it in memory)."""
    with src:
        while chunk := src.read(CHUNK):
            yield chunk
