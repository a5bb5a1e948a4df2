"""``baton logs JOBID``: a Slurm job's stdout (or stderr), where the ledger says it writes
it; ``--follow`` keeps printing what the job adds until the ledger says it ended."""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import sys
import time
from pathlib import Path
from typing import IO, Any

from baton.cli.argtypes import usage_error
from baton.cli.common import config_from
from baton.errors import BatonError

POLL_SECONDS = 1.0  # one stat and one read of the file per second while following
STATE_EVERY = 5  # ... and the job's state from the ledger every 5 polls


def cmd_logs(args: argparse.Namespace) -> int:
    from baton.ledger import open_ledger

    config = config_from(args)
    ledger = open_ledger(config.ledger_url, read_only=True)
    try:
        row = _job(ledger, args.job_id)
        kind = "stderr" if args.stderr else "stdout"
        path = getattr(row, f"{kind}_path")
        if not path:
            raise BatonError(f"job {args.job_id}: the ledger holds no {kind} path for it")
        out = sys.stdout.buffer
        if not args.follow:
            _print_whole(Path(path), args.job_id, kind, row.state, out)
            return 0
        # Ctrl-C stops it: the CLI's exit 130, with no traceback and no message
        _follow(Path(path), lambda: _job(ledger, args.job_id).state, out)
        return 0
    finally:
        ledger.close()


def _job(ledger: Any, job_id: str) -> Any:
    row = ledger.jobs_by_job_id([job_id]).get(job_id)
    if row is None:
        raise BatonError(f"job {job_id} is not in the ledger (`baton slurm status {job_id}` "
                         "asks Slurm)")
    return row


def _print_whole(path: Path, job_id: str, kind: str, state: str, out: IO[bytes]) -> None:
    """The log as it is now; one `baton db prune` compressed (``.gz``) is read as well."""
    packed = path.with_name(path.name + ".gz")
    if path.is_file():
        with open(path, "rb") as src:
            shutil.copyfileobj(src, out)
    elif packed.is_file():
        with gzip.open(packed, "rb") as src:
            shutil.copyfileobj(src, out)
    else:
        raise BatonError(f"job {job_id} ({state}): its {kind} {path} is not written yet"
                         if not _ended(state) else
                         f"job {job_id} ({state}): its {kind} {path} does not exist")
    out.flush()


def _ended(state: str) -> bool:
    from baton.slurm.states import is_terminal

    return is_terminal(state)


def _follow(path: Path, state_of: Any, out: IO[bytes]) -> None:
    """Like ``tail -f`` from the start of the file: what is there, then what is added,
    until the ledger says the job ended (its tracker updates it); the file may appear
    late (a pending job)."""
    offset, polls = 0, 0
    while True:
        # the state before the read: a job that had ended has written all it will
        ended = polls % STATE_EVERY == 0 and _ended(state_of())
        offset = _copy_new(path, offset, out)
        if ended:
            return
        time.sleep(POLL_SECONDS)
        polls += 1


def _copy_new(path: Path, offset: int, out: IO[bytes]) -> int:
    """What ``path`` holds past ``offset``, written to ``out``; the new offset (0 again
    for a file that was truncated or replaced by a shorter one)."""
    try:
        with open(path, "rb") as src:
            if src.seek(0, 2) < offset:
                offset = 0
            src.seek(offset)
            while chunk := src.read(1 << 16):
                out.write(chunk)
                offset += len(chunk)
    except FileNotFoundError:
        return offset
    out.flush()
    return offset


@usage_error
def job_id(value: str) -> str:
    """Slurm's job id: 123, or 123_4 for an array's task."""
    if not re.fullmatch(r"\d{1,20}(_\d{1,10})?", value):
        raise ValueError(f"{value!r} is not a Slurm job id (123, or 123_4 for an array task)")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="print a Slurm job's stdout (or --stderr), as the ledger "
                       "records where it writes it")
    p.add_argument("job_id", metavar="JOBID", type=job_id,
                   help="Slurm's job id (123, or 123_4 for an array task)")
    p.add_argument("--stderr", action="store_true", help="the job's stderr, not its stdout")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing what the job writes until it ends (Ctrl-C stops)")
    p.set_defaults(func=cmd_logs)
