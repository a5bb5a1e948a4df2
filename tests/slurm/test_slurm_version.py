"""The cheapest status query this Slurm offers: the version read from the real ``sinfo
--version`` (22.05 here: today's queries), and on 23.11+ ``squeue --only-job-state``,
whose output is parsed from a sample documented in tests/data/slurm/README.md."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from baton.slurm.parse import parse_job_states
from baton.slurm.sbatch import SbatchBackend
from baton.slurm.version import has_only_job_state, parse_version, slurm_version

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
SAMPLE = (DATA / "squeue_only_job_state_2311.txt").read_text()


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_this_slurm_is_detected_and_falls_back_to_todays_queries() -> None:
    printed = subprocess.run(["sinfo", "--version"], capture_output=True, text=True,
                             check=True).stdout
    version = parse_version(printed)
    assert version is not None and version == slurm_version(), printed
    assert has_only_job_state(version) == (version[:2] >= (23, 11))
    if version[:2] < (23, 11):  # Debian 12's 22.05: the option does not exist
        refused = subprocess.run(["squeue", "--only-job-state"], capture_output=True,
                                 text=True, check=False)
        assert refused.returncode != 0


def test_versions_as_sinfo_prints_them() -> None:
    assert parse_version("slurm-wlm 22.05.8\n") == (22, 5, 8)
    assert parse_version("slurm 23.11.10") == (23, 11, 10)
    assert parse_version("slurm 24.05") == (24, 5, 0)
    assert parse_version("sinfo: command not found") is None
    assert not has_only_job_state((23, 2, 7)) and has_only_job_state((23, 11, 0))
    assert not has_only_job_state(None)  # unknown: the queries every version knows


def test_the_only_job_state_output_is_parsed_with_folded_array_tasks() -> None:
    states = parse_job_states(SAMPLE)
    assert {k: v.state for k, v in states.items()} == {
        **{f"7001_{t}": "PENDING" for t in (1, 2, 3, 4, 6, 7, 8, 9, 10)},
        "7001_5": "RUNNING", "7002": "PENDING", "7003": "RUNNING"}
    assert states["7001_4"].array_job_id == "7001" and states["7001_4"].array_task_id == 4
    assert states["7002"].array_job_id is None


class Slurm2311:
    """The one thing this machine cannot run: a 23.11 squeue (its answers are the sample
    above, and the full record of the jobs asked about again)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        out = SAMPLE if "--only-job-state" in argv else \
            "7003|N/A|N/A|RUNNING|eval|2026-12-07T05:00:00|2026-12-07T05:01:00|5:00|0:10|vm|" \
            "None|100M|1\n"
        return subprocess.CompletedProcess(list(argv), 0, out, "")


def test_on_2311_the_light_query_answers_and_only_a_change_is_asked_in_full() -> None:
    slurm = Slurm2311()
    backend = SbatchBackend(runner=slurm, version=(23, 11, 1), ids_per_call=2)
    ids = ["7001_4", "7002", "7003"]
    statuses = backend.status(ids, known={"7001_4": "PENDING", "7002": "PENDING",
                                          "7003": "PENDING"})
    light = [c for c in slurm.calls if "--only-job-state" in c]
    assert [c[-1] for c in light] == ["--jobs=7001_4,7002", "--jobs=7003"]  # 2 ids a call
    full = [c for c in slurm.calls if "--only-job-state" not in c]
    assert [c[-1] for c in full] == ["--jobs=7003"]  # it started: its record, once
    assert statuses["7003"].node == "vm" and statuses["7002"].state == "PENDING"
    slurm.calls.clear()
    backend.status(ids, known={"7001_4": "PENDING", "7002": "PENDING", "7003": "RUNNING"})
    assert all("--only-job-state" in c for c in slurm.calls)  # nothing changed
    assert not any(c[0] == "sacct" for c in slurm.calls)
