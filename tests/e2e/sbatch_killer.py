"""The real sbatch, except that chosen calls SIGKILL the caller's whole process group (the
dagster-daemon's: its code server and every run it launched) just before or just after
the real sbatch runs: a daemon crash placed exactly inside a submitting run. The kill is
the only thing faked; the job, when submitted, is Slurm's.

Installed as ``sbatch`` first on the daemon's PATH. ``SBATCH_KILL`` lists the calls, e.g.
``1:before,2:after`` (calls are counted across daemon restarts in ``SBATCH_KILL_LOG``,
one line per call: its number, and ``killed before``/``killed after`` for a kill; each
call's ``--comment`` token goes to ``sbatch-comments.log`` beside it);
``SBATCH_REAL`` is the real sbatch."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def tasks_in_slurm(tmp: Path, since: str = "now-3hours") -> list[tuple[str, str, str, str]]:
    """Every job or array task in Slurm's accounting that an sbatch through this wrapper
    (installed in ``tmp``) submitted, found by its comment token: (name, job id, comment,
    state). Other tests' and benchmarks' jobs on the same cluster are left out."""
    ours = set((tmp / "sbatch-comments.log").read_text().split())
    lines = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations",
                            f"--starttime={since}", "--format=JobName,JobID,Comment,State"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("|") for line in lines]  # a state may hold spaces ("CANCELLED by 0")
    return sorted((name, job_id, comment, state) for name, job_id, comment, state in
                  (r for r in rows if len(r) == 4) if comment in ours)


def evaluation_tasks_in_slurm(tmp: Path, since: str = "now-3hours"
                              ) -> list[tuple[str, str]]:
    """The evaluation tasks of :func:`tasks_in_slurm` (one job, or one task ``ARRAY_i``
    of an array across experiments): (job id, comment token)."""
    return sorted((job_id, comment) for name, job_id, comment, _ in tasks_in_slurm(tmp, since)
                  if name.startswith("eval_"))


def install(tmp: Path, kills: str) -> dict[str, str]:
    """Put ``sbatch`` (this wrapper) first on PATH in ``tmp/bin``; returns the environment
    that a daemon needs for it, killing at ``kills`` (the calls are logged in
    ``tmp/sbatch-calls.log``)."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "sbatch"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    wrapper.chmod(0o755)
    real = shutil.which("sbatch")
    assert real, "sbatch is not on PATH"
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "SBATCH_REAL": real,
            "SBATCH_KILL": kills, "SBATCH_KILL_LOG": str(tmp / "sbatch-calls.log")}


def main() -> int:
    plan = dict(item.split(":") for item in os.environ["SBATCH_KILL"].split(",") if item)
    with open(os.environ["SBATCH_KILL_LOG"], "a+") as log:
        fcntl.flock(log, fcntl.LOCK_EX)  # concurrent runs: each call gets its own number
        log.seek(0)
        call = str(len(log.read().splitlines()) + 1)
        when = plan.get(call)
        log.write(f"{call}{f' killed {when}' if when else ''}\n")
        log.flush()
        os.fsync(log.fileno())
    comments = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--comment=")]
    with open(Path(os.environ["SBATCH_KILL_LOG"]).with_name("sbatch-comments.log"),
              "a") as out:  # each call's token, before the real sbatch may run
        out.write("".join(f"{c}\n" for c in comments))
    if when == "before":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    proc = subprocess.run([os.environ["SBATCH_REAL"], *sys.argv[1:]], check=False)
    if when == "after":  # Slurm has the job; the reply never reaches baton
        os.killpg(os.getpgrp(), signal.SIGKILL)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
