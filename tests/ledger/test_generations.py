"""Retraining: each accepted training signal of an experiment is a new evaluation
generation (1, 2, ...), kept in ``training_generations`` beside the experiment's latest
training run; the evaluations and analyses that answer it carry its number. SQLite and
PostgreSQL, and migration 0010 numbering a ledger's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import column, insert, select, table, update

from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, migrate, open_ledger
from baton.ledger.migrate import head_revision
from baton.ledger.schema import analysis_jobs, evaluation_jobs, signals, training_runs
from baton.ledger.training import apply_training_signal
from baton.signals import SignalFile, TrainingComplete, read_signal

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _checkpoint(drive: DriveLayout, experiment: str, step: int | None = None) -> str:
    layout = drive.experiment(experiment)
    path = layout.final_dir if step is None else layout.checkpoint(step)
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(b"\1" * 16)
    return str(path)


def _signal(drive: DriveLayout, experiment: str, checkpoint: str, when: datetime) -> SignalFile:
    path = publish(drive, TrainingComplete(timestamp=when, experiment=experiment,
                                           hostname="gpu01", user="u",
                                           checkpoint_path=checkpoint))
    return read_signal(path, drive)


def _evaluation(ledger: Ledger, experiment: str, trigger: str, checkpoint: str, n: int) -> int:
    """One evaluation task answering ``trigger``, recorded as submission records it."""
    claim = ledger.claim_submission(f"evaluation:{experiment}:{n}", stage="evaluation",
                                    experiment=experiment, backend="sbatch")
    ledger.mark_submitted(claim.row_id, str(900 + n))
    ledger.record_evaluation_task(experiment=experiment, trigger_key=trigger,
                                  checkpoint=checkpoint, slurm_row=claim.row_id,
                                  job_id=str(900 + n))
    return claim.row_id


def _analysis(ledger: Ledger, experiment: str, trigger: str, n: int) -> None:
    claim = ledger.claim_submission(f"analysis:{experiment}:{n}", stage="analysis",
                                    experiment=experiment, backend="sbatch")
    ledger.record_analysis(experiment=experiment, trigger_key=trigger,
                           slurm_row=claim.row_id, job_id=None)


def _generations(ledger: Ledger, tbl: object) -> dict[str, int]:
    with ledger.read() as conn:
        return {r.trigger_key: r.generation for r in conn.execute(
            select(tbl.c.trigger_key, tbl.c.generation))}  # type: ignore[attr-defined]


def test_a_retrain_is_a_new_generation_and_the_earlier_one_stays(
        ledger_url: str, drive: DriveLayout) -> None:
    led = open_ledger(ledger_url, init=True)
    final = _checkpoint(drive, "e")
    first = _signal(drive, "e", final, T0)
    assert led.accept_signal(first, apply_training_signal)
    _evaluation(led, "e", first.idempotency_key, final, 1)
    _analysis(led, "e", first.idempotency_key, 1)
    # retrained: a new signal naming the same checkpoint, then one naming a new checkpoint
    same = _signal(drive, "e", final, T0 + timedelta(hours=1))
    assert led.accept_signal(same, apply_training_signal)
    row = _evaluation(led, "e", same.idempotency_key, final, 2)
    _analysis(led, "e", same.idempotency_key, 2)
    assert led.record_repair_task(stage="evaluation", original_row=row,
                                  slurm_row=_repair_row(led), job_id="990", attempt=2)
    new = _signal(drive, "e", _checkpoint(drive, "e", 200), T0 + timedelta(hours=2))
    assert led.accept_signal(new, apply_training_signal)
    assert not led.accept_signal(new, apply_training_signal)  # seen twice: one generation
    other = _signal(drive, "other", _checkpoint(drive, "other"), T0)
    assert led.accept_signal(other, apply_training_signal)

    history = [(g.generation, g.signal_key, g.checkpoint_path, g.signal_time)
               for g in led.training_generations("e")]
    assert history == [(1, first.idempotency_key, final, T0),
                       (2, same.idempotency_key, final, T0 + timedelta(hours=1)),
                       (3, new.idempotency_key, new.signal.checkpoint_path,
                        T0 + timedelta(hours=2))]
    run = led.training_run("e")
    assert (run.generation, run.signal_key) == (3, new.idempotency_key)
    assert led.training_run("other").generation == 1
    assert _generations(led, evaluation_jobs) == {
        first.idempotency_key: 1, same.idempotency_key: 2,
        f"{same.idempotency_key}#attempt-2": 2}
    assert _generations(led, analysis_jobs) == {first.idempotency_key: 1,
                                                same.idempotency_key: 2}
    assert led.stage_generation("evaluation", row) == 2  # what a repair of it evaluates
    with led.write() as conn:  # a row written without its generation: from its trigger
        conn.execute(update(evaluation_jobs).where(evaluation_jobs.c.slurm_job_row == row)
                     .values(generation=None))
    assert led.stage_generation("evaluation", row) == 2
    assert led.stage_generation("analysis", row) is None
    assert led.check().ok, led.check().problems
    led.close()


def _repair_row(ledger: Ledger) -> int:
    claim = ledger.claim_submission("supervise:1", stage="evaluation", experiment="e",
                                    backend="sbatch", attempt=2)
    return claim.row_id


def test_replaying_the_signals_gives_the_same_generations(tmp_path: Path,
                                                          drive: DriveLayout) -> None:
    """``baton db rebuild`` replays the drive's signals through the applier, ordered by
    their timestamp (ties by key): the numbers come from the signals alone."""
    final = _checkpoint(drive, "e")
    sigs = [_signal(drive, "e", final, T0 + timedelta(minutes=i)) for i in range(3)]
    got = []
    for name in ("live", "rebuilt"):
        led = open_ledger(f"sqlite:///{tmp_path / name}.db", init=True)
        for sf in sorted(sigs, key=lambda s: (s.signal.timestamp, s.idempotency_key)):
            assert led.accept_signal(sf, apply_training_signal)
        got.append([(g.generation, g.signal_key) for g in led.training_generations("e")])
        led.close()
    assert got[0] == got[1] == [(i + 1, s.idempotency_key) for i, s in enumerate(sigs)]


def test_migration_0010_numbers_the_history(ledger_url: str) -> None:
    """A ledger of 0009 kept one training row per experiment, overwritten at each retrain;
    every accepted training signal is still in ``signals``: each becomes a generation, in
    the order of its timestamp, and the evaluations and analyses take their trigger's."""
    led = Ledger(ledger_url, create=True)
    assert migrate.upgrade(led.engine, "0009") == (None, "0009")
    now = datetime.now(UTC)
    old = {t.name: table(t.name, *[column(c.name, c.type) for c in t.c
                                   if c.name != "generation"])
           for t in (training_runs, evaluation_jobs, analysis_jobs)}
    keys = ["training_complete:e:aaa", "training_complete:e:bbb", "training_complete:e:ccc"]
    with led.engine.begin() as conn:
        for i, key in enumerate(keys):  # recorded out of their timestamps' order
            conn.execute(insert(signals).values(
                idempotency_key=key, kind="training_complete", experiment="e",
                path=f"/d/{i}", status="accepted", seen_at=now,
                signal_time=T0 + timedelta(hours=[2, 0, 1][i])))
        conn.execute(insert(signals).values(
            idempotency_key="training_complete:e:bad", kind="training_complete",
            experiment="e", path="/d/bad", status="quarantined", seen_at=now,
            signal_time=T0 - timedelta(hours=1)))
        run = 7
        conn.execute(insert(old["training_runs"]).values(
            id=run, experiment_name="e", status="completed", signal_key=keys[0],
            checkpoint_path="/d/final"))
        for trigger in (keys[1], keys[2], f"{keys[2]}#attempt-2", keys[0]):
            conn.execute(insert(old["evaluation_jobs"]).values(
                experiment_name="e", training_run_id=run, status="completed",
                trigger_key=trigger))
        conn.execute(insert(old["analysis_jobs"]).values(
            experiment_name="e", status="completed", trigger_key=keys[2]))
    assert led.init() == ("0009", head_revision())
    assert [(g.generation, g.signal_key, g.signal_time) for g in
            led.training_generations("e")] == [(1, keys[1], T0), (2, keys[2], T0 + timedelta(
                hours=1)), (3, keys[0], T0 + timedelta(hours=2))]
    assert led.training_run("e").generation == 3
    assert _generations(led, evaluation_jobs) == {keys[1]: 1, keys[2]: 2,
                                                  f"{keys[2]}#attempt-2": 2, keys[0]: 3}
    assert _generations(led, analysis_jobs) == {keys[2]: 2}
    assert led.check().ok, led.check().problems
    led.close()
