"""Jobs by their comment (baton's submission token) from accounting, parsed from output
captured on the real cluster with ``AccountingStoreFlags=job_comment``
(tests/data/slurm/sacct_comments.txt): what ``baton db rebuild`` matches the drive's
scripts with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.slurm.parse import SACCT_FIELDS, parse_sacct_comments

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"


def test_jobs_by_comment_single_and_array() -> None:
    jobs = parse_sacct_comments((DATA / "sacct_comments.txt").read_text())
    assert sorted(jobs) == ["baton-0123456789abcdef0123", "baton-testcomment"]
    [single] = jobs["baton-testcomment"].values()
    assert (single.job_id, single.state, single.array_task_id) == ("1714", "COMPLETED", None)
    assert single.submitted_at == datetime(2026, 12, 6, 22, 21, 43, tzinfo=UTC)
    assert single.cpu_seconds is not None  # the figures of the finished job
    tasks = jobs["baton-0123456789abcdef0123"]
    assert sorted(tasks) == ["1715_0", "1715_1"]
    assert {(t.array_job_id, t.array_task_id, t.state) for t in tasks.values()} == {
        ("1715", 0, "COMPLETED"), ("1715", 1, "COMPLETED")}


def test_a_job_without_comment_is_left_out_and_comment_must_be_last() -> None:
    line = "99|99|wrap|COMPLETED|0:0|2026-12-06T22:21:43|2026-12-06T22:21:44|" \
           "2026-12-06T22:21:44|0|100M|1|5||00:00.002|0|vm|debug|0:0|"
    assert parse_sacct_comments(line + "\n") == {}
    with_pipe = line + "a|b\n"  # a comment is the rest of the line
    assert list(parse_sacct_comments(with_pipe)) == ["a|b"]
    with pytest.raises(ValueError, match="last"):
        parse_sacct_comments(line, ("Comment", *SACCT_FIELDS))
