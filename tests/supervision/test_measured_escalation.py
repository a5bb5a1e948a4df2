"""A retry sized by what was measured: an out-of-memory retry asks at least MaxRSS x 1.25,
a timeout retry at least the elapsed time x the factor, both capped by the partition's
limits (``scontrol show partition``, real output) and the policy's caps."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest

from baton.config import Config, StageConfig, SupervisionPolicy
from baton.slurm.budget import read_calls
from baton.slurm.factory import make_backend
from baton.slurm.limits import PartitionLimits, parse_partitions, partition_for
from baton.slurm.parse import parse_sacct
from baton.slurm.sbatch import SbatchBackend
from baton.supervision.actions import stage_partition
from baton.supervision.policy import JobFacts, decide, decide_retry
from tests.conftest import DATA
from tests.supervision.test_supervise import NOW, ended, facts

CAPTURE = (DATA / "slurm" / "scontrol_partitions.txt").read_text()
PARTITIONS = parse_partitions(CAPTURE)
LIMITED = PARTITIONS["baton_limits"]  # MaxTime=04:00:00 MaxMemPerNode=8000


def stage(mem: str = "1G", time: str = "01:00:00", **policy: object) -> StageConfig:
    return StageConfig(time=time, mem=mem, cpus=1,
                       supervision=SupervisionPolicy(**policy))  # type: ignore[arg-type]


def test_the_partitions_as_scontrol_prints_them() -> None:
    expected = {
        # no limits of its own; a job gets no more than its one node's 22900M
        "debug": PartitionLimits("debug", default=True, max_time_s=None, max_mem_mb=22900),
        "baton_limits": PartitionLimits("baton_limits", default=False, max_time_s=4 * 3600,
                                        max_mem_mb=8000)}
    assert parse_partitions(CAPTURE) == expected
    assert partition_for(PARTITIONS, None) == PARTITIONS["debug"]  # the default one
    assert partition_for(PARTITIONS, "baton_limits") == LIMITED
    assert partition_for(PARTITIONS, "gone") is None


def test_an_oom_retry_asks_the_measured_maxrss_with_a_margin_real_job_251() -> None:
    """Job 251 of tests/data/slurm: --mem=50M, killed over memory with a MaxRSS near
    300 MB. Doubling the request (100M) would run out again; MaxRSS x 1.25 does not."""
    job = facts(parse_sacct((DATA / "slurm" / "sacct_finished.txt").read_text())["251"])
    assert job.req_mem_mb == 50 and job.max_rss_mb and job.max_rss_mb > 250
    decision = decide(job, "oom", stage(mem="50M"), PARTITIONS["debug"])
    assert decision.action == "resubmit"
    assert decision.mem_mb == pytest.approx(job.max_rss_mb * 1.25)
    # a small MaxRSS: the factor wins
    small = ended("OUT_OF_MEMORY", req_mem_mb=1000, max_rss_mb=1000)
    assert decide(small, "oom", stage()).mem_mb == 2000


def test_an_oom_retry_is_capped_by_the_partition_then_gives_up() -> None:
    job = ended("OUT_OF_MEMORY", req_mem_mb=6000, max_rss_mb=6000)
    decision = decide(job, "oom", stage(), LIMITED)
    assert (decision.action, decision.mem_mb) == ("resubmit", 8000)
    at_cap = decide(ended("OUT_OF_MEMORY", req_mem_mb=8000), "oom", stage(), LIMITED)
    assert at_cap.action == "gave_up" and "partition baton_limits" in at_cap.note
    # the policy's cap, when it is the lower one
    lower = decide(job, "oom", stage(mem_cap="7G"), LIMITED)
    assert lower.mem_mb == 7 * 1024


def test_a_timeout_retry_asks_the_elapsed_time_times_the_factor_capped_by_maxtime() -> None:
    # ran 90 min against a 60 min limit (the site's OverTimeLimit let it run on)
    over = ended("TIMEOUT", req_time_s=3600, started_at=NOW - timedelta(minutes=90))
    assert decide(over, "timeout", stage()).time_s == 3 * 3600  # 90 min x 2, not 2 h
    plain = ended("TIMEOUT", req_time_s=3600, started_at=NOW - timedelta(minutes=60))
    assert decide(plain, "timeout", stage()).time_s == 2 * 3600
    long = ended("TIMEOUT", req_time_s=3 * 3600, started_at=NOW - timedelta(hours=3))
    assert decide(long, "timeout", stage(), LIMITED).time_s == 4 * 3600  # MaxTime
    at_cap = decide(ended("TIMEOUT", req_time_s=4 * 3600), "timeout", stage(), LIMITED)
    assert at_cap.action == "gave_up" and "MaxTime of partition baton_limits" in at_cap.note
    manual = decide_retry(long, stage(), "timeout", partition=LIMITED)
    assert manual.time_s == 4 * 3600


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_the_real_partitions_are_read_once_and_counted(config: Config) -> None:
    from baton.slurm import sbatch

    sbatch._partitions = None  # this process' cache, from an earlier test
    backend = make_backend(config, "sbatch", "daemon")
    assert isinstance(backend, SbatchBackend)
    default = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True,
                             text=True, check=True).stdout.split()
    name = next(p.rstrip("*") for p in default if p.endswith("*"))
    found = stage_partition(config, backend, stage())
    assert found is not None and found.name == name and found.default
    assert stage_partition(config, backend, stage()) == found
    assert read_calls(config.state_dir) == {("scontrol", "daemon"): 1}  # cached


def test_a_backend_without_partitions_leaves_the_policy_caps(config: Config) -> None:
    local = make_backend(config, "local")
    assert stage_partition(config, local, stage()) is None
    job = JobFacts(state="OUT_OF_MEMORY", req_mem_mb=1024, max_rss_mb=1024)
    assert decide(job, "oom", stage(), None).mem_mb == 2048
