"""Parsers on output captured from the real single-node cluster (tests/data/slurm)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.slurm.parse import (
    expand_array_spec,
    parse_sacct,
    parse_sbatch_parsable,
    parse_scontrol,
    parse_scontrol_record,
    parse_squeue,
)
from baton.slurm.sbatch import TRANSIENT_MARKERS

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_sbatch_parsable() -> None:
    lines = read("sbatch_parsable.txt").splitlines()
    assert [parse_sbatch_parsable(x) for x in lines] == [("249", None), ("254", None)]
    assert parse_sbatch_parsable("1234;cluster2\n") == ("1234", "cluster2")
    with pytest.raises(ValueError, match="not a job id"):
        parse_sbatch_parsable(read("sbatch_ctld_down.txt"))


def test_controller_down_is_transient() -> None:
    message = read("sbatch_ctld_down.txt").lower()
    assert any(marker in message for marker in TRANSIENT_MARKERS)


def test_sacct_finished_jobs() -> None:
    jobs = parse_sacct(read("sacct_finished.txt"))
    ok, fail, oom = jobs["249"], jobs["250"], jobs["251"]
    assert (ok.state, ok.exit_code, ok.exit_signal, ok.node) == ("COMPLETED", 0, 0, "vm")
    assert ok.submitted_at == datetime(2026, 11, 21, 23, 5, 49, tzinfo=UTC)
    assert ok.req_mem_mb == 11450 and ok.req_cpus == 1 and ok.req_time_s is None  # UNLIMITED
    assert (fail.state, fail.exit_code) == ("FAILED", 3)
    # over memory without cgroups: FAILED, signal 9, MaxRSS (from the batch step) over ReqMem
    assert (oom.state, oom.exit_code, oom.exit_signal) == ("FAILED", 0, 9)
    assert oom.req_mem_mb == 50 and oom.max_rss_mb == pytest.approx(323672 / 1024)
    assert jobs["252"].state == "CANCELLED"  # "CANCELLED by 0"
    timeout = jobs["253"]
    assert timeout.state == "TIMEOUT" and timeout.req_time_s == 60
    assert (timeout.ended_at - timeout.started_at).total_seconds() == 70
    assert timeout.cpu_seconds == pytest.approx(0.003)


def test_sacct_array_tasks() -> None:
    jobs = parse_sacct(read("sacct_finished.txt"))
    tasks = {k: v for k, v in jobs.items() if k.startswith("254_")}
    assert sorted(tasks) == ["254_0", "254_1", "254_2", "254_3"]
    assert tasks["254_2"].state == "FAILED" and tasks["254_2"].exit_code == 7
    assert tasks["254_0"].raw_job_id == "257" and tasks["254_0"].array_job_id == "254"
    assert all(t.array_task_id == int(k[-1]) for k, t in tasks.items())


def test_sacct_while_running_and_pending() -> None:
    jobs = parse_sacct(read("sacct_running_later.txt"))
    assert jobs["253"].state == "RUNNING" and jobs["253"].ended_at is None
    assert jobs["255"].state == "PENDING" and jobs["255"].started_at is None
    assert jobs["255"].node is None  # "None assigned"
    assert jobs["254_1"].state == "RUNNING"
    # a pending range of an array is expanded into its tasks
    assert jobs["254_2"].state == jobs["254_3"].state == "PENDING"
    assert jobs["254_3"].array_job_id == "254"


def test_sacct_requeued_counts_restarts() -> None:
    with_dups = parse_sacct(read("sacct_requeued.txt"))["260"]
    assert with_dups.state == "COMPLETED" and with_dups.restarts == 1
    assert with_dups.max_rss_mb == pytest.approx(4864 / 1024)  # this run's step, not the first
    plain = parse_sacct(read("sacct_requeued_noduplicates.txt"))["260"]
    assert plain.state == "COMPLETED" and plain.restarts == 0


def test_sacct_allocations_and_unknown() -> None:
    jobs = parse_sacct(read("sacct_allocations.txt"))
    assert jobs["251"].state == "FAILED" and jobs["251"].max_rss_mb is None  # no step lines
    assert parse_sacct(read("sacct_unknown.txt")) == {}


def test_sacct_rejects_foreign_format() -> None:
    with pytest.raises(ValueError, match="fields"):
        parse_sacct("249|COMPLETED\n")


def test_squeue() -> None:
    jobs = parse_squeue(read("squeue.txt"))
    assert jobs["253"].state == "RUNNING" and jobs["253"].req_time_s == 60
    assert jobs["254_0"].req_time_s == 365 * 86400
    assert jobs["255"].reason == "JobHeldUser" and jobs["255"].started_at is None
    assert jobs["254_3"].array_job_id == "254" and jobs["254_3"].array_task_id == 3
    assert jobs["256"].reason == "Dependency"
    everything = parse_squeue(read("squeue_states_all.txt"))
    assert everything["250"].state == "FAILED"


def test_scontrol_states() -> None:
    def one(name: str):
        (status,) = parse_scontrol(read(name)).values()
        return status

    assert one("scontrol_completed.txt").state == "COMPLETED"
    failed = one("scontrol_failed.txt")
    assert (failed.state, failed.exit_code) == ("FAILED", 3)
    oom = one("scontrol_oom.txt")
    assert (oom.state, oom.exit_signal) == ("FAILED", 9)
    assert one("scontrol_timeout.txt").state == "TIMEOUT"
    assert one("scontrol_cancelled.txt").state == "CANCELLED"
    running = one("scontrol_running_timelimit.txt")
    assert running.state == "RUNNING" and running.ended_at is None and running.started_at
    held = one("scontrol_pending_held.txt")
    assert held.state == "PENDING" and held.reason == "JobHeldUser" and held.started_at is None
    assert one("scontrol_pending_dependency_never.txt").reason == "DependencyNeverSatisfied"
    requeued = one("scontrol_requeued.txt")
    assert requeued.restarts == 1
    task = one("scontrol_array_task_failed.txt")
    assert task.job_id == "254_2" and task.exit_code == 7 and task.raw_job_id == "259"
    assert task.stdout_path and task.stdout_path.endswith(".out")


def test_scontrol_array_and_unknown() -> None:
    tasks = parse_scontrol(read("scontrol_array_all.txt"))
    assert sorted(tasks) == ["254_0", "254_1", "254_2", "254_3"]
    assert parse_scontrol(read("scontrol_unknown.txt")) == {}


def test_scontrol_values_with_spaces_and_colons() -> None:
    kv = parse_scontrol_record("JobId=1 JobName=my job AllocNode:Sid=localhost:1023 "
                               "Comment=two words Power=")
    assert kv == {"JobId": "1", "JobName": "my job", "AllocNode:Sid": "localhost:1023",
                  "Comment": "two words", "Power": ""}


@pytest.mark.parametrize(("spec", "tasks"), [("0-3", [0, 1, 2, 3]), ("1,3,5", [1, 3, 5]),
                                              ("0-6:2%2", [0, 2, 4, 6]), ("7", [7])])
def test_expand_array_spec(spec: str, tasks: list[int]) -> None:
    assert expand_array_spec(spec) == tasks
