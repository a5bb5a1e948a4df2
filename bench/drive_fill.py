"""Benchmark 2's drive and ledger: experiments that trained, were evaluated and analysed
long ago, everything settled. On the drive each has its ``.training_complete`` and its
``.eval_complete``; in the ledger, what the sensors and runs recorded for it: the three
signals, the training run, the evaluation task and the analysis (completed), and the facts
that confirm its ``model`` event and its three runs. Written directly, in bulk: setting up
is not what is measured."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from baton.layout import EVAL_COMPLETE_SIGNAL, TRAINING_SIGNAL, DriveLayout
from baton.ledger import Ledger
from baton.ledger.schema import analysis_jobs, evaluation_jobs, facts, signals, training_runs

CHUNK = 10_000
# the facts that close an experiment's history: its model event confirmed in Dagster, and
# the runs the sensors asked for (see sensors/signal_sensors.py and sensors/once.py)
FACTS = (("model:", "model_reported"), ("run:evaluation_job:", "run_requested"),
         ("run:evaluation_metrics:", "run_requested"), ("run:analysis_report:", "run_requested"))


def experiment_name(i: int) -> str:
    return f"exp-{i:06d}"


def _write(path: Any, doc: dict[str, Any]) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path.lstat().st_mtime


def populate(drive: DriveLayout, ledger: Ledger, start: int, stop: int) -> None:
    """Experiments ``start..stop``, settled (see the module's doc)."""
    now = datetime.now(UTC)
    trained, evaluated = now - timedelta(days=3), now - timedelta(days=2)
    rows: dict[Any, list[dict[str, Any]]] = {t: [] for t in
                                             (signals, training_runs, evaluation_jobs,
                                              analysis_jobs, facts)}
    for i in range(start, stop):
        name = experiment_name(i)
        folder = drive.models / name
        t_path, e_path = folder / TRAINING_SIGNAL, drive.evaluation / name / EVAL_COMPLETE_SIGNAL
        base = {"schema_version": 1, "experiment": name}
        t_mtime = _write(t_path, {**base, "timestamp": trained.isoformat(), "hostname": "gpu01",
                                  "user": "u", "checkpoint_path": str(folder)})
        e_mtime = _write(e_path, {**base, "timestamp": evaluated.isoformat(),
                                  "job_id": str(100_000 + i), "status": "complete"})
        key = f"training_complete:{name}:x"
        rows[signals] += [
            dict(idempotency_key=key, kind="training_complete", path=str(t_path),
                 status="accepted", experiment=name, file_mtime=t_mtime, seen_at=trained),
            dict(idempotency_key=f"eval_complete:{name}:x", kind="eval_complete",
                 path=str(e_path), status="accepted", experiment=name, file_mtime=e_mtime,
                 seen_at=evaluated),
            dict(idempotency_key=f"analysis_complete:{name}:x", kind="analysis_complete",
                 path=str(drive.experiment(name).analysis_signal), status="accepted",
                 experiment=name, file_mtime=None, seen_at=now)]
        rows[training_runs].append(dict(
            experiment_name=name, status="completed", completed_at=trained,
            checkpoint_path=str(folder), hostname="gpu01", user="u", signal_key=key))
        rows[evaluation_jobs].append(dict(
            experiment_name=name, status="completed", trigger_key=key, checkpoint_path=str(folder),
            slurm_job_id=str(100_000 + i), submitted_at=trained, completed_at=evaluated))
        rows[analysis_jobs].append(dict(
            experiment_name=name, status="completed", trigger_key=key,
            slurm_job_id=str(200_000 + i), submitted_at=evaluated, completed_at=now))
        rows[facts] += [dict(key=prefix + key, kind=kind, experiment=name, created_at=now)
                        for prefix, kind in FACTS]
        if len(rows[training_runs]) == CHUNK or i == stop - 1:
            with ledger.write() as conn:
                for table, batch in rows.items():
                    if batch:
                        conn.execute(insert(table), batch)
            rows = {t: [] for t in rows}
