"""The audit copy of a submission names the training signal each task answers (what
``baton db rebuild`` needs once a retrain has overwritten that signal on the drive): the
renderer writes it, the rebuild reads the same back, and what does not read is named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from baton.config import Config
from baton.errors import BatonError, InvalidName
from baton.ledger.rebuild import Answered
from baton.pipeline.history import script_answers, script_repair, script_tasks
from baton.slurm.render import render_job

WHEN = datetime(2026, 12, 6, 23, 0, 1, 123456, tzinfo=UTC)


def checkpoints(config: Config, *names: str) -> list[tuple[str, str]]:
    items = []
    for name in names:
        path = config.drive.experiment(name).checkpoint(100)
        path.mkdir(parents=True)
        items.append((name, str(path)))
    return items


def test_each_task_names_its_signal_and_generation(config: Config) -> None:
    items = checkpoints(config, "a", "b")
    triggers = {"a": ("training_complete:a:0123abcd", WHEN.isoformat()),
                "b": ("training_complete:b:4567ef01", "")}
    job = render_job(config, "evaluation", items, generations={"a": 3, "b": 1},
                     triggers=triggers)
    assert script_tasks(job.script) == items
    assert script_answers(job.script, 2) == (
        Answered("training_complete:a:0123abcd", 3, WHEN),
        Answered("training_complete:b:4567ef01", 1, None))
    # written without them (before this change, or by hand): none, as before
    assert script_answers(render_job(config, "evaluation", items).script, 2) == ()


def test_a_signal_that_is_not_one_word_is_refused(config: Config) -> None:
    items = checkpoints(config, "a")
    with pytest.raises(InvalidName, match="cannot be named in a script"):
        render_job(config, "evaluation", items, triggers={"a": ("k\nexit 0", "")})


@pytest.mark.parametrize(("line", "problem"), [
    ("# baton-trigger: task=0 generation=two signal=k", "line 2 .* does not read"),
    ("# baton-trigger: task=0 generation=2", "line 2 .* does not read: 'signal'"),
    ("# baton-trigger: task=0 generation=2 signal=k time=yesterday", "does not read"),
    ("# baton-trigger: task=1 generation=2 signal=k", r"name tasks \[1\], not its 1 task"),
])
def test_a_line_that_does_not_read_is_named(line: str, problem: str) -> None:
    with pytest.raises(BatonError, match=problem):
        script_answers(f"#!/bin/bash\n{line}\nexport BATON_EXPERIMENT=a\n", 1)


def test_a_repair_names_its_supervision(config: Config) -> None:
    """Read back as written, a note with quotes, newlines and a ``#`` included; a line
    that does not read, or names no job, is named."""
    named = {"supervision": 7, "key": "job-3:oom", "submission_key": "supervise:7",
             "repairs": "41_2", "reason": "oom", "note": 'mem "4G"\n# then 8G',
             "new_mem_mb": 8192.0, "new_time_s": None}
    text = render_job(config, "evaluation", checkpoints(config, "a"), attempt=2,
                      repair=named).script
    assert script_repair(text) == named
    assert script_tasks(text) == [("a", str(config.drive.experiment("a").checkpoint(100)))]
    with pytest.raises(BatonError, match=r"line \d+ \(# baton-repair: \.\.\.\) does not read"):
        script_repair("#!/bin/bash\n# baton-repair: {not json\n")
    with pytest.raises(BatonError, match="does not name the job it repairs"):
        script_repair('# baton-repair: {"supervision": 7, "repairs": "41_2", '
                      '"submission_key": "supervise:7"}\n')  # no reason
    assert script_repair("#!/bin/bash\n") is None
