"""What the tracker decides before and after it asks Slurm: when its next poll is due (it
backs off when Slurm answers slowly), which answers are really about its jobs (a job id
Slurm reused for someone else's job reports nothing on ours), and what a job no source
knows said of its own end."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from baton.slurm.states import CONTROLLER, JobStatus, is_terminal

POLL_FACTOR = 5  # the next poll waits at least this many times the last one's duration
# the controller's clock and the ledger's may differ this much (Slurm stamps the submit
# time; baton stamps its claim just before sbatch)
CLOCK_SKEW = timedelta(minutes=5)
# the last line baton's job template prints (baton/slurm/templates/job.sh.j2)
_ENDED = re.compile(rb"\[baton\] (\S+) .* ended with exit code (\d+)\s*$")
TAIL_BYTES = 4096


@dataclass(frozen=True)
class PollClock:
    """When the tracker last asked Slurm and how long the answer took (its cursor)."""

    at: float | None = None
    duration: float = 0.0

    @classmethod
    def parse(cls, cursor: str | None) -> PollClock:
        """A cursor this module wrote; anything else (none yet, an older tracker's) means
        no poll was made."""
        try:
            doc = json.loads(cursor or "")
            return cls(float(doc["at"]), max(0.0, float(doc["duration"])))
        except (ValueError, TypeError, KeyError):
            return cls()

    def dump(self) -> str:
        return json.dumps({"at": self.at, "duration": self.duration})

    def wait(self, interval: float) -> float:
        """Seconds between two polls: the setting, or five times the last poll's duration
        when Slurm answers slowly (a loaded controller is asked less often)."""
        return max(interval, POLL_FACTOR * self.duration)

    def due(self, now: float, interval: float) -> bool:
        return self.at is None or now - self.at >= self.wait(interval)


def own_statuses(rows: Iterable[Any], statuses: Mapping[str, JobStatus]
                 ) -> tuple[dict[str, JobStatus], list[str]]:
    """The statuses that are about the ledger's ``rows`` (each with ``job_id``,
    ``created_at`` and ``submitted_at``), and the ids whose answer was another job's: a
    job id and its submit time are the key, and a job submitted before our row existed
    (and before the submit time recorded for it) is not ours, however its id reads. Slurm
    reuses ids (after MaxJobId, or a controller whose state was reset), and accounting
    then answers with the old job: its end must not end ours."""
    mine: dict[str, JobStatus] = {}
    foreign: list[str] = []
    for row in rows:
        status = statuses.get(row.job_id)
        if status is None:
            continue
        bound = _earliest(row.created_at, row.submitted_at)
        if status.submitted_at is not None and bound is not None \
                and _utc(status.submitted_at) < bound - CLOCK_SKEW:
            foreign.append(row.job_id)
        else:
            mine[row.job_id] = status
    return mine, foreign


def _earliest(*times: datetime | None) -> datetime | None:
    known = [_utc(t) for t in times if t is not None]
    return min(known) if known else None


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def own_word(rows: Iterable[Any], answered: Mapping[str, JobStatus]
             ) -> dict[str, JobStatus]:
    """The end of each unfinished job of ``rows`` that no source answered for (not the
    queue, not accounting, not the controller: slurmdbd down and slurmctld past
    MinJobAge, or an id Slurm reused), as the job itself wrote it: the last line of its
    output, ``[baton] TIME ... ended with exit code N``. A job without that line keeps its
    state: absent from Slurm is never failed for it. The status is the controller's kind
    (no CPU time or MaxRSS), so accounting is asked again for its figures."""
    out: dict[str, JobStatus] = {}
    for row in rows:
        if row.job_id in answered or is_terminal(row.state) or not row.stdout_path:
            continue
        ended = _ended_line(Path(row.stdout_path))
        if ended is not None:
            at, code = ended
            out[row.job_id] = JobStatus(job_id=row.job_id, state="COMPLETED" if code == 0
                                        else "FAILED", exit_code=code, exit_signal=0,
                                        ended_at=at, source=CONTROLLER)
    return out


def _ended_line(path: Path) -> tuple[datetime | None, int] | None:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL_BYTES))
            lines = f.read().splitlines()
    except OSError:
        return None
    m = _ENDED.match(lines[-1]) if lines else None
    if m is None:
        return None
    try:
        at: datetime | None = datetime.fromisoformat(m.group(1).decode().replace("Z", "+00:00"))
    except ValueError:
        at = None
    return at, int(m.group(2))
