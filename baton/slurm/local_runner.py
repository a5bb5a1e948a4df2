"""The process that runs one local submission (a job or a whole array), detached from
whoever submitted it. ``python -m baton.slurm.local_runner ROOT JOB_ID``."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from baton.slurm.local import LocalBackend, now_s
from baton.slurm.states import JobStatus

POLL = 0.1
KILL_WAIT = 2.0


@dataclass
class Running:
    status: JobStatus
    pid: int
    started: float
    slot_fd: int
    killed_for: str | None = None
    term_sent: float | None = None
    files: list[Any] = field(default_factory=list)


def expand(pattern: str, status: JobStatus, name: str) -> str:
    """sbatch's filename patterns: %j %A %a %x %u %N %%."""
    values = {
        "j": status.raw_job_id or status.job_id,
        "A": status.array_job_id or status.job_id,
        "a": str(status.array_task_id) if status.array_task_id is not None else "4294967294",
        "x": name, "u": getpass.getuser(), "N": socket.gethostname().split(".")[0], "%": "%",
    }
    return re.sub(r"%(.)", lambda m: values.get(m.group(1), m.group(0)), pattern)


class Runner:
    def __init__(self, root: Path, job_id: str) -> None:
        self.backend = LocalBackend(root.parent, max_concurrent=1)
        self.root = root
        self.job_id = job_id
        sub = self.backend.submission(job_id)
        if sub is None:
            raise SystemExit(f"no submission {job_id} under {root}")
        self.sub = sub
        self.backend.max_concurrent = sub["max_concurrent"]
        self.ids = [f"{job_id}_{t}" for t in sub["tasks"]] or [job_id]
        self.running: dict[str, Running] = {}
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    # --- slots -------------------------------------------------------------------------
    def _take_slot(self) -> int | None:
        for i in range(self.backend.max_concurrent):
            fd = os.open(self.root / "slots" / f"{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        while True:
            pending = [j for j in self.ids if self._state(j) == "PENDING"]
            self._reap()
            self._enforce()
            if self.stopping:
                for jid in pending:
                    self._finish_unstarted(jid, "CANCELLED")
                for run in self.running.values():
                    self._kill(run, "CANCELLED")
            else:
                self._cancel_requested(pending)
                self._start(pending)
            if not self.running and all(self._terminal(j) for j in self.ids):
                return
            time.sleep(POLL)

    def _state(self, jid: str) -> str:
        if jid in self.running:
            return "RUNNING"
        status = self.backend.read_status(jid)
        return status.state if status else "UNKNOWN"

    def _terminal(self, jid: str) -> bool:
        status = self.backend.read_status(jid)
        return status is not None and status.terminal

    def _cancel_requested(self, pending: list[str]) -> None:
        for jid in list(pending):
            if (self.root / "cancel" / jid).exists():
                self._finish_unstarted(jid, "CANCELLED")
                pending.remove(jid)
        for jid, run in self.running.items():
            if (self.root / "cancel" / jid).exists() and run.killed_for is None:
                self._kill(run, "CANCELLED")

    def _dependency_state(self) -> str:
        """'ok', 'wait' or 'never' for this submission's --dependency."""
        dep = self.sub.get("dependency")
        if not dep:
            return "ok"
        results = []
        for clause in re.split(r"[,?]", dep):
            kind, *ids = clause.split(":")
            statuses = [self.backend.status([i.split("+")[0]]) for i in ids]
            states = [s.state for st in statuses for s in st.values()]
            if not states or any(s not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                           "OUT_OF_MEMORY", "NODE_FAIL") for s in states):
                results.append("wait")
            elif kind == "afterok":
                results.append("ok" if all(s == "COMPLETED" for s in states) else "never")
            elif kind == "afternotok":
                results.append("ok" if any(s != "COMPLETED" for s in states) else "never")
            else:
                results.append("ok")
        if "never" in results:
            return "never"
        return "wait" if "wait" in results else "ok"

    def _start(self, pending: list[str]) -> None:
        if not pending:
            return
        dep = self._dependency_state()
        if dep == "never":
            for jid in pending:
                self._finish_unstarted(jid, "CANCELLED", "DependencyNeverSatisfied")
            return
        if dep == "wait":
            return
        throttle = self.sub.get("throttle") or len(self.ids)
        for jid in pending:
            if len(self.running) >= throttle:
                return
            fd = self._take_slot()
            if fd is None:
                return
            self._launch(jid, fd)

    def _env(self, status: JobStatus) -> dict[str, str]:
        sub = self.sub
        host = socket.gethostname().split(".")[0]
        env = dict(os.environ)
        env.update({
            "SLURM_JOB_ID": status.raw_job_id or status.job_id,
            "SLURM_JOBID": status.raw_job_id or status.job_id,
            "SLURM_JOB_NAME": sub["name"],
            "SLURM_CPUS_PER_TASK": str(sub["cpus"]),
            "SLURM_CPUS_ON_NODE": str(sub["cpus"]),
            "SLURM_MEM_PER_NODE": str(int(sub["mem_mb"])),
            "SLURM_JOB_PARTITION": sub["partition"],
            "SLURM_SUBMIT_DIR": sub["submit_dir"],
            "SLURM_SUBMIT_HOST": host,
            "SLURM_JOB_NODELIST": host,
            "SLURMD_NODENAME": host,
            "SLURM_NTASKS": "1",
            "SLURM_JOB_NUM_NODES": "1",
            "SLURM_CLUSTER_NAME": "local",
        })
        if sub.get("account"):
            env["SLURM_JOB_ACCOUNT"] = sub["account"]
        if status.array_task_id is not None:
            tasks = sub["tasks"]
            env.update({
                "SLURM_ARRAY_JOB_ID": self.job_id,
                "SLURM_ARRAY_TASK_ID": str(status.array_task_id),
                "SLURM_ARRAY_TASK_COUNT": str(len(tasks)),
                "SLURM_ARRAY_TASK_MIN": str(min(tasks)),
                "SLURM_ARRAY_TASK_MAX": str(max(tasks)),
            })
        return env

    def _launch(self, jid: str, slot_fd: int) -> None:
        status = self.backend.read_status(jid)
        assert status is not None
        sub = self.sub
        default = "slurm-%A_%a.out" if status.array_task_id is not None else "slurm-%j.out"
        out_path = Path(sub["workdir"], expand(sub["output"] or default, status, sub["name"]))
        err_path = Path(sub["workdir"], expand(sub["error"], status, sub["name"])) \
            if sub["error"] else out_path
        out_path.parent.mkdir(parents=True, exist_ok=True)
        err_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(out_path, "ab")  # noqa: SIM115 - closed when the task ends
        err = out if err_path == out_path else open(err_path, "ab")  # noqa: SIM115
        pid = os.fork()
        if pid == 0:  # child: its own session, so a kill reaches everything it starts
            try:
                os.setsid()
                os.chdir(sub["workdir"])
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.execve(sub["script"], [sub["script"]], self._env(status))
            except BaseException as exc:
                os.write(2, f"baton local backend: cannot run {sub['script']}: {exc}\n".encode())
            finally:
                os._exit(127)
        started = now_s()
        running = replace(status, state="RUNNING", started_at=started, reason=None,
                           node=socket.gethostname().split(".")[0],
                           stdout_path=str(out_path), stderr_path=str(err_path))
        self.backend.write_status(running)
        self.running[jid] = Running(running, pid, time.monotonic(), slot_fd,
                                    files=[out] if err is out else [out, err])

    def _enforce(self) -> None:
        now = time.monotonic()
        for run in self.running.values():
            if run.killed_for is None and now - run.started > self.sub["time_s"]:
                self._kill(run, "TIMEOUT")
            elif run.term_sent is not None and now - run.term_sent > KILL_WAIT:
                _signal_group(run.pid, signal.SIGKILL)

    def _kill(self, run: Running, why: str) -> None:
        if run.killed_for is None:
            run.killed_for = why
            run.term_sent = time.monotonic()
            _signal_group(run.pid, signal.SIGTERM)

    def _reap(self) -> None:
        for jid, run in list(self.running.items()):
            pid, wait_status, usage = os.wait4(run.pid, os.WNOHANG)
            if pid == 0:
                continue
            _signal_group(run.pid, signal.SIGKILL)  # leftovers of the job's session
            code = os.waitstatus_to_exitcode(wait_status)
            exit_code, exit_signal = (code, 0) if code >= 0 else (0, -code)
            state = run.killed_for or ("COMPLETED" if code == 0 else "FAILED")
            self.backend.write_status(replace(
                run.status, state=state, ended_at=now_s(), exit_code=exit_code,
                exit_signal=exit_signal, max_rss_mb=usage.ru_maxrss / 1024,
                cpu_seconds=usage.ru_utime + usage.ru_stime))
            for fh in run.files:
                fh.close()
            os.close(run.slot_fd)
            del self.running[jid]

    def _finish_unstarted(self, jid: str, state: str, reason: str | None = None) -> None:
        status = self.backend.read_status(jid)
        if status is not None and not status.terminal:
            self.backend.write_status(replace(status, state=state, ended_at=now_s(),
                                               reason=reason))


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m baton.slurm.local_runner ROOT JOB_ID", file=sys.stderr)
        return 2
    Runner(Path(args[0]), args[1]).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
