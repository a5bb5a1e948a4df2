"""The local backend: the embedded default where ``sbatch`` is not on PATH.

It runs the same scripts as Slurm would, detached from the submitting process, with the
``SLURM_*`` variables set; it honours ``--time``, ``%j/%A/%a``, arrays with ``%K`` and a
machine-wide concurrency limit, and reports Slurm's states. It is small and plain; it is
not a scheduler. State lives in ``{state_dir}/local-slurm`` (local disk, never the drive).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.errors import InvalidName
from baton.fsio import atomic_write
from baton.slurm.backend import Submitted, task_ids
from baton.slurm.spec import JobSpec, spec_from_script
from baton.slurm.states import JobStatus


class LocalBackend:
    name = "local"

    def __init__(self, state_dir: Path, max_concurrent: int = 2) -> None:
        self.root = Path(state_dir) / "local-slurm"
        self.max_concurrent = max_concurrent

    def _make_folders(self) -> None:
        """Made by the first submission, not by making the backend: a command that is
        refused, or only asks for status, leaves nothing behind."""
        for sub in ("jobs", "scripts", "submissions", "cancel", "slots", "runners"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --- ids ---------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _allocate(self, count: int) -> int:
        counter = self.root / "next_id"
        with self._locked():
            first = int(counter.read_text() or "1") if counter.exists() else 1
            atomic_write(counter, str(first + count).encode())
        return first

    # --- submit ------------------------------------------------------------------------
    def submit(self, spec: JobSpec, script_path: Path) -> Submitted:
        tasks = spec.array_tasks
        self._make_folders()
        base = self._allocate(max(1, len(tasks)))
        job_id = str(base)
        script = self.root / "scripts" / f"{job_id}.sh"
        atomic_write(script, Path(script_path).read_bytes())
        script.chmod(0o755)
        submission = {
            "job_id": job_id, "name": spec.name, "time_s": spec.time_seconds,
            "mem_mb": spec.mem_mb, "cpus": spec.cpus, "tasks": tasks,
            "throttle": spec.array_throttle, "dependency": spec.dependency,
            "output": spec.output, "error": spec.error,
            "workdir": spec.workdir or os.getcwd(), "submit_dir": os.getcwd(),
            "account": spec.account, "partition": spec.partition or "local",
            "max_concurrent": self.max_concurrent, "script": str(script),
        }
        atomic_write(self.root / "submissions" / f"{job_id}.json",
                     json.dumps(submission).encode())
        now = now_s()
        ids = task_ids(job_id, spec) or (job_id,)
        for i, jid in enumerate(ids):
            status = JobStatus(
                job_id=jid, state="PENDING", raw_job_id=str(base + i) if tasks else job_id,
                array_job_id=job_id if tasks else None,
                array_task_id=tasks[i] if tasks else None, name=spec.name,
                reason="Priority", submitted_at=now, req_cpus=spec.cpus,
                req_mem_mb=spec.mem_mb, req_time_s=spec.time_seconds)
            self.write_status(status)
        log = self.root / "runners" / f"{job_id}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "baton.slurm.local_runner", str(self.root), job_id],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=submission["workdir"])
        atomic_write(self.root / "runners" / f"{job_id}.pid", str(proc.pid).encode())
        return Submitted(job_id=job_id, script_path=Path(script_path),
                         task_ids=task_ids(job_id, spec))

    # --- status ------------------------------------------------------------------------
    def write_status(self, status: JobStatus) -> None:
        atomic_write(self.root / "jobs" / f"{status.job_id}.json",
                     json.dumps(asdict(status), default=_iso).encode())

    def read_status(self, job_id: str) -> JobStatus | None:
        path = self.root / "jobs" / f"{job_id}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        for key in ("submitted_at", "started_at", "ended_at"):
            if data.get(key):
                data[key] = datetime.fromisoformat(data[key])
        return JobStatus(**data)

    def _ids(self, job_id: str) -> list[str]:
        if (self.root / "jobs" / f"{job_id}.json").exists():
            return [job_id]
        sub = self.submission(job_id)
        return [f"{job_id}_{t}" for t in sub["tasks"]] if sub else []

    def submission(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / "submissions" / f"{job_id}.json").read_text())
        except FileNotFoundError:
            return None

    def status(self, job_ids: Iterable[str], known: Mapping[str, str] | None = None
               ) -> dict[str, JobStatus]:
        """Every id's own record (``known`` changes nothing: reading a file is free)."""
        out: dict[str, JobStatus] = {}
        for requested in dict.fromkeys(job_ids):
            for jid in self._ids(requested):
                status = self.read_status(jid)
                if status is None:
                    continue
                if not status.terminal and not self._runner_alive(jid.split("_")[0]):
                    # re-read: the runner may have finished between the two reads
                    status = self.read_status(jid) or status
                    if not status.terminal:
                        status = replace(status, state="NODE_FAIL", ended_at=now_s(),
                                          reason="the local runner exited unexpectedly")
                out[jid] = status
        return out

    def _runner_alive(self, job_id: str) -> bool:
        try:
            pid = int((self.root / "runners" / f"{job_id}.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            # no pid yet: the submission is being written right now
            return not (self.root / "runners" / f"{job_id}.pid").exists()
        return b"baton.slurm.local_runner" in cmdline and _not_zombie(pid)

    def jobs_by_comment(self, since: datetime) -> dict[str, dict[str, JobStatus]]:
        """Every job submitted here since ``since``, by its comment (baton's submission
        token), as :meth:`SbatchBackend.jobs_by_comment` reads Slurm's accounting."""
        out: dict[str, dict[str, JobStatus]] = {}
        for path in sorted((self.root / "submissions").glob("*.json")):
            sub = json.loads(path.read_text())
            try:
                comment = spec_from_script(Path(sub["script"]).read_text()).comment
            except (OSError, InvalidName):
                continue
            statuses = self.status([sub["job_id"]])
            if comment and any(s.submitted_at and s.submitted_at >= since
                               for s in statuses.values()):
                out.setdefault(comment, {}).update(statuses)
        return out

    # --- cancel ------------------------------------------------------------------------
    def queue_states(self) -> Counter[str]:
        """This installation's unfinished jobs, by state."""
        ids = [p.stem for p in (self.root / "jobs").glob("*.json")]
        return Counter(s.state for s in self.status(ids).values() if not s.terminal)

    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Cancel jobs; returns why each id that was not cancelled was not (Slurm's words)."""
        refused: dict[str, str] = {}
        for requested in job_ids:
            ids = self._ids(requested)
            live = [(jid, s) for jid in ids
                    if (s := self.read_status(jid)) is not None and not s.terminal]
            if not live:
                refused[requested] = "Job/step already completing or completed" if ids \
                    else "Invalid job id specified"
            for jid, status in live:
                atomic_write(self.root / "cancel" / jid, b"")
                if not self._runner_alive(jid.split("_")[0]):
                    self.write_status(replace(status, state="CANCELLED", ended_at=now_s()))
        return refused


def _not_zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return False
    return fields[0] != "Z"


def now_s() -> datetime:
    """Now, to the second: the resolution of Slurm's own times."""
    return datetime.now(UTC).replace(microsecond=0)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")
