"""The sbatch backend against the real single-node Slurm (deploy/slurm/single-node.sh).

The slow scenarios (a time-out, an over-memory job, an array) are submitted together at
the start, so their waits overlap."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from baton.config import Config
from baton.ledger import open_ledger
from baton.pipeline.submission import submit_jobs
from baton.slurm.sbatch import SbatchBackend, run_command
from baton.slurm.spec import JobSpec
from baton.slurm.states import JobStatus

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]
ROOT = Path(__file__).resolve().parents[2]
SINGLE_NODE = ROOT / "deploy" / "slurm" / "single-node.sh"


class Recorder:
    """Runs the real commands and remembers which ones ran."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return run_command(argv)

    def count(self, command: str) -> int:
        return sum(1 for c in self.calls if c[0] == command)


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.sh"
    path.write_text(f"#!/bin/bash\n{body}\n")
    return path


def submit(backend: SbatchBackend, folder: Path, name: str, body: str, **options: object
           ) -> str:
    path = write_script(folder, name, body)
    spec = JobSpec(name=name, script=path.read_text(), time=options.pop("time", "00:05:00"),
                   mem=options.pop("mem", "100M"), output=str(folder / "%j.out"), **options)
    return backend.submit(spec, path).job_id


def wait_done(backend: SbatchBackend, ids: list[str], timeout: float = 240
              ) -> dict[str, JobStatus]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = backend.status(ids)
        if all(i in statuses and statuses[i].terminal for i in ids):
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"not finished after {timeout}s: "
                                 f"{ {i: statuses.get(i) for i in ids} }")
        time.sleep(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slurm")


@pytest.fixture(scope="module")
def backend() -> SbatchBackend:
    return SbatchBackend(base_delay=0.5)


@pytest.fixture(scope="module")
def scenarios(backend: SbatchBackend, workdir: Path) -> dict[str, str]:
    """Every slow scenario, submitted at once."""
    hog = ('python3 -c "b = bytearray(400 * 1024 * 1024); import time; '
           'b[::4096] = b\'x\' * len(b[::4096]); time.sleep(20)"')
    jobs = {
        "timeout": submit(backend, workdir, "timeout", "sleep 300", time="1"),
        "ok": submit(backend, workdir, "ok", "echo hello; sleep 1"),
        "fail": submit(backend, workdir, "fail", "echo failing >&2; exit 3"),
        "oom": submit(backend, workdir, "oom", hog, mem="50M"),
    }
    array = submit(backend, workdir, "array", '[ "$SLURM_ARRAY_TASK_ID" = 2 ] && exit 4; true',
                   array="0-3%2")
    jobs.update({f"array_{i}": f"{array}_{i}" for i in range(4)})
    return jobs


def test_completed(backend: SbatchBackend, scenarios: dict[str, str], workdir: Path) -> None:
    job = scenarios["ok"]
    status = wait_done(backend, [job])[job]
    assert (status.state, status.exit_code, status.exit_signal) == ("COMPLETED", 0, 0)
    assert status.started_at and status.ended_at and status.node
    assert status.req_mem_mb == 100 and status.req_time_s == 300
    assert (workdir / f"{job}.out").read_text() == "hello\n"


def test_failed_with_exit_code(backend: SbatchBackend, scenarios: dict[str, str]) -> None:
    job = scenarios["fail"]
    status = wait_done(backend, [job])[job]
    assert (status.state, status.exit_code) == ("FAILED", 3)


def test_array_tasks(backend: SbatchBackend, scenarios: dict[str, str]) -> None:
    ids = [scenarios[f"array_{i}"] for i in range(4)]
    statuses = wait_done(backend, ids)
    assert [statuses[i].state for i in ids] == ["COMPLETED", "COMPLETED", "FAILED", "COMPLETED"]
    assert statuses[ids[2]].exit_code == 4
    assert {statuses[i].array_task_id for i in ids} == {0, 1, 2, 3}


def test_over_memory(backend: SbatchBackend, scenarios: dict[str, str]) -> None:
    job = scenarios["oom"]
    status = wait_done(backend, [job])[job]
    # without cgroups: FAILED by signal 9 with MaxRSS over the request; with: OUT_OF_MEMORY
    assert status.state in ("FAILED", "OUT_OF_MEMORY"), status
    if status.state == "FAILED":
        assert status.exit_signal == 9 or status.exit_code == 137, status
        assert status.max_rss_mb is not None and status.max_rss_mb >= status.req_mem_mb


def test_timeout(backend: SbatchBackend, scenarios: dict[str, str]) -> None:
    job = scenarios["timeout"]
    status = wait_done(backend, [job], timeout=300)[job]
    assert status.state == "TIMEOUT" and status.req_time_s == 60


def test_cancelled(backend: SbatchBackend, workdir: Path) -> None:
    job = submit(backend, workdir, "cancel", "sleep 300")
    deadline = time.monotonic() + 60
    while backend.status([job])[job].state == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
    backend.cancel([job])
    assert wait_done(backend, [job])[job].state == "CANCELLED"


def test_hundred_jobs_squeue_while_queued_sacct_in_bounded_batches_once_left(
        workdir: Path) -> None:
    recorder = Recorder()
    backend = SbatchBackend(runner=recorder, ids_per_call=40)
    ids = [submit(backend, workdir, f"held{i}", "true", extra=("--hold",)) for i in range(100)]
    recorder.calls.clear()
    try:
        statuses = backend.status(ids)
        assert all(statuses[i].state == "PENDING" for i in ids)
        # still queued: one squeue answers for all of them (the controller filters by
        # user), accounting is not asked
        assert [c[0] for c in recorder.calls] == ["squeue"], recorder.calls
    finally:
        recorder.calls.clear()
        backend.cancel(ids)
        assert recorder.count("scancel") == 1
    assert all(s.state == "CANCELLED" for s in wait_done(backend, ids, 60).values())
    deadline = time.monotonic() + 60
    while True:  # slurmdbd hears of the cancellations a little after the controller
        recorder.calls.clear()
        left = backend.status(ids, known=dict.fromkeys(ids, "PENDING"))
        if recorder.count("scontrol") == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(left[i].state == "CANCELLED" for i in ids)
    # gone from the queue: sacct, at most 40 ids a call (100 -> 3 calls)
    assert recorder.count("squeue") == 1 and recorder.count("sacct") == 3, recorder.calls
    assert max(len(c[-1].split(",")) for c in recorder.calls if c[0] == "sacct") == 40


def test_controller_fallback_without_accounting(backend: SbatchBackend, workdir: Path) -> None:
    recorder = Recorder()
    plain = SbatchBackend(runner=recorder)
    plain.accounting = False  # as where AccountingStorageType is none
    job = submit(plain, workdir, "noacct", "exit 5")
    status = wait_done(plain, [job])[job]
    assert (status.state, status.exit_code) == ("FAILED", 5)
    assert recorder.count("sacct") == 0 and recorder.count("scontrol") >= 1


def test_submission_while_controller_is_down(workdir: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    backend = SbatchBackend(attempts=10, base_delay=1.0, cap_delay=8.0)
    subprocess.run([str(SINGLE_NODE), "ctld-stop"], check=True, timeout=120)
    result: dict[str, object] = {}

    def go() -> None:
        try:
            result["job"] = submit(backend, workdir, "during_outage", "echo survived")
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=go)
    try:
        thread.start()
        # sbatch itself gives up after ~9 s: stay down longer, so baton's backoff retries
        time.sleep(15)
        assert thread.is_alive(), f"submission did not wait for the controller: {result}"
    finally:
        subprocess.run([str(SINGLE_NODE), "ctld-start"], check=True, timeout=180)
    thread.join(180)
    assert "error" not in result, result
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries and "Unable to contact slurm controller" in retries[0]
    job = str(result["job"])
    assert wait_done(backend, [job])[job].state == "COMPLETED"
    assert (workdir / f"{job}.out").read_text() == "survived\n"


def test_stage_jobs_through_the_ledger(config: Config, tmp_path: Path) -> None:
    """A stage job rendered from its template, submitted once, tracked to its end."""
    cfg = config.model_copy(update={"stages": {**config.stages, "evaluation":
        config.stage("evaluation").model_copy(update={
            "mem": "100M", "cpus": 1, "time": "00:05:00",
            "command": 'echo "evaluating $BATON_EXPERIMENT at $BATON_CHECKPOINT"'})}})
    ledger = open_ledger(cfg.ledger_url, init=True)
    backend = SbatchBackend(base_delay=0.5)
    ckpts = [str(cfg.drive.experiment(f"exp{i}").final_dir) for i in range(3)]
    for ckpt in ckpts:  # a submission refuses a checkpoint that is not there
        Path(ckpt).mkdir(parents=True)
    items = [(f"exp{i}", c) for i, c in enumerate(ckpts)]
    first = submit_jobs(cfg, ledger, backend, "evaluation", items)
    again = submit_jobs(cfg, ledger, backend, "evaluation", items)
    assert all(o.submitted_now for o in first) and not any(o.submitted_now for o in again)
    ids = [o.job_id for o in first]
    assert len({i.split("_")[0] for i in ids}) == 1  # one array for the three
    wait_done(backend, ids)
    deadline = time.monotonic() + 60
    while unfinished := ledger.unfinished_jobs():  # what the tracker sensor does each tick
        ledger.apply_statuses(backend.status([r.job_id for r in unfinished]))
        assert time.monotonic() < deadline, [r._asdict() for r in ledger.unfinished_jobs()]
        time.sleep(1)
    rows = ledger.jobs(stage="evaluation")
    assert [r.state for r in rows] == ["COMPLETED"] * 3
    assert all(r.ended_at and r.node and r.cpu_seconds is not None for r in rows)
    logs = [Path(r.stdout_path).read_text() for r in rows]
    assert logs[1].splitlines()[1] == f"evaluating exp1 at {ckpts[1]}"


def test_a_dead_submitter_is_reconciled(config: Config, workdir: Path) -> None:
    """A claim whose submitter died after sbatch but before recording the id is adopted
    from the queue (by its comment token), never submitted twice."""
    from baton.pipeline.submission import comment_token, reconcile_stale

    ledger = open_ledger(config.ledger_url, init=True)
    backend = SbatchBackend(base_delay=0.5)
    claim = ledger.claim_submission("evaluation:ghost:attempt-1", stage="evaluation",
                                    experiment="ghost", backend="sbatch")
    token = comment_token(["evaluation:ghost:attempt-1"])
    ledger.note_token([claim.row_id], token)
    job = submit(backend, workdir, "ghost", "sleep 30", comment=token)  # then it "died"
    lost = ledger.claim_submission("evaluation:lost:attempt-1", stage="evaluation",
                                   experiment="lost", backend="sbatch")
    ledger.note_token([lost.row_id], comment_token(["evaluation:lost:attempt-1"]))
    assert reconcile_stale(ledger, backend, older_than_s=0) == 2
    assert ledger.job(claim.row_id).job_id == job
    assert ledger.job(lost.row_id).state == "SUBMIT_FAILED"
    backend.cancel([job])
