"""The local backend with real processes: states, --time, patterns, arrays with %K,
the machine-wide limit, cancel, and survival of the submitting process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baton.slurm.local import LocalBackend
from baton.slurm.spec import JobSpec
from baton.slurm.states import JobStatus


def wait_terminal(backend: LocalBackend, job_id: str, timeout: float = 120
                  ) -> dict[str, JobStatus]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = backend.status([job_id])
        if statuses and all(s.terminal for s in statuses.values()):
            return statuses
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout}s: {backend.status([job_id])}")


def wait_state(backend: LocalBackend, job_id: str, state: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backend.status([job_id]).get(job_id, None) and \
                backend.status([job_id])[job_id].state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never {state}: {backend.status([job_id])}")


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "state", max_concurrent=4)


def submit(backend: LocalBackend, tmp_path: Path, body: str, **spec: object) -> str:
    script = tmp_path / f"job-{time.monotonic_ns()}.sh"
    script.write_text("#!/bin/bash\n" + body + "\n")
    options = {"name": "t", "output": str(tmp_path / "out" / "%j.log"), **spec}
    return backend.submit(JobSpec(script=script.read_text(), **options), script).job_id


def test_completed_with_slurm_environment(backend: LocalBackend, tmp_path: Path) -> None:
    job = submit(backend, tmp_path, 'echo "$SLURM_JOB_ID $SLURM_JOB_NAME $SLURM_CPUS_PER_TASK '
                 '$SLURM_MEM_PER_NODE $SLURM_SUBMIT_DIR"', cpus=2, mem="300M", name="hello")
    status = wait_terminal(backend, job)[job]
    assert (status.state, status.exit_code, status.exit_signal) == ("COMPLETED", 0, 0)
    assert status.started_at and status.ended_at and status.node
    out = (tmp_path / "out" / f"{job}.log").read_text().split()
    assert out == [job, "hello", "2", "300", os.getcwd()]


def test_failed_keeps_exit_code(backend: LocalBackend, tmp_path: Path) -> None:
    job = submit(backend, tmp_path, "exit 3")
    status = wait_terminal(backend, job)[job]
    assert (status.state, status.exit_code) == ("FAILED", 3)


def test_killed_by_signal(backend: LocalBackend, tmp_path: Path) -> None:
    job = submit(backend, tmp_path, "kill -9 $$")
    status = wait_terminal(backend, job)[job]
    assert (status.state, status.exit_code, status.exit_signal) == ("FAILED", 0, 9)


def test_time_limit_gives_timeout(backend: LocalBackend, tmp_path: Path) -> None:
    job = submit(backend, tmp_path, "sleep 600", time="00:00:02")
    status = wait_terminal(backend, job)[job]  # long before the 600 s: the limit killed it
    assert status.state == "TIMEOUT"


def test_trap_ignoring_term_is_killed(backend: LocalBackend, tmp_path: Path) -> None:
    job = submit(backend, tmp_path, "trap '' TERM; sleep 60 & wait; sleep 60", time="00:00:01")
    assert wait_terminal(backend, job)[job].state == "TIMEOUT"


def test_cancel_running_and_pending(backend: LocalBackend, tmp_path: Path) -> None:
    running = submit(backend, tmp_path, "sleep 60")
    wait_state(backend, running, "RUNNING")
    pending = submit(backend, tmp_path, "true", dependency=f"afterok:{running}")
    backend.cancel([pending, running])
    assert wait_terminal(backend, running)[running].state == "CANCELLED"
    assert wait_terminal(backend, pending)[pending].state == "CANCELLED"


def test_dependency(backend: LocalBackend, tmp_path: Path) -> None:
    first = submit(backend, tmp_path, "sleep 1; exit 1")
    after_ok = submit(backend, tmp_path, "true", dependency=f"afterok:{first}")
    after_any = submit(backend, tmp_path, "true", dependency=f"afterany:{first}")
    assert backend.status([after_ok])[after_ok].state == "PENDING"
    assert wait_terminal(backend, after_any)[after_any].state == "COMPLETED"
    status = wait_terminal(backend, after_ok)[after_ok]
    assert (status.state, status.reason) == ("CANCELLED", "DependencyNeverSatisfied")


def test_array_patterns_and_throttle(backend: LocalBackend, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    body = (f'touch {marks}/start-$SLURM_ARRAY_TASK_ID-$(date +%s%N); sleep 0.5; '
            f'touch {marks}/end-$SLURM_ARRAY_TASK_ID-$(date +%s%N); '
            '[ "$SLURM_ARRAY_TASK_ID" = 4 ] && exit 7; echo "$SLURM_ARRAY_JOB_ID '
            '$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT"')
    job = submit(backend, tmp_path, body, array="0-5%2",
                 output=str(tmp_path / "out" / "%A_%a.log"))
    statuses = wait_terminal(backend, job, 60)
    assert sorted(statuses) == [f"{job}_{i}" for i in range(6)]
    assert statuses[f"{job}_4"].state == "FAILED" and statuses[f"{job}_4"].exit_code == 7
    assert all(s.state == "COMPLETED" for k, s in statuses.items() if k != f"{job}_4")
    assert (tmp_path / "out" / f"{job}_1.log").read_text().split() == [job, "1", "6"]
    events = sorted((int(p.name.split("-")[2]), p.name.split("-")[0]) for p in marks.iterdir())
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2  # %2: never more than two at once, and the slots were used


def test_machine_wide_limit(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state", max_concurrent=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    body = f"touch {marks}/s-$(date +%s%N); sleep 0.4; touch {marks}/e-$(date +%s%N)"
    jobs = [submit(backend, tmp_path, body) for _ in range(3)]
    for job in jobs:
        assert wait_terminal(backend, job)[job].state == "COMPLETED"
    events = sorted((int(p.name[2:]), p.name[0]) for p in marks.iterdir())
    assert [k for _, k in events] == ["s", "e"] * 3  # strictly one after the other


def test_job_outlives_the_submitting_process(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from baton.slurm.local import LocalBackend\nfrom baton.slurm.spec import JobSpec\n"
        f"p = Path({str(tmp_path)!r}) / 'j.sh'\n"
        f"p.write_text('#!/bin/bash\\nsleep 2; echo done > {tmp_path}/done\\n')\n"
        f"b = LocalBackend(Path({str(tmp_path)!r}) / 'state')\n"
        "print(b.submit(JobSpec(name='x', script=p.read_text(),\n"
        f"                       output={str(tmp_path / 'x-%j.out')!r}), p).job_id)\n"
    )
    job = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30).stdout.strip()
    backend = LocalBackend(tmp_path / "state")
    assert wait_terminal(backend, job)[job].state == "COMPLETED"
    assert (tmp_path / "done").read_text() == "done\n"


def test_lost_runner_is_reported(backend: LocalBackend, tmp_path: Path) -> None:
    job = submit(backend, tmp_path, "sleep 30")
    wait_state(backend, job, "RUNNING")
    pid = int((backend.root / "runners" / f"{job}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120  # generous: noticed at the next look, however slow
    while backend.status([job])[job].state == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = backend.status([job])[job]
    assert status.state == "NODE_FAIL" and "runner" in status.reason


def test_unknown_ids_are_left_out(backend: LocalBackend) -> None:
    assert backend.status(["999", "999_1"]) == {}
