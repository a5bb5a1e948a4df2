"""``baton logs JOBID``: the job's stdout (or ``--stderr``) where the ledger says it is;
``--follow`` prints what the job adds until the ledger says it ended, and Ctrl-C ends it
quietly; a job the ledger does not know, or a log not written yet, is one line."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from baton.ledger import Ledger, open_ledger
from baton.slurm.states import JobStatus
from tests.conftest import one_error_line


def _env(ledger_url: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "BATON_CONFIG": "", "SHARED_DRIVE": str(tmp_path / "drive"),
            "BATON_STATE_DIR": str(tmp_path / "state"), "BATON_DATABASE_URL": ledger_url}


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def _follow(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "baton", "logs", "--follow", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _job(ledger: Ledger, tmp_path: Path, job_id: str = "4242") -> tuple[Path, Path]:
    """A submitted job as the ledger records it, its logs not written yet."""
    out, err = tmp_path / "logs" / f"{job_id}.out", tmp_path / "logs" / f"{job_id}.err"
    claim = ledger.claim_submission(f"key-{job_id}", stage="evaluation", experiment="exp1",
                                    backend="sbatch")
    ledger.mark_submitted(claim.row_id, job_id, stdout_path=str(out), stderr_path=str(err))
    return out, err


def _ended(ledger: Ledger, job_id: str = "4242") -> None:
    ledger.apply_statuses({job_id: JobStatus(job_id=job_id, state="COMPLETED", exit_code=0)})


def test_prints_stdout_or_stderr(ledger_url: str, tmp_path: Path) -> None:
    ledger = open_ledger(ledger_url, init=True)
    out, err = _job(ledger, tmp_path)
    env = _env(ledger_url, tmp_path)
    assert one_error_line(baton("logs", "4242", env=env)) == \
        f"baton: error: job 4242 (PENDING): its stdout {out} is not written yet"
    out.parent.mkdir()
    out.write_text("step 1\nstep 2\n")
    err.write_text("warning: slow\n")
    proc = baton("logs", "4242", env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "step 1\nstep 2\n", "")
    assert baton("logs", "4242", "--stderr", env=env).stdout == "warning: slow\n"
    # `baton db prune` compressed it: still printed
    out.with_name(out.name + ".gz").write_bytes(gzip.compress(out.read_bytes()))
    out.unlink()
    assert baton("logs", "4242", env=env).stdout == "step 1\nstep 2\n"
    ledger.close()


def test_an_unknown_job_is_one_line(ledger_url: str, tmp_path: Path) -> None:
    ledger = open_ledger(ledger_url, init=True)
    _job(ledger, tmp_path)
    ledger.close()
    line = one_error_line(baton("logs", "999", env=_env(ledger_url, tmp_path)))
    assert line == ("baton: error: job 999 is not in the ledger (`baton slurm status 999` "
                    "asks Slurm)")


def test_a_bad_job_id_is_a_usage_error(tmp_path: Path) -> None:
    proc = baton("logs", "12;rm", env=_env("sqlite:///nowhere.db", tmp_path))
    assert proc.returncode == 2
    assert "'12;rm' is not a Slurm job id" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_follow_prints_until_the_job_ends(ledger_url: str, tmp_path: Path) -> None:
    ledger = open_ledger(ledger_url, init=True)
    out, _ = _job(ledger, tmp_path)
    proc = _follow("4242", env=_env(ledger_url, tmp_path))
    try:
        time.sleep(1.5)  # pending: no file yet, it waits
        assert proc.poll() is None
        out.parent.mkdir()
        with open(out, "a") as f:
            f.write("started\n")
            f.flush()
            time.sleep(1.5)
            f.write("half way\n")
            f.flush()
            time.sleep(1.5)
            assert proc.poll() is None  # still running
            f.write("done\n")
        _ended(ledger)
        stdout, stderr = proc.communicate(timeout=30)  # ends by itself
    finally:
        if proc.poll() is None:
            proc.kill()
        ledger.close()
    assert (proc.returncode, stdout, stderr) == (0, "started\nhalf way\ndone\n", "")


def test_follow_of_an_ended_job_prints_it_and_returns(ledger_url: str,
                                                      tmp_path: Path) -> None:
    ledger = open_ledger(ledger_url, init=True)
    out, _ = _job(ledger, tmp_path)
    out.parent.mkdir()
    out.write_text("all of it\n")
    _ended(ledger)
    ledger.close()
    proc = _follow("4242", env=_env(ledger_url, tmp_path))
    stdout, stderr = proc.communicate(timeout=30)
    assert (proc.returncode, stdout, stderr) == (0, "all of it\n", "")


def test_ctrl_c_ends_follow_quietly(ledger_url: str, tmp_path: Path) -> None:
    ledger = open_ledger(ledger_url, init=True)
    out, _ = _job(ledger, tmp_path)
    ledger.close()
    out.parent.mkdir()
    out.write_text("running\n")
    proc = _follow("4242", env=_env(ledger_url, tmp_path))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "running\n"  # following
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, stdout, stderr) == (130, "", "")
