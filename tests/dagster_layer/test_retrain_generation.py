"""Retraining in Dagster: an experiment trained again (a new ``.training_complete``, the
same checkpoint name) is evaluated again as generation 2; the ``model`` and
``evaluation_metrics`` materializations say their generation, the newest says 2, and the
first generation's metrics stay on the drive beside the second's. The code location runs
in process with the local Slurm backend (see ``tests/e2e/harness.py``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from dagster import AssetKey, AssetRecordsFilter, RunRequest, SensorResult

from baton.inbox import publish
from tests.e2e.harness import PER_SIGNAL, InProcess


def _requests(result: object) -> list[RunRequest]:
    return list(result.run_requests or []) if isinstance(result, SensorResult) else []


def _evaluate(site: InProcess, experiment: str) -> None:
    """Train signal seen, evaluation submitted, its tasks ended, the join's run done."""
    [req] = _requests(site.tick("training_sensor"))
    assert site.run(req, "training_sensor").success
    found: list[RunRequest] = []

    def joined() -> bool:
        found.extend(_requests(site.tick("evaluation_sensor")))
        return bool(found)

    site.wait_for(f"the evaluation of {experiment}", joined,
                  between=lambda: site.tick("slurm_tracker"))
    assert site.run(found[0], "evaluation_sensor").success


def _latest(site: InProcess, asset: str, experiment: str) -> dict[str, object]:
    [record] = site.instance.fetch_materializations(AssetRecordsFilter(
        asset_key=AssetKey(asset), asset_partitions=[experiment]), limit=1).records
    mat = record.asset_materialization
    assert mat is not None
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def test_dagster_shows_the_newest_generation(tmp_path: Path) -> None:
    with InProcess(tmp_path, sensors=PER_SIGNAL) as site:
        site.train("exp1")
        _evaluate(site, "exp1")
        assert _latest(site, "model", "exp1")["generation"] == 1
        assert _latest(site, "evaluation_metrics", "exp1")["generation"] == 1
        time.sleep(0.01)  # a new timestamp: a new signal
        site.train("exp1")  # retrained: the same checkpoint folder
        _evaluate(site, "exp1")
        assert _latest(site, "model", "exp1")["generation"] == 2
        metrics = _latest(site, "evaluation_metrics", "exp1")
        assert (metrics["generation"], metrics["rows"]) == (2, 16)
        assert [g.generation for g in site.ledger.training_generations("exp1")] == [1, 2]
        files = site.drive.experiment("exp1").metrics_dir
        assert duckdb.sql(f"SELECT generation, count(*) FROM read_parquet('{files}/**/*.parquet'"
                          ", union_by_name = true) GROUP BY ALL ORDER BY ALL").fetchall() == [
            (1, 16), (2, 16)]


def test_bad_signals_after_the_first_never_fail_a_tick(tmp_path: Path) -> None:
    """Dagster 1.13 stores one runless check evaluation per check and partition: a second
    (a training signal after a quarantined one, a second bad evaluation signal) broke its
    unique index and failed the sensor's whole tick. Each tick here must succeed."""
    from baton.signals import EvalComplete

    with InProcess(tmp_path, sensors=PER_SIGNAL) as site:
        layout = site.drive.experiment("exp1")
        for n in range(2):  # two bad training signals, then a good one
            site.train("exp1").write_text("{" * (n + 1))
            assert site.tick("training_sensor") is not None
        time.sleep(0.01)
        site.train("exp1")
        assert _requests(site.tick("training_sensor"))
        for n in range(2):  # two bad evaluation signals of a known experiment
            path = publish(site.drive, EvalComplete(
                timestamp=datetime.now(UTC), experiment="exp1", job_id="1",
                status="complete"), layout.eval_dir / ".eval_complete")
            path.write_text("[" * (n + 1))
            assert site.tick("evaluation_sensor") is not None
        assert [s for s in site.ledger.quarantined() if s.kind == "eval_complete"]
