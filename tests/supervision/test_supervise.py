"""Supervision decisions (pure): classification of finished and late jobs, the per-stage
policy, and the configuration's errors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from baton.config import StageConfig, SupervisionPolicy, load_config
from baton.errors import ConfigError
from baton.slurm.parse import parse_sacct
from baton.slurm.states import JobStatus
from baton.supervision.policy import SETTLE_SECONDS, JobFacts, classify, decide, decide_retry
from tests.conftest import DATA

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
AGO = NOW - timedelta(seconds=SETTLE_SECONDS + 1)
POLICY = SupervisionPolicy()


def stage(**policy: object) -> StageConfig:
    return StageConfig(time="01:00:00", mem="1G", cpus=1,
                       supervision=SupervisionPolicy(**policy))  # type: ignore[arg-type]


def ended(state: str, **kw: object) -> JobFacts:
    base: dict[str, object] = dict(req_mem_mb=1024, req_time_s=3600, ended_at=NOW,
                                   cpu_seconds=1.0)
    return JobFacts(state=state, **{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("job", "reason"), [
    (ended("OUT_OF_MEMORY"), "oom"),
    (ended("FAILED", exit_code=0, exit_signal=9, max_rss_mb=1100), "oom"),
    (ended("FAILED", exit_code=137, max_rss_mb=1024), "oom"),
    (ended("FAILED", exit_code=0, exit_signal=9, max_rss_mb=500), "failed"),  # killed, not OOM
    (ended("FAILED", exit_code=3), "failed"),
    (ended("TIMEOUT"), "timeout"),
    (ended("NODE_FAIL"), "node_fail"),
    (ended("LOST"), "node_fail"),
    (ended("PREEMPTED"), "preempted"),
    (ended("COMPLETED"), None),
    (ended("CANCELLED"), None),
    (ended("SUBMIT_FAILED"), None),
])
def test_classify_finished_jobs(job: JobFacts, reason: str | None) -> None:
    assert classify(job, NOW, POLICY) == reason


def test_a_failure_waits_for_its_accounting_data() -> None:
    early = ended("FAILED", exit_signal=9, cpu_seconds=None)
    assert classify(early, NOW, POLICY) is None  # MaxRSS may still say over memory
    assert classify(ended("FAILED", exit_signal=9, cpu_seconds=None, ended_at=AGO), NOW,
                    POLICY) == "failed"


def facts(status: JobStatus, req_mem_mb: float | None = None) -> JobFacts:
    """What the ledger holds after the tracker applied ``status`` to a fresh row."""
    known = {f: getattr(status, f) for f in JobFacts.__dataclass_fields__
             if hasattr(status, f)}
    return JobFacts(**{**known, "req_mem_mb": req_mem_mb or status.req_mem_mb})


def test_a_sigkill_without_maxrss_waits_for_it_real_job_251() -> None:
    """Job 251 of tests/data/slurm (``--mem=50M``, 300 MB allocated, killed by
    OverMemoryKill): ``sacct --allocations`` says FAILED 0:9 with CPU time 00:00:00 and no
    MaxRSS (the allocation line never has one). It is not classified as a plain failure,
    a permanent decision, until the settle time has passed without a MaxRSS; once the
    step's MaxRSS is known, it is over memory."""
    alloc = parse_sacct((DATA / "slurm" / "sacct_allocations.txt").read_text())["251"]
    job = facts(alloc)
    assert (job.state, job.exit_code, job.exit_signal, job.max_rss_mb) == ("FAILED", 0, 9,
                                                                          None)
    assert job.cpu_seconds == 0  # accounting has arrived: CPU time alone does not wait
    end = job.ended_at
    assert classify(job, end + timedelta(seconds=10), POLICY) is None
    assert classify(job, end + timedelta(seconds=SETTLE_SECONDS - 1), POLICY) is None
    assert classify(job, end + timedelta(seconds=SETTLE_SECONDS + 1), POLICY) == "failed"
    full = parse_sacct((DATA / "slurm" / "sacct_finished.txt").read_text())["251"]
    assert classify(facts(full), end + timedelta(seconds=10), POLICY) == "oom"
    # a plain failure (exit 3, job 250) with its accounting in is decided at once
    plain = facts(parse_sacct((DATA / "slurm" / "sacct_allocations.txt").read_text())["250"])
    assert classify(plain, plain.ended_at, POLICY) == "failed"


def test_node_failure_and_preemption_from_sacct_lines() -> None:
    """NODE_FAIL, PREEMPTED and BOOT_FAIL in sacct's format (constructed: the single-node
    cluster cannot fail its node or preempt safely; see tests/data/slurm/README.md), through
    the parser to the decision: resubmitted with the same resources."""
    jobs = parse_sacct((DATA / "slurm" / "sacct_constructed_node_fail_preempted.txt")
                       .read_text())
    expected = {"270": ("NODE_FAIL", "node_fail"), "271": ("PREEMPTED", "preempted"),
                "272": ("BOOT_FAIL", "node_fail")}
    for job_id, (state, reason) in expected.items():
        job = facts(jobs[job_id])
        assert job.state == state
        assert classify(job, job.ended_at, POLICY) == reason  # no wait for accounting
        d = decide(job, reason, stage())
        assert (d.action, d.mem_mb, d.time_s) == ("resubmit", 11450, 3600)
        assert d.note.endswith("resubmitting unchanged")
        assert decide(replace(job, attempt=3), reason, stage()).action == "gave_up"


def test_late_jobs() -> None:
    policy = SupervisionPolicy(late_pending_seconds=600, late_running_factor=1.5)
    waiting = JobFacts("PENDING", submitted_at=NOW - timedelta(seconds=601))
    assert classify(waiting, NOW, policy) == "late_pending"
    assert classify(JobFacts("PENDING", submitted_at=NOW - timedelta(seconds=599)), NOW,
                    policy) is None
    assert classify(waiting, NOW, SupervisionPolicy(late_pending_seconds=None)) is None
    running = JobFacts("RUNNING", req_time_s=3600, started_at=NOW - timedelta(seconds=400))
    assert classify(running, NOW, policy, expected_seconds=200) == "late_running"
    assert classify(running, NOW, policy, expected_seconds=300) is None
    assert classify(running, NOW, policy) is None  # 400 s of a 3600 s limit


def test_late_running_without_expected_seconds_is_measured_against_the_time_limit() -> None:
    """Without the stage's expected_seconds a running job is late once it has used 90% of
    its time limit (Slurm ends it at the limit: any factor >= 1 of it would never fire)."""
    policy = SupervisionPolicy(late_running_factor=2.0)

    def ran(seconds: float) -> JobFacts:
        return JobFacts("RUNNING", req_time_s=3600, started_at=NOW - timedelta(seconds=seconds))

    assert classify(ran(3239), NOW, policy) is None
    assert classify(ran(3241), NOW, policy) == "late_running"  # before Slurm's 3600
    assert classify(JobFacts("RUNNING", started_at=NOW - timedelta(days=9)), NOW,
                    policy) is None  # no time limit, no expected time: never late
    # with expected_seconds, factor x expected, but never past 90% of the limit
    assert classify(ran(1300), NOW, policy, expected_seconds=600) == "late_running"
    assert classify(ran(1100), NOW, policy, expected_seconds=600) is None
    assert classify(ran(3241), NOW, policy, expected_seconds=3000) == "late_running"
    d = decide(ran(3241), "late_running", stage())
    assert d.action == "alert" and "90% of its time limit 01:00:00" in d.note


def test_oom_doubles_memory_up_to_the_cap_then_gives_up() -> None:
    s = stage(mem_cap="3G", max_attempts=5)
    first = decide(ended("OUT_OF_MEMORY", req_mem_mb=1024), "oom", s)
    assert (first.action, first.mem_mb, first.time_s) == ("resubmit", 2048, 3600)
    assert "resubmitting with 2G" in first.note
    capped = decide(ended("OUT_OF_MEMORY", req_mem_mb=2048, attempt=2), "oom", s)
    assert (capped.action, capped.mem_mb) == ("resubmit", 3072)
    at_cap = decide(ended("OUT_OF_MEMORY", req_mem_mb=3072, attempt=3), "oom", s)
    assert at_cap.action == "gave_up" and "cap 3G" in at_cap.note


def test_timeout_grows_the_time_limit() -> None:
    d = decide(ended("TIMEOUT"), "timeout", stage(time_factor=1.5))
    assert (d.action, d.time_s, d.mem_mb) == ("resubmit", 5400, 1024)
    assert d.note == "timed out at 01:00:00: resubmitting with 01:30:00"


def test_never_beyond_max_attempts() -> None:
    d = decide(ended("NODE_FAIL", attempt=3), "node_fail", stage(max_attempts=3))
    assert d.action == "gave_up" and "attempt 3 of 3" in d.note


def test_node_failure_and_preemption_resubmit_unchanged() -> None:
    for state, reason in (("NODE_FAIL", "node_fail"), ("PREEMPTED", "preempted")):
        d = decide(ended(state), reason, stage())
        assert (d.action, d.mem_mb, d.time_s) == ("resubmit", 1024, 3600)


def test_plain_failures_only_when_configured() -> None:
    job = ended("FAILED", exit_code=3)
    d = decide(job, "failed", stage())
    assert d.action == "none" and "resubmit_failed" in d.note and "exit 3:0" in d.note
    assert decide(job, "failed", stage(resubmit_failed=True)).action == "resubmit"


def test_late_action_from_the_policy() -> None:
    job = JobFacts("RUNNING", started_at=NOW)
    assert decide(job, "late_running", stage()).action == "alert"
    assert decide(job, "late_running", stage(late_action="cancel")).action == "cancel"


def test_manual_retry_goes_past_the_policy() -> None:
    at_cap = ended("OUT_OF_MEMORY", req_mem_mb=2048, attempt=9)
    d = decide_retry(at_cap, stage(mem_cap="2G"), "oom")
    assert (d.action, d.mem_mb) == ("resubmit", 2048)
    d = decide_retry(at_cap, stage(), "oom", mem_mb=8192)
    assert (d.action, d.mem_mb, d.time_s) == ("resubmit", 8192, 3600)


@pytest.mark.parametrize(("yaml_policy", "message"), [
    ("mem_cap: 512M", "stages.evaluation: supervision.mem_cap 512M is below the stage's "
                      "mem 1G"),
    ("time_cap: '00:30:00'", "stages.evaluation: supervision.time_cap 00:30:00 is below "
                              "the stage's time 01:00:00"),
    ("mem_cap: lots", "stages.evaluation.supervision.mem_cap: invalid memory 'lots'"),
    ("max_attempts: 0", "stages.evaluation.supervision.max_attempts: Input should be "
                        "greater than or equal to 1"),
    ("late_action: reboot", "stages.evaluation.supervision.late_action: Input should be "
                            "'alert' or 'cancel'"),
    ("retries: 3", "stages.evaluation.supervision.retries: unknown key"),
])
def test_bad_policy_says_what_and_where(tmp_path: Path, yaml_policy: str, message: str
                                        ) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text("stages:\n  evaluation:\n    time: '01:00:00'\n    mem: 1G\n    cpus: 1\n"
                    f"    supervision:\n      {yaml_policy}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert f"{path}: {message}" in str(err.value)


def test_default_policy() -> None:
    cfg = load_config(None, env={}).stage("evaluation").supervision
    assert (cfg.enabled, cfg.max_attempts, cfg.mem_factor, cfg.resubmit_failed,
            cfg.late_action) == (True, 3, 2.0, False, "alert")


def test_readme_policy_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "operator" / "supervision.md"
              ).read_text()
    start = readme.index("# baton.yaml: the per-stage policy")
    path = tmp_path / "baton.yaml"
    path.write_text(readme[start:readme.index("```", start)])
    cfg = load_config(path, env={})
    assert cfg.stage("evaluation").supervision.late_action == "cancel"
    assert cfg.stage("analysis").supervision.resubmit_failed is True
