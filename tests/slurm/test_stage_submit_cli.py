"""``baton slurm submit --stage`` as people run it in their first week: every bad input is
one line naming it (exit 2 for what argparse can tell, 1 for what needs the drive), nothing
is claimed, and the corrected command submits. On a fresh drive the job's log folder is
made before sbatch, so the first real Slurm job writes its log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baton.ledger import open_ledger
from baton.slurm.sbatch import SbatchBackend

QUICK = ("stages:\n  evaluation:\n    time: '00:02:00'\n    mem: 100M\n    cpus: 1\n"
         "    command: echo evaluating \"$BATON_EXPERIMENT\" at \"$BATON_CHECKPOINT\"\n"
         "  analysis:\n    time: '00:02:00'\n    mem: 100M\n    cpus: 1\n    command: 'true'\n")


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120, check=False)


@pytest.fixture
def site(tmp_path: Path, ledger_url: str) -> dict[str, str]:
    """A configuration, a ledger made by ``baton db init``, and one trained checkpoint."""
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(QUICK)
    env = {"BATON_CONFIG": str(cfg), "SHARED_DRIVE": str(tmp_path / "drive"),
           "BATON_STATE_DIR": str(tmp_path / "state"), "BATON_DATABASE_URL": ledger_url,
           "BATON_SLURM_BACKEND": "local"}
    init = baton("db", "init", env=env)
    assert init.returncode == 0, init.stderr
    final = tmp_path / "drive" / "models" / "exp1" / "final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"\0" * 64)
    return env


def submit(site: dict[str, str], *extra: str, experiment: str = "exp1",
           checkpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    ckpt = checkpoint if checkpoint is not None else \
        str(Path(site["SHARED_DRIVE"]) / "models" / "exp1" / "final")
    return baton("slurm", "submit", "--stage", "evaluation", f"--experiment={experiment}",
                 f"--checkpoint={ckpt}", *extra, env=site)


def jobs(site: dict[str, str]) -> list[tuple[str, str]]:
    ledger = open_ledger(site["BATON_DATABASE_URL"], init=True)
    try:
        return [(r.submission_key, r.state) for r in ledger.jobs()]
    finally:
        ledger.close()


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line of the error (argparse prints its usage lines before it)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    *usage, line = proc.stderr.strip().splitlines()
    assert all(u.startswith(("usage: ", " ")) for u in usage), proc.stderr
    return line


# (the bad value, what the message must say, the exit code)
BAD = [
    ({"experiment": "../etc"}, "'../etc' is not allowed", 2),
    ({"experiment": "x$(id)"}, "'x$(id)' is not allowed", 2),
    ({"experiment": "-rf"}, "'-rf' is not allowed", 2),
    ({"experiment": "x" * 200}, "is not allowed", 2),
    ({"experiment": ""}, "'' is not allowed", 2),
    ({"checkpoint": "/etc"}, "outside the shared drive", 1),
    ({"checkpoint": "{drive}/models/exp1/nothing-here"}, "does not exist", 1),
    ({"extra": ("--mem", "lots")}, "invalid memory 'lots'", 2),
    ({"extra": ("--mem", "0")}, "all of a node's memory", 2),
    ({"extra": ("--time=-1",)}, "invalid time '-1'", 2),
    ({"extra": ("--time", "0")}, "no limit", 2),
    ({"extra": ("--attempt", "0")}, "--attempt: '0' is out of range", 2),
    ({"extra": ("--attempt=-3",)}, "--attempt: '-3' is out of range", 2),
]


def test_bad_input_is_one_line_and_claims_nothing(site: dict[str, str]) -> None:
    for case, says, code in BAD:
        ckpt = case.get("checkpoint")
        proc = submit(site, *case.get("extra", ()), experiment=case.get("experiment", "exp1"),
                      checkpoint=ckpt.format(drive=site["SHARED_DRIVE"]) if ckpt else None)
        assert proc.returncode == code, (case, proc.returncode, proc.stderr)
        line = one_line(proc)
        assert says in line and line.startswith("baton"), (case, line)
        assert jobs(site) == [], case
        # not even the local backend's folders: a refused command leaves nothing behind
        assert not (Path(site["BATON_STATE_DIR"]) / "local-slurm").exists(), case
    good = submit(site)
    assert good.returncode == 0 and "exp1: submitted as job" in good.stdout, good.stderr
    assert [state for _, state in jobs(site)] == ["PENDING"]


def test_the_corrected_retry_submits_at_once(site: dict[str, str]) -> None:
    """Once, a refused submission left its claim SUBMITTING: the corrected command waited
    two minutes for it, then said "already submitted as job None" with exit 0."""
    assert submit(site, "--mem", "lots").returncode == 2
    fixed = submit(site, "--mem", "200M")
    assert fixed.returncode == 0, fixed.stderr
    assert "exp1: submitted as job" in fixed.stdout and "None" not in fixed.stdout


def test_options_a_stage_job_would_ignore_are_refused(site: dict[str, str]) -> None:
    for extra, says in ((("--array", "0-3"), "--array"),
                        (("--partition", "debug"), "--partition")):
        proc = submit(site, *extra)
        assert proc.returncode == 2, proc.stderr
        assert says in one_line(proc)
    analysis = baton("slurm", "submit", "--stage", "analysis", "--experiment", "exp1",
                     "--checkpoint", "/x", env=site)
    assert analysis.returncode == 2 and "--checkpoint" in one_line(analysis)
    assert jobs(site) == []


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_the_first_real_job_on_a_fresh_drive_writes_its_log(site: dict[str, str]) -> None:
    """No logs/ folder (a drive set up before ``db init`` made the layout, or cleaned): the
    submission makes logs/evaluation/ first, so Slurm can open the job's output."""
    logs = Path(site["SHARED_DRIVE"]) / "logs"
    subprocess.run(["rm", "-rf", str(logs)], check=True)
    proc = submit(site, "--backend", "sbatch")
    assert proc.returncode == 0, proc.stderr
    [row] = open_ledger(site["BATON_DATABASE_URL"], init=True).jobs()
    backend = SbatchBackend(base_delay=0.5)
    deadline = time.monotonic() + 120
    while not ((status := backend.status([row.job_id]).get(row.job_id)) and status.terminal):
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status.state == "COMPLETED", status
    out = Path(row.stdout_path)
    assert out.parent == logs / "evaluation"
    assert f"evaluating exp1 at {Path(site['SHARED_DRIVE']) / 'models/exp1/final'}" in \
        out.read_text()


def test_a_script_and_a_stage_job_are_not_mixed(site: dict[str, str], tmp_path: Path) -> None:
    """Options of one kind of submission given to the other were silently dropped (a script
    with --stage was submitted as a plain script): they are usage errors."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    ckpt = str(Path(site["SHARED_DRIVE"]) / "models" / "exp1" / "final")
    for argv, says in (
            ((str(script), "--stage", "evaluation", "--experiment", "exp1"), "not both"),
            ((str(script), "--experiment", "exp1"), "--experiment"),
            ((str(script), "--checkpoint", ckpt), "--checkpoint"),
            ((str(script), "--attempt", "2"), "--attempt"),
            (("--stage", "evaluation"), "--experiment"),
            (("--experiment", "exp1"), "give a script, or --stage"),
            ((), "give a script, or --stage")):
        proc = baton("slurm", "submit", *argv, env=site)
        assert proc.returncode == 2, (argv, proc.returncode, proc.stderr)
        assert says in one_line(proc), (argv, proc.stderr)
    assert jobs(site) == []
