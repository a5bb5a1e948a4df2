"""A small evaluation for the end-to-end tests: real Parquet, a real signal, run as a real
Slurm (or local-backend) job. Each variable below holds a comma-separated list of
``<experiment>`` or ``<experiment>/<checkpoint folder name>`` (one task of a fan-out):

- ``FAKE_EVAL_FAIL``: those tasks fail (``.eval_failed``, exit 1);
- ``FAKE_EVAL_HOG``: those hold 300 MB while they have less than 400M, until Slurm kills
  them;
- ``FAKE_EVAL_HOLD``: those wait until the file ``FAKE_EVAL_RELEASE`` exists (at most
  ten minutes) before they evaluate, so a test can look at the pipeline while one task
  of an array is still running.
"""

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from baton.evaluate.metric_schema import WRITTEN_METRIC_SCHEMA
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.signals import EvalComplete, EvalFailed

drive = DriveLayout(Path(os.environ["SHARED_DRIVE"]))
exp = os.environ["BATON_EXPERIMENT"]
ckpt = os.environ["BATON_CHECKPOINT"]
job = os.environ.get("SLURM_JOB_ID", "0")
start = time.time()
layout = drive.experiment(exp)
signal_dir = Path(os.environ["BATON_SIGNAL_DIR"])
generation = int(os.environ.get("BATON_GENERATION") or 1)  # a retrain's writes apart


def chosen(var: str) -> bool:
    """Whether this task is named in the list ``var``."""
    names = os.environ.get(var, "").split(",")
    return exp in names or f"{exp}/{Path(ckpt).name}" in names


if chosen("FAKE_EVAL_HOLD"):
    release = Path(os.environ["FAKE_EVAL_RELEASE"])
    deadline = time.monotonic() + 600
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
now = datetime.now(UTC)
if chosen("FAKE_EVAL_HOG") and \
        int(os.environ.get("SLURM_MEM_PER_NODE", "0")) < 400:
    hog = bytearray(300 * 1024 * 1024)
    hog[::4096] = b"x" * len(hog[::4096])  # resident: Slurm kills the job over its --mem
    time.sleep(600)  # until it does: no race with Slurm's memory sampling
if chosen("FAKE_EVAL_FAIL"):
    publish(drive, EvalFailed(timestamp=now, experiment=exp, job_id=job, status="failed",
                              error_message="dataset toy: simulated failure",
                              checkpoints_evaluated=[ckpt]), signal_dir / ".eval_failed")
    raise SystemExit(1)
for metric, value in (("accuracy", 0.75), ("perplexity", 42.0)):
    folder = layout.metrics_dir / "dataset=toy" / f"metric={metric}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = 8
    table = pa.table({
        "experiment": [exp] * rows, "checkpoint": [Path(ckpt).name] * rows,
        "dataset": ["toy"] * rows, "item_group": [f"g{i % 2}" for i in range(rows)],
        "form": ["default"] * rows, "value": [value] * rows, "timestamp": [now] * rows,
        "generation": [generation] * rows,
    }, schema=WRITTEN_METRIC_SCHEMA)
    pq.write_table(table, folder / f"part-{job}{'' if generation == 1 else f'-g{generation}'}"
                   ".parquet")
publish(drive, EvalComplete(timestamp=datetime.now(UTC), experiment=exp, job_id=job,
                            status="complete", datasets_evaluated=["toy"],
                            metrics_summary={"toy/accuracy": 0.75},
                            eval_duration_seconds=round(time.time() - start, 3),
                            checkpoints_evaluated=[ckpt]), signal_dir / ".eval_complete")
print(f"evaluated {exp} at {ckpt}")
