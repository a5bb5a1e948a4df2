"""First contact with ``baton slurm`` on the real cluster: a plain script is recorded in
the ledger so ``status`` shows it; ``cancel`` of a job Slurm does not know (or that has
already finished) says so with exit 1 instead of claiming it was cancelled."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baton.ledger import open_ledger

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "BATON_DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env={**base, **env}, timeout=120, check=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SHARED_DRIVE": str(tmp_path / "drive"), "BATON_STATE_DIR": str(tmp_path / "state"),
            "BATON_CONFIG": "", "BATON_SLURM_BACKEND": "sbatch"}


def script(tmp_path: Path, name: str, body: str = "sleep 60") -> Path:
    path = tmp_path / f"{name}.sh"
    path.write_text(f"#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --time=00:02:00\n"
                    f"#SBATCH --mem=50M\n#SBATCH --output={tmp_path}/%j.out\n{body}\n")
    return path


def queued(name: str) -> list[str]:
    proc = subprocess.run(["squeue", "--noheader", "--name", name, "--format=%i"],
                          capture_output=True, text=True, check=True, timeout=60)
    return proc.stdout.split()


def test_scancel_v_names_each_id_it_did_not_signal() -> None:
    from baton.slurm.parse import parse_scancel

    said = parse_scancel((DATA / "scancel_v_mixed.txt").read_text())
    assert set(said) == {"9", "999999"}  # 10 (held) was cancelled: not named
    assert "already" in said["9"] and "Invalid job id" in said["999999"]
    assert parse_scancel((DATA / "scancel_v_unknown.txt").read_text()) == {
        "999999": "Invalid job id specified"}
    assert parse_scancel((DATA / "scancel_unknown.txt").read_text()) == {}


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_cancel_of_a_job_slurm_does_not_know_fails(env: dict[str, str]) -> None:
    proc = baton("slurm", "cancel", "99999999", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("baton: error: ") and "99999999" in proc.stderr
    assert "Invalid job id" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert "cancel requested" not in proc.stdout


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_cancel_cancels_what_it_can_and_names_the_rest(tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    name = f"fc-hold-{secrets.token_hex(3)}"
    held = subprocess.run(["sbatch", "--parsable", "--hold", "--job-name", name, "--mem=50M",
                           "--output", str(tmp_path / "%j.out"),
                           str(script(tmp_path, name))], capture_output=True, text=True,
                          check=True).stdout.strip()
    proc = baton("slurm", "cancel", held, "99999999", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"cancel requested: {held}" in proc.stdout
    assert "99999999" in proc.stderr and held not in proc.stderr
    deadline = time.monotonic() + 30
    while queued(name):
        assert time.monotonic() < deadline, queued(name)
        time.sleep(0.3)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_a_submitted_script_is_recorded_and_shown(tmp_path: Path, env: dict[str, str]) -> None:
    assert baton("db", "init", env=env).returncode == 0
    name = f"fc-rec-{secrets.token_hex(3)}"
    proc = baton("slurm", "submit", str(script(tmp_path, name)), env=env)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    assert job.isdigit(), proc.stdout
    try:
        status = baton("slurm", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert job in status.stdout and name in status.stdout, status.stdout
        doc = json.loads(baton("slurm", "status", "--json", env=env).stdout)
        assert doc[job]["name"] == name
        ledger = open_ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.db'}")
        [row] = [r for r in ledger.jobs() if r.job_id == job]
        assert row.stage == "script" and row.state in ("PENDING", "RUNNING")
        assert row.script_path == str((tmp_path / f"{name}.sh").resolve())
        assert row.req_mem_mb == 50 and row.req_time_s == 120
        ledger.close()
    finally:
        subprocess.run(["scancel", job], check=False)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_a_script_is_not_submitted_without_a_ledger(tmp_path: Path,
                                                    env: dict[str, str]) -> None:
    name = f"fc-noledger-{secrets.token_hex(3)}"
    proc = baton("slurm", "submit", str(script(tmp_path, name)), env=env)
    assert proc.returncode == 1 and "baton db init" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""
    assert queued(name) == []  # nothing reached Slurm
    assert not (tmp_path / "state" / "ledger.db").exists()  # and no ledger was made


def test_the_local_backend_says_the_same(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "BATON_SLURM_BACKEND": "local"}
    assert baton("db", "init", env=env).returncode == 0
    proc = baton("slurm", "submit", str(script(tmp_path, "fc-local", "true")), env=env)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    deadline = time.monotonic() + 30
    while "COMPLETED" not in baton("slurm", "status", job, env=env).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc = baton("slurm", "cancel", job, "424242", env=env)
    assert proc.returncode == 1 and "cancel requested" not in proc.stdout
    assert f"{job} (Job/step already completing or completed)" in proc.stderr
    assert "424242 (Invalid job id specified)" in proc.stderr
    proc = baton("slurm", "status", job, "424242", env=env)
    assert proc.returncode == 1 and job in proc.stdout
    assert proc.stderr.strip() == "baton: error: no such job(s): 424242 (Slurm does not " \
        "know them)"
