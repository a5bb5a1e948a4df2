"""``baton plan``: accepted or quarantined with the reason, the submission the daemon would
make (array shape, resources, script), what a ledger says is already submitted; and
nothing written anywhere: no ledger, no log folder, no audit script."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.config import load_config
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import open_ledger
from baton.ledger.training import apply_training_signal
from baton.pipeline.steps import submit_evaluations
from baton.signals import TrainingComplete, encode_signal, read_signal
from baton.slurm.local import LocalBackend


def _checkpoint(drive: DriveLayout, exp: str, name: str) -> str:
    folder = drive.experiment(exp).checkpoints_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    return str(folder)


def _training(drive: DriveLayout, exp: str, extra: list[str] | None = None) -> Path:
    """A training signal written where the sensors look (as another tool would: no inbox)."""
    sig = TrainingComplete(timestamp=datetime.now(UTC), experiment=exp, hostname="h",
                           user="u", checkpoint_path=_checkpoint(drive, exp, "final"),
                           checkpoints=extra)
    path = drive.experiment(exp).training_signal
    path.write_bytes(encode_signal(sig))
    return path


def _tree(root: Path) -> dict[str, tuple[bool, float]]:
    """Every path under ``root`` with whether it is a folder and its mtime."""
    return {str(p): (p.is_dir(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", "plan", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def site(tmp_path: Path) -> tuple[DriveLayout, dict[str, str]]:
    """A drive holding only its models (no logs folder: a plan must not make one)."""
    drive = DriveLayout(tmp_path / "drive")
    drive.models.mkdir(parents=True)
    env = {**os.environ, "SHARED_DRIVE": str(drive.root),
           "BATON_STATE_DIR": str(tmp_path / "state")}
    env.pop("BATON_DATABASE_URL", None)
    env.pop("BATON_CONFIG", None)
    return drive, env


def test_plan_of_a_drive_shows_verdicts_and_the_array_and_writes_nothing(
        site: tuple[DriveLayout, dict[str, str]], tmp_path: Path) -> None:
    drive, env = site
    _training(drive, "e1", extra=[_checkpoint(drive, "e1", "step-100")])
    _training(drive, "e2")
    bad = _training(drive, "gone")
    for f in (drive.experiment("gone").checkpoints_dir / "final").iterdir():
        f.unlink()
    typo = drive.experiment("typo").training_signal
    typo.parent.mkdir(parents=True)
    typo.write_text('{"experiment": "typo",')
    before = _tree(tmp_path)
    proc = _run(env, str(drive.root))
    assert proc.returncode == 1, proc.stderr  # some file would be quarantined
    out = proc.stdout
    assert f"accepted     {drive.experiment('e1').training_signal}  " \
           "(training_complete of e1)" in out
    assert f"quarantined  {bad}: checkpoint " in out and "is empty" in out
    assert f"quarantined  {typo}: " in out and "malformed JSON" in out
    assert "no ledger at sqlite:///" in out
    assert "would submit evaluation: a job array of 3 tasks (--array=0-2%10)" in out
    assert "  resources: 8 cpus, mem 32G, time 02:00:00" in out
    assert "  #SBATCH --mem=32G" in out and "#SBATCH --comment=baton-" in out
    assert "task 1: e1 " + str(drive.experiment("e1").checkpoints_dir / "step-100") in out
    assert "would submit analysis" not in out
    assert _tree(tmp_path) == before  # no ledger, no logs folder, no script, no state dir
    assert not (tmp_path / "state").exists() and not drive.logs.exists()


def test_plan_of_good_files_exits_0_and_prints_whole_scripts(
        site: tuple[DriveLayout, dict[str, str]]) -> None:
    drive, env = site
    path = _training(drive, "solo")
    proc = _run(env, "--scripts", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "would submit evaluation: one job" in proc.stdout
    assert "    #!/bin/bash" in proc.stdout and "baton evaluate" in proc.stdout
    assert "--array" not in proc.stdout


def test_plan_names_a_missing_path_in_one_line(site: tuple[DriveLayout, dict[str, str]],
                                               tmp_path: Path) -> None:
    _, env = site
    proc = _run(env, str(tmp_path / "nowhere"))
    assert proc.returncode == 1
    assert proc.stderr == f"baton: error: {tmp_path / 'nowhere'}: no such file or folder\n"
    assert proc.stdout == ""
    assert _run(env).returncode == 2  # no PATH: a usage error


def test_plan_reads_an_existing_ledger_and_changes_nothing(ledger_url: str,
                                                           tmp_path: Path) -> None:
    drive = DriveLayout(tmp_path / "drive")
    drive.create()
    env = {**os.environ, "SHARED_DRIVE": str(drive.root),
           "BATON_STATE_DIR": str(tmp_path / "state"), "BATON_DATABASE_URL": ledger_url}
    env.pop("BATON_CONFIG", None)
    config = load_config(path=None, env=env)
    cfg = config.model_copy(update={"stages": {**config.stages, "evaluation":
                            config.stage("evaluation").model_copy(update={
                                "mem": "10M", "cpus": 1, "command": "true"})}})
    ledger = open_ledger(ledger_url, init=True)
    done_path = publish(drive, read_signal(_training(drive, "done"), drive).signal)
    ledger.accept_signal(read_signal(done_path, drive), apply_training_signal)
    job_ids = submit_evaluations(cfg, ledger, LocalBackend(tmp_path / "local"),
                                 ["done"])["done"].job_ids
    _training(drive, "fresh")
    rows = [(r.id, r.state, r.job_id) for r in ledger.jobs()]
    proc = _run(env, str(drive.models))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(read only)" in proc.stdout
    final = drive.experiment("done").checkpoints_dir / "final"
    assert f"already submitted: evaluation of done {final} as job {job_ids[0]}" in proc.stdout
    assert "would submit evaluation: one job" in proc.stdout
    assert "  task 0: fresh " in proc.stdout and "task 0: done" not in proc.stdout
    assert [(r.id, r.state, r.job_id) for r in ledger.jobs()] == rows
    ledger.close()


def test_a_completed_evaluation_plans_its_analysis(site: tuple[DriveLayout, dict[str, str]]
                                                   ) -> None:
    from baton.signals import EvalComplete

    drive, env = site
    _training(drive, "ev")
    done = drive.experiment("ev").eval_complete_signal
    done.parent.mkdir(parents=True)
    done.write_bytes(encode_signal(EvalComplete(timestamp=datetime.now(UTC), experiment="ev",
                                                job_id="123", status="complete")))
    proc = _run(env, str(drive.root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"accepted     {done}  (eval_complete of ev)" in proc.stdout
    analysis = proc.stdout.split("would submit analysis: one job\n")[1]
    assert analysis.startswith("  resources: 16 cpus, mem 64G, time 04:00:00\n  task 0: ev\n")
    assert "#SBATCH --job-name=analysis_ev" in analysis
