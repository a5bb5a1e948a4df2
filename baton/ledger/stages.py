"""The pipeline's state per experiment: evaluation tasks and their join, analyses, and
campaigns. Every decision the sensors make is a query here, so it survives restarts and
any number of joins can be in flight at once (one row set per experiment, no global
structure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, Table, and_, func, insert, literal, select, update

from baton.ledger.base import LedgerBase, transaction, utcnow
from baton.ledger.schema import (
    analysis_jobs,
    analysis_outputs,
    evaluation_jobs,
    evaluation_results,
    facts,
    signals,
    slurm_jobs,
    training_runs,
)
from baton.ledger.signal_log import Applier
from baton.ledger.training import apply_training_signal, generation_of
from baton.ledger.window import Window, since
from baton.signals import OUTSIDE_SLURM, AnalysisComplete, EvalComplete, SignalFile
from baton.slurm.states import is_terminal

DONE = ("completed", "failed")


def _no_fact(prefix: str, column: Any) -> Any:
    """SQL: no fact ``prefix + column`` yet (what the sensors have not yet confirmed)."""
    return ~select(facts.c.id).where(facts.c.key == literal(prefix) + column).exists()


def _training_since(window: Window | None, name: str) -> Select[Any]:
    """Training runs with the ledger row of their latest signal, from the window's mark:
    a new training signal is a new row of ``signals`` even when the run's row is reused.
    Read from ``signals`` (a range of ids) into the runs by their unique experiment name,
    so an idle tick reads what is past the mark, not every run (SQLite scanned all 100,000
    runs when the join started from them)."""
    return select(training_runs, signals.c.id.label("signal_row")).select_from(signals).join(
        training_runs, and_(training_runs.c.experiment_name == signals.c.experiment,
                            training_runs.c.signal_key == signals.c.idempotency_key)).where(
        signals.c.id >= since(window, name))


def current_trigger(conn: Any, experiment: str) -> str | None:
    return conn.execute(select(evaluation_jobs.c.trigger_key).where(
        evaluation_jobs.c.experiment_name == experiment).order_by(
        evaluation_jobs.c.id.desc()).limit(1)).scalar()


def apply_eval_signal(conn: Connection, sf: SignalFile) -> int:
    """Mark the tasks an ``.eval_complete``/``.eval_failed`` answers; returns how many.
    A task's signal (``tasks/{checkpoint}/``) answers that checkpoint's tasks; one at the
    experiment level the checkpoints it lists, or every task when it lists none. A run
    outside Slurm (job ``0``) answers no task that Slurm runs: a hand rerun cannot answer
    a live evaluation: only rows of no pipeline job (no ``slurm_job_row``), so not one
    claimed whose job id Slurm has not yet given either."""
    sig = sf.signal
    assert isinstance(sig, EvalComplete)
    status = "completed" if sig.status == "complete" and sig.kind == "eval_complete" \
        else "failed"
    ckpts = set(sig.checkpoints_evaluated or [])
    trigger = current_trigger(conn, sig.experiment)
    rows = conn.execute(select(evaluation_jobs).where(
        evaluation_jobs.c.experiment_name == sig.experiment,
        evaluation_jobs.c.trigger_key == trigger)).all()
    if "tasks" in sf.path.parts:
        name = sf.path.parent.name
        rows = [r for r in rows if r.checkpoint_path in ckpts
                or (r.checkpoint_path or "").rstrip("/").endswith("/" + name)]
    elif ckpts:
        rows = [r for r in rows if r.checkpoint_path in ckpts]
    if sig.job_id == OUTSIDE_SLURM:
        rows = [r for r in rows if r.slurm_job_row is None]
    for r in rows:
        conn.execute(update(evaluation_jobs).where(evaluation_jobs.c.id == r.id).values(
            status=status, completed_at=sig.timestamp, error_message=sig.error_message,
            mlflow_run_id=sig.mlflow_run_id,
            metadata={"signal": sf.idempotency_key,
                      "datasets": sig.datasets_evaluated,
                      "duration_s": sig.eval_duration_seconds}))
        for dataset, metric, value in sig.metric_values():
            conn.execute(insert(evaluation_results).values(
                evaluation_job_id=r.id, dataset_name=dataset, metric_name=metric,
                metric_value=value, evaluated_at=sig.timestamp))
    return len(rows)


def apply_analysis_signal(conn: Connection, sf: SignalFile) -> bool:
    """Record an ``.analysis_complete`` against the experiment's latest analysis; False
    when there is none to answer. A run outside Slurm (job ``0``: ``baton analyze`` by
    hand) answers no analysis of a pipeline job, as for an evaluation."""
    sig = sf.signal
    assert isinstance(sig, AnalysisComplete)
    row = conn.execute(select(analysis_jobs.c.id, analysis_jobs.c.slurm_job_row).where(
        analysis_jobs.c.experiment_name == sig.experiment).order_by(
        analysis_jobs.c.id.desc()).limit(1)).first()
    if row is None or (sig.job_id == OUTSIDE_SLURM and row.slurm_job_row is not None):
        return False
    conn.execute(update(analysis_jobs).where(analysis_jobs.c.id == row.id).values(
        status="completed" if sig.status == "complete" else "failed",
        completed_at=sig.timestamp, error_message=sig.error_message,
        targets_manifest_path=sig.manifest_path, mlflow_run_id=sig.mlflow_run_id))
    outputs = [("report", sig.report_path)] if sig.report_path else []
    outputs += [(_output_type(p), p) for p in sig.outputs or [] if p != sig.report_path]
    for kind, path in outputs:
        conn.execute(insert(analysis_outputs).values(
            analysis_job_id=row.id, output_type=kind, output_path=path,
            created_at=sig.timestamp))
    return True


# how each kind of accepted signal changes the pipeline's state (see Ledger.accept_signal)
APPLIERS: dict[str, Applier] = {
    "training_complete": apply_training_signal,
    "eval_complete": apply_eval_signal,
    "eval_failed": apply_eval_signal,
    "analysis_complete": apply_analysis_signal,
}


def _output_type(path: str) -> str:
    if path.endswith((".html", ".htm")):
        return "report"
    if path.endswith((".png", ".pdf", ".svg", ".jpg")):
        return "figure"
    return "table"


def _fill_job_id(conn: Connection, table: Table, slurm_row: int, job_id: str | None) -> bool:
    """The stage row of Slurm job row ``slurm_row`` given its job id when it has none yet;
    False when there is no such row."""
    row = conn.execute(select(table.c.id, table.c.slurm_job_id).where(
        table.c.slurm_job_row == slurm_row)).first()
    if row is None:
        return False
    if job_id is not None and row.slurm_job_id is None:
        conn.execute(update(table).where(table.c.id == row.id).values(slurm_job_id=job_id))
    return True


def repaired_trigger(trigger: str, attempt: int) -> str:
    """The join key of a repair: its own, so the stage's join (and the Dagster run keyed
    on it) happens again once the repair ends, even if the failed attempt's join ran."""
    return f"{trigger.split('#attempt-')[0]}#attempt-{attempt}"


# how long a completed job may take to write its signal before its task counts as failed
MISSING_SIGNAL_GRACE_S = 300


def sync_stage_table(conn: Connection, table: Table, cutoff: datetime) -> int:
    """Slurm's word in one stage table (see :meth:`Stages.sync_stage_rows`): ``cutoff``,
    the end before which a completed job's missing signal counts as never written."""
    n = 0
    rows = conn.execute(select(table.c.id, table.c.status, slurm_jobs).join(
        slurm_jobs, slurm_jobs.c.id == table.c.slurm_job_row).where(
        table.c.status.not_in(DONE))).all()
    for r in rows:
        values: dict[str, Any] = {}
        if r.state == "RUNNING" and r.status == "queued":
            values = {"status": "running", "started_at": r.started_at}
        elif r.state in ("COMPLETED",) and r.ended_at and r.ended_at < cutoff:
            values = {"status": "failed", "completed_at": r.ended_at,
                      "error_message": f"Slurm job {r.job_id} completed but "
                      "never wrote its completion signal"}
        elif r.state != "COMPLETED" and is_terminal(r.state):
            code = "" if r.exit_code is None else \
                f" (exit {r.exit_code}:{r.exit_signal or 0})"
            values = {"status": "failed", "completed_at": r.ended_at or utcnow(),
                      "error_message": f"Slurm job {r.job_id} ended {r.state}"
                      f"{code}" + (f": {r.reason}" if r.reason else "")}
        if values:
            conn.execute(update(table).where(table.c.id == r.id).values(**values))
            n += 1
    return n



class Stages(LedgerBase):
    """The pipeline's state per experiment: what the sensors ask and record."""

    @transaction(duplicate=False)
    def record_fact(self, conn: Connection, key: str, kind: str,
                    experiment: str | None = None, detail: dict[str, Any] | None = None
                    ) -> bool:
        """Record a once-only fact; False when it was already recorded."""
        conn.execute(insert(facts).values(key=key, kind=kind, experiment=experiment,
                                          created_at=utcnow(), detail=detail))
        return True

    @transaction()
    def record_facts(self, conn: Connection, kind: str, keys: dict[str, str | None]) -> None:
        """Facts ``key -> experiment`` of ``kind`` in one transaction (a burst's thousand
        in one commit); those already recorded are kept as they are."""
        for i in range(0, len(names := list(keys)), 500):
            chunk = names[i:i + 500]
            held = set(conn.execute(select(facts.c.key).where(facts.c.key.in_(chunk))).scalars())
            rows = [dict(key=k, kind=kind, experiment=keys[k], created_at=utcnow())
                    for k in chunk if k not in held]
            if rows:
                conn.execute(insert(facts), rows)

    def facts_unanswered(self, kind: str, prefix: str, answer: str,
                         window: Window | None = None) -> Sequence[Row[Any]]:
        """The facts of ``kind`` (keys ``prefix + X``) without their answer ``answer + X``
        yet, past the window's mark."""
        rest = func.substr(facts.c.key, len(prefix) + 1)
        answered = select(literal(1)).select_from(other := facts.alias("answer")).where(
            other.c.key == literal(answer) + rest).exists()
        with self.read() as conn:
            top = window.top(conn, facts) if window else None
            rows = conn.execute(select(facts).where(
                facts.c.id >= since(window, kind), facts.c.kind == kind, ~answered,
            ).order_by(facts.c.id)).all()
        if window:
            window.keep(kind, (r.id for r in rows), top)
        return rows

    def fact_keys(self, kind: str) -> list[str]:
        """The keys of every fact of ``kind`` (a rare kind: a list, not a stream)."""
        with self.read() as conn:
            return list(conn.execute(select(facts.c.key).where(facts.c.kind == kind)).scalars())

    def has_fact(self, key: str) -> bool:
        with self.read() as conn:
            return conn.execute(select(facts.c.id).where(facts.c.key == key)).first() is not None

    def models_unreported(self, window: Window | None = None) -> Sequence[Row[Any]]:
        """Accepted training signals whose ``model`` event is not confirmed in Dagster yet."""
        with self.read() as conn:
            top = window.top(conn, signals) if window else None
            rows = conn.execute(_training_since(window, "models").where(
                _no_fact("model:", training_runs.c.signal_key)).order_by(signals.c.id)).all()
        if window:
            window.keep("models", (r.signal_row for r in rows), top)
        return rows

    def training_awaiting_evaluation(self, window: Window | None = None
                                     ) -> Sequence[Row[Any]]:
        """Trained experiments whose latest training signal has no evaluation run yet."""
        answered = select(evaluation_jobs.c.id).where(
            evaluation_jobs.c.trigger_key == training_runs.c.signal_key).exists()
        with self.read() as conn:
            top = window.top(conn, signals) if window else None
            rows = [r for r in conn.execute(_training_since(window, "awaiting_evaluation").where(
                ~answered, _no_fact("run:evaluation_job:", training_runs.c.signal_key),
            ).order_by(signals.c.id)) if r.status == "completed"]
            # the status is tested here: in SQL, SQLite reads every run through its index
        if window:
            window.keep("awaiting_evaluation", (r.signal_row for r in rows), top)
        return rows

    @transaction()
    def record_evaluation_task(self, conn: Connection, *, experiment: str, trigger_key: str,
                               checkpoint: str, slurm_row: int, job_id: str | None) -> None:
        """One evaluation task (one checkpoint of one training signal); once per slurm row.
        Written with the submission's claim (``job_id`` None), so that its job's signal finds
        it even if the submitter dies right after sbatch; called again with the job id once
        Slurm answers, it fills it in."""
        if _fill_job_id(conn, evaluation_jobs, slurm_row, job_id):
            return
        run = conn.execute(select(training_runs.c.id).where(
            training_runs.c.experiment_name == experiment)).scalar()
        conn.execute(insert(evaluation_jobs).values(
            experiment_name=experiment, training_run_id=run, slurm_job_row=slurm_row,
            status="queued", slurm_job_id=job_id, submitted_at=utcnow(),
            checkpoint_path=checkpoint, trigger_key=trigger_key,
            generation=generation_of(conn, trigger_key)))

    def evaluation_tasks(self, experiment: str, trigger: str | None = None
                         ) -> Sequence[Row[Any]]:
        """The tasks of the experiment's current (or given) evaluation."""
        with self.read() as conn:
            trigger = trigger or current_trigger(conn, experiment)
            return conn.execute(select(evaluation_jobs).where(
                evaluation_jobs.c.experiment_name == experiment,
                evaluation_jobs.c.trigger_key == trigger).order_by(evaluation_jobs.c.id)).all()

    def evaluations_ready(self, window: Window | None = None
                          ) -> list[tuple[str, str]]:
        """(experiment, trigger) of current evaluations whose every task has ended."""
        latest = select(evaluation_jobs.c.experiment_name,
                        func.max(evaluation_jobs.c.id).label("last")).where(
            evaluation_jobs.c.id >= since(window, "evaluations")).group_by(
            evaluation_jobs.c.experiment_name).subquery()
        with self.read() as conn:
            top = window.top(conn, evaluation_jobs) if window else None
            current = conn.execute(select(evaluation_jobs.c.id, evaluation_jobs.c.experiment_name,
                                          evaluation_jobs.c.trigger_key).join(
                latest, evaluation_jobs.c.id == latest.c.last).where(
                _no_fact("run:evaluation_metrics:", evaluation_jobs.c.trigger_key))).all()
            ready = []
            for _, exp, trigger in current:
                open_tasks = conn.execute(select(func.count()).select_from(evaluation_jobs).where(
                    evaluation_jobs.c.experiment_name == exp,
                    evaluation_jobs.c.trigger_key == trigger,
                    evaluation_jobs.c.status.not_in(DONE))).scalar_one()
                if open_tasks == 0:
                    ready.append((exp, trigger))
        if window:
            window.keep("evaluations", (r.id for r in current), top)
        return ready

    def sync_stage_rows(self, missing_signal_grace_s: float = MISSING_SIGNAL_GRACE_S) -> int:
        """Carry Slurm's word into the stage tables: running; failed when the job failed, or
        finished but never wrote its signal within the grace period."""
        cutoff = utcnow() - timedelta(seconds=missing_signal_grace_s)
        return sum(self._sync_stage_table(table, cutoff)
                   for table in (evaluation_jobs, analysis_jobs))

    @transaction()
    def _sync_stage_table(self, conn: Connection, table: Table, cutoff: datetime) -> int:
        return sync_stage_table(conn, table, cutoff)

    @transaction()
    def record_analysis(self, conn: Connection, *, experiment: str, trigger_key: str,
                        slurm_row: int, job_id: str | None) -> None:
        """One analysis of an evaluation; once per slurm row, written with the claim and
        given its job id later, as :meth:`record_evaluation_task`."""
        if _fill_job_id(conn, analysis_jobs, slurm_row, job_id):
            return
        conn.execute(insert(analysis_jobs).values(
            experiment_name=experiment, slurm_job_row=slurm_row, status="queued",
            slurm_job_id=job_id, submitted_at=utcnow(), trigger_key=trigger_key,
            generation=generation_of(conn, trigger_key)))

    def current_analysis(self, experiment: str) -> Row[Any] | None:
        with self.read() as conn:
            return conn.execute(select(analysis_jobs).where(
                analysis_jobs.c.experiment_name == experiment).order_by(
                analysis_jobs.c.id.desc()).limit(1)).first()

    def analysis_outputs_of(self, analysis_id: int) -> list[tuple[str, str]]:
        with self.read() as conn:
            return [(r.output_type, r.output_path) for r in conn.execute(
                select(analysis_outputs).where(analysis_outputs.c.analysis_job_id == analysis_id)
                .order_by(analysis_outputs.c.id))]

    def analyses_ready(self, window: Window | None = None) -> Sequence[Row[Any]]:
        """The latest analysis of each experiment, once it has ended."""
        latest = select(func.max(analysis_jobs.c.id)).where(
            analysis_jobs.c.id >= since(window, "analyses")).group_by(
            analysis_jobs.c.experiment_name).scalar_subquery()
        with self.read() as conn:
            top = window.top(conn, analysis_jobs) if window else None
            current = conn.execute(select(analysis_jobs).where(
                analysis_jobs.c.id.in_(latest),
                _no_fact("run:analysis_report:", analysis_jobs.c.trigger_key))).all()
        if window:
            window.keep("analyses", (r.id for r in current), top)
        return [r for r in current if r.status in DONE]

    def campaigns_ready(self) -> list[tuple[str, list[str]]]:
        """Campaigns whose every experiment's latest analysis completed."""
        latest = select(func.max(analysis_jobs.c.id)).group_by(
            analysis_jobs.c.experiment_name).scalar_subquery()
        with self.read() as conn:
            members: dict[str, list[str]] = {}
            for camp, exp in conn.execute(select(training_runs.c.campaign,
                                                 training_runs.c.experiment_name).where(
                    training_runs.c.campaign.is_not(None))):
                members.setdefault(camp, []).append(exp)
            done = {r[0] for r in conn.execute(select(analysis_jobs.c.experiment_name).where(
                analysis_jobs.c.id.in_(latest), analysis_jobs.c.status == "completed"))}
        return [(c, sorted(exps)) for c, exps in sorted(members.items())
                if all(e in done for e in exps)]

    def campaign_experiments(self, campaign: str) -> list[str]:
        with self.read() as conn:
            return sorted(r[0] for r in conn.execute(select(training_runs.c.experiment_name).where(
                and_(training_runs.c.campaign == campaign))))

    def stage_generation(self, stage: str, slurm_row: int) -> int | None:
        """The training generation the stage's task run by Slurm job row ``slurm_row``
        answers (a repair resubmits it for the same generation), from its row or else its
        trigger (a row written without it); None when none does."""
        table = evaluation_jobs if stage == "evaluation" else analysis_jobs
        with self.read() as conn:
            row = conn.execute(select(table.c.generation, table.c.trigger_key).where(
                table.c.slurm_job_row == slurm_row)).first()
            if row is None:
                return None
            return row.generation or generation_of(conn, row.trigger_key)

    def record_repair_task(self, *, stage: str, original_row: int, slurm_row: int,
                           job_id: str | None, attempt: int) -> bool:
        """Record a resubmitted job as a new task of the stage row the original job had;
        False when the original had none (a job submitted by hand)."""
        table = evaluation_jobs if stage == "evaluation" else analysis_jobs
        with self.read() as conn:
            old = conn.execute(select(table).where(table.c.slurm_job_row == original_row)).first()
        if old is None or old.trigger_key is None:
            return False
        trigger = repaired_trigger(old.trigger_key, attempt)
        if stage == "evaluation":
            self.record_evaluation_task(experiment=old.experiment_name, trigger_key=trigger,
                                   checkpoint=old.checkpoint_path, slurm_row=slurm_row,
                                   job_id=job_id)
        else:
            self.record_analysis(experiment=old.experiment_name, trigger_key=trigger,
                            slurm_row=slurm_row, job_id=job_id)
        return True
