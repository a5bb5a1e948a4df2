"""A batch larger than the cluster's MaxArraySize becomes several arrays, each its own
sbatch with its own token, on the real Slurm. The limit is the one thing set here (the
cluster's is 10001: a test of 10,002 tasks would occupy the node for long)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from baton.config import Config
from baton.ledger import open_ledger
from baton.pipeline.submission import submit_jobs
from baton.slurm.sbatch import SbatchBackend, run_command

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


class SmallArrays(SbatchBackend):
    def max_array_size(self) -> int:
        return 2


def test_a_batch_is_split_at_max_array_size(config: Config) -> None:
    calls: list[list[str]] = []

    def sbatch(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        return run_command(argv)

    cfg = config.model_copy(update={"stages": {**config.stages, "evaluation":
        config.stage("evaluation").model_copy(update={
            "mem": "100M", "cpus": 1, "time": "00:05:00", "command": "true"})}})
    ledger = open_ledger(cfg.ledger_url, init=True)
    items = []
    for i in range(5):
        ckpt = cfg.drive.experiment(f"split{i}").final_dir
        Path(ckpt).mkdir(parents=True)
        items.append((f"split{i}", str(ckpt)))
    outcomes = submit_jobs(cfg, ledger, SmallArrays(base_delay=0.5, runner=sbatch),
                           "evaluation", items)
    assert [c[0] for c in calls] == ["sbatch"] * 3  # 2 + 2 + 1 tasks
    assert all(o.submitted_now and o.job_id for o in outcomes)
    rows = ledger.jobs(stage="evaluation")
    parts = [[r.experiment for r in rows if (r.array_job_id or r.job_id) == j]
             for j in dict.fromkeys(r.array_job_id or r.job_id for r in rows)]
    assert parts == [["split0", "split1"], ["split2", "split3"], ["split4"]]
    assert len({(r.metadata or {}).get("token") for r in rows}) == 3
    again = submit_jobs(cfg, ledger, SmallArrays(base_delay=0.5, runner=sbatch),
                        "evaluation", items)
    assert len(calls) == 3 and not any(o.submitted_now for o in again)  # claimed once
