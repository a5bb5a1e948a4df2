"""The ``baton`` command as people run it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.core.test_signals import SPEC_EXAMPLE


def baton(*args: str, env: dict[str, str], cwd: Path | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=cwd, timeout=120,
                          check=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SHARED_DRIVE": str(tmp_path / "drive"), "BATON_STATE_DIR": str(tmp_path / "state"),
            "BATON_CONFIG": ""}


def test_validate_accepts_the_spec_example(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "experiment_01" / ".training_complete"
    path.parent.mkdir()
    path.write_text(SPEC_EXAMPLE)
    proc = baton("signal", "validate", str(path), env={**env,
                 "SHARED_DRIVE": "/mnt/shared/subject-drop"})
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "experiment_01" in proc.stdout


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda d: "{not json", "malformed JSON"),
    (lambda d: {k: v for k, v in d.items() if k != "user"}, "missing required field 'user'"),
    (lambda d: {**d, "num_epochs": "ten"}, "field 'num_epochs'"),
    (lambda d: {**d, "checkpoint_path": "/etc"}, "outside the shared drive"),
    (lambda d: {**d, "experiment": "x; rm -rf ~"}, "not allowed"),
    (lambda d: b"\xff\xfe{}", "not valid UTF-8"),
    (lambda d: "{}" + " " * (1024 * 1024), "1 MiB"),
])
def test_validate_rejects_with_a_clear_message(tmp_path: Path, env: dict[str, str], mutate,
                                               says: str) -> None:
    doc = json.loads(SPEC_EXAMPLE)
    bad = mutate(doc)
    path = tmp_path / "signal.json"
    if isinstance(bad, bytes):
        path.write_bytes(bad)
    else:
        path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    proc = baton("signal", "validate", "--kind", "training_complete", str(path),
                 env={**env, "SHARED_DRIVE": "/mnt/shared/subject-drop"})
    assert proc.returncode == 1
    assert f"REJECTED {path}: " in proc.stderr and says in proc.stderr, proc.stderr


def test_validate_unknown_status(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / ".eval_complete"
    path.write_text(json.dumps({"timestamp": "2026-11-21T10:00:00Z", "experiment": "e",
                                "job_id": "1", "status": "finished"}))
    proc = baton("signal", "validate", str(path), env=env)
    assert proc.returncode == 1 and "unknown status 'finished'" in proc.stderr


def test_db_init_upgrade_check(env: dict[str, str]) -> None:
    first = baton("db", "init", env=env)
    assert first.returncode == 0 and "created" in first.stdout, first.stderr
    again = baton("db", "upgrade", env=env)
    assert again.returncode == 0 and "already at head" in again.stdout
    check = baton("db", "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ledger integrity: ok" in check.stdout and "PRAGMA integrity_check: ok" in check.stdout


def test_db_check_fails_on_uninitialised(env: dict[str, str]) -> None:
    check = baton("db", "check", env=env)
    assert check.returncode == 1 and "baton db init" in check.stderr  # one line, no report
    assert len(check.stderr.strip().splitlines()) == 1 and check.stdout == ""


def test_bad_config_fails_at_start(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "baton.yaml"
    cfg.write_text("slurm:\n  backend: pbs\n")
    proc = baton("db", "init", env={**env, "BATON_CONFIG": str(cfg)})
    assert proc.returncode == 1
    assert f"baton: error: {cfg}: slurm.backend:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_slurm_submit_status_cancel_locally(tmp_path: Path, env: dict[str, str]) -> None:
    script = tmp_path / "job.sh"
    # runs until cancelled: seen running and cancelled however slow each `baton` call is
    script.write_text("#!/bin/bash\n#SBATCH --job-name=cli\n#SBATCH --time=00:20:00\n"
                      f"#SBATCH --output={tmp_path}/%j.out\nsleep 600\n")
    assert baton("db", "init", env=env).returncode == 0  # the script is recorded there
    proc = baton("slurm", "submit", str(script), "--backend", "local", env=env)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    assert job.isdigit()
    deadline = time.monotonic() + 120
    while "RUNNING" not in baton("slurm", "status", job, "--backend", "local",
                                 env=env).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert baton("slurm", "cancel", job, "--backend", "local", env=env).returncode == 0
    deadline = time.monotonic() + 120
    while True:
        doc = json.loads(baton("slurm", "status", job, "--json", "--backend", "local",
                               env=env).stdout)
        if doc[job]["state"] == "CANCELLED":
            break
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)


def test_slurm_submit_stage_is_recorded_once(tmp_path: Path, env: dict[str, str]) -> None:
    ckpt = tmp_path / "drive" / "models" / "exp1" / "final"
    ckpt.mkdir(parents=True)
    cfg = tmp_path / "baton.yaml"
    cfg.write_text("stages:\n  evaluation:\n    time: '00:01:00'\n    mem: 100M\n    cpus: 1\n"
                   "    command: echo evaluating \"$BATON_EXPERIMENT\" \"$BATON_CHECKPOINT\"\n")
    run_env = {**env, "BATON_CONFIG": str(cfg)}
    assert baton("db", "init", env=run_env).returncode == 0
    args = ("slurm", "submit", "--stage", "evaluation", "--experiment", "exp1",
            "--checkpoint", str(ckpt), "--backend", "local")
    first = baton(*args, env=run_env)
    assert first.returncode == 0, first.stderr
    assert "exp1: submitted as job" in first.stdout
    second = baton(*args, env=run_env)
    assert "exp1: already submitted as job" in second.stdout
    scripts = list((tmp_path / "drive" / "logs" / "scripts" / "evaluation" / "exp1").iterdir())
    assert len(scripts) == 1 and "#SBATCH --job-name=eval_exp1" in scripts[0].read_text()
    hostile = baton("slurm", "submit", "--stage", "evaluation", "--experiment", "x; rm -rf ~",
                    "--checkpoint", str(ckpt), "--backend", "local", env=run_env)
    assert hostile.returncode == 2 and "not allowed" in hostile.stderr  # argparse's usage


def test_help_lists_every_command(env: dict[str, str]) -> None:
    out = baton("--help", env=env).stdout
    for command in ("signal", "db", "slurm", "config"):
        assert command in out


def test_quarantined_lists_reasons(tmp_path: Path, env: dict[str, str]) -> None:
    from baton.ledger import open_ledger

    ledger = open_ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.db'}", init=True)
    ledger.record_signal("q:1", "training_complete", "/d/models/x/.training_complete",
                         "quarantined", reason="malformed JSON: Expecting value")
    out = baton("signal", "quarantined", env=env)
    assert out.returncode == 0
    assert "/d/models/x/.training_complete" in out.stdout and "malformed JSON" in out.stdout
