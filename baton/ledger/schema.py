"""The ledger's tables (SQLAlchemy Core).

They hold what the spec's training.db, evaluation.db and analysis.db hold, plus every
Slurm job, every signal seen and each sensor's heartbeat. Changes go through an Alembic
migration in ``migrations/versions`` (``baton db upgrade``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

from baton.slurm.states import TERMINAL_STATES


class UTCDateTime(TypeDecorator[datetime]):
    """Stored naive in UTC (SQLite has no time zones), returned aware in UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the ledger stores UTC only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

NAME = 128
PATH = 4096

# --- training.db -------------------------------------------------------------------------
training_runs = Table(
    "training_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("experiment_name", String(NAME), nullable=False, unique=True),
    Column("campaign", String(NAME)),
    Column("status", String(16), nullable=False),  # started, running, completed, failed
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("checkpoint_path", String(PATH)),
    Column("config_path", String(PATH)),
    Column("hostname", String(255)),
    Column("user", String(255)),
    Column("git_commit", String(64)),
    Column("num_epochs", Integer),
    Column("total_steps", BigInteger),
    Column("final_loss", Float),
    Column("mlflow_run_id", String(64)),
    Column("signal_key", String(200)),
    Column("metadata", JSON),
    # the number of its latest training signal among the experiment's (schema 0010)
    Column("generation", Integer),
    # the status pages: the `failed` filter, a campaign's completion (schema 0012)
    Index("ix_training_runs_status", "status"),
    Index("ix_training_runs_campaign", "campaign"),
)

# every accepted training signal of an experiment, numbered 1, 2, ... in the order they were
# applied: a retrain is a new generation, and an earlier one's row stays (schema 0010)
training_generations = Table(
    "training_generations", metadata,
    Column("id", Integer, primary_key=True),
    Column("experiment_name", String(NAME), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("signal_key", String(300), nullable=False, unique=True),
    Column("signal_time", UTCDateTime),  # the timestamp inside the signal
    Column("checkpoint_path", String(PATH)),  # None: not known (numbered by migration 0010)
    Column("metadata", JSON),  # the signal as accepted
    UniqueConstraint("experiment_name", "generation"),
)

checkpoints = Table(
    "checkpoints", metadata,
    Column("id", Integer, primary_key=True),
    Column("training_run_id", ForeignKey("training_runs.id", ondelete="CASCADE"),
           nullable=False),
    Column("checkpoint_path", String(PATH), nullable=False),
    Column("step", BigInteger),
    Column("epoch", Integer),
    Column("created_at", UTCDateTime),
    Column("metrics", JSON),
    UniqueConstraint("training_run_id", "checkpoint_path"),
)

# --- every Slurm job, whatever its stage --------------------------------------------------
# a job not in a final state: the predicate of the partial index ix_slurm_jobs_open (a
# change to TERMINAL_STATES needs a migration that rebuilds that index)
OPEN_JOB_SQL = "state NOT IN ({})".format(", ".join(f"'{s}'" for s in sorted(TERMINAL_STATES)))
OPEN_JOB = text(OPEN_JOB_SQL)
FINAL_JOB = text(f"NOT ({OPEN_JOB_SQL})")
FIGURES_AWAITED = text("figures IS NULL")

slurm_jobs = Table(
    "slurm_jobs", metadata,
    Column("id", Integer, primary_key=True),
    # one key per intended submission: a second claim with the same key does nothing
    Column("submission_key", String(300), nullable=False, unique=True),
    Column("stage", String(32), nullable=False),
    Column("experiment", String(NAME), nullable=False),
    Column("campaign", String(NAME)),
    Column("attempt", Integer, nullable=False, default=1),
    Column("backend", String(16), nullable=False),
    Column("job_id", String(64)),  # "123" or "123_4" for an array task
    Column("array_job_id", String(32)),
    Column("array_task_id", Integer),
    Column("state", String(32), nullable=False),  # SUBMITTING, PENDING, RUNNING, ...
    Column("reason", Text),
    Column("submitted_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("exit_code", Integer),
    Column("exit_signal", Integer),
    Column("req_cpus", Integer),
    Column("req_mem_mb", Float),
    Column("req_time_s", Integer),
    Column("max_rss_mb", Float),
    Column("cpu_seconds", Float),
    Column("restarts", Integer, nullable=False, default=0),
    Column("node", String(255)),
    Column("stdout_path", String(PATH)),
    Column("stderr_path", String(PATH)),
    Column("script_path", String(PATH)),
    Column("parent_id", ForeignKey("slurm_jobs.id")),  # the job a resubmission repairs
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("metadata", JSON),
    # CPU time and MaxRSS: NULL while awaited, "final" (from accounting of the finished job)
    # or "unavailable" (accounting did not give them within the tracker's bound, the
    # cluster has no accounting, or the job never reached Slurm)
    Column("figures", String(16)),
    Index("ix_slurm_jobs_state", "state"),
    Index("ix_slurm_jobs_experiment_stage", "experiment", "stage"),
    Index("ix_slurm_jobs_job_id", "job_id"),
    # the tracker's two questions read only what they need, however long the history:
    # jobs not in a final state (partial index), and jobs that ended lately
    Index("ix_slurm_jobs_open", "id", sqlite_where=OPEN_JOB, postgresql_where=OPEN_JOB),
    Index("ix_slurm_jobs_ended_at", "ended_at"),
    # jobs whose figures are awaited: the open ones and those that ended lately
    Index("ix_slurm_jobs_figures_awaited", "id", sqlite_where=FIGURES_AWAITED,
          postgresql_where=FIGURES_AWAITED),
)

# --- evaluation.db ------------------------------------------------------------------------
evaluation_jobs = Table(
    "evaluation_jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("experiment_name", String(NAME), nullable=False),
    Column("training_run_id", ForeignKey("training_runs.id")),
    Column("slurm_job_row", ForeignKey("slurm_jobs.id")),
    Column("status", String(16), nullable=False),  # queued, running, completed, failed
    Column("slurm_job_id", String(64)),
    Column("submitted_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("checkpoint_path", String(PATH)),
    Column("mlflow_run_id", String(64)),
    Column("error_message", Text),
    Column("metadata", JSON),
    # the training signal this evaluation answers: its tasks join on it (schema 0002)
    Column("trigger_key", String(300)),
    Column("generation", Integer),  # its trigger's training generation (schema 0010)
    Index("ix_evaluation_jobs_experiment", "experiment_name"),
    Index("ix_evaluation_jobs_trigger_key", "trigger_key"),
    Index("ix_evaluation_jobs_status", "status", "experiment_name"),  # schema 0012
)

evaluation_results = Table(
    "evaluation_results", metadata,
    Column("id", Integer, primary_key=True),
    Column("evaluation_job_id", ForeignKey("evaluation_jobs.id", ondelete="CASCADE"),
           nullable=False),
    Column("dataset_name", String(NAME)),
    Column("metric_name", String(NAME), nullable=False),
    Column("metric_value", Float),
    Column("evaluated_at", UTCDateTime),
)

# --- analysis.db --------------------------------------------------------------------------
analysis_jobs = Table(
    "analysis_jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("experiment_name", String(NAME), nullable=False),
    Column("evaluation_job_id", ForeignKey("evaluation_jobs.id")),
    Column("slurm_job_row", ForeignKey("slurm_jobs.id")),
    Column("status", String(16), nullable=False),
    Column("slurm_job_id", String(64)),
    Column("submitted_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("targets_manifest_path", String(PATH)),
    Column("error_message", Text),
    Column("trigger_key", String(300)),  # the evaluation join it answers (schema 0002)
    Column("mlflow_run_id", String(64)),  # the analysis' MLflow run (schema 0007)
    Column("generation", Integer),  # its trigger's training generation (schema 0010)
    Index("ix_analysis_jobs_experiment", "experiment_name"),
    Index("ix_analysis_jobs_status", "status", "experiment_name"),  # schema 0012
)

analysis_outputs = Table(
    "analysis_outputs", metadata,
    Column("id", Integer, primary_key=True),
    Column("analysis_job_id", ForeignKey("analysis_jobs.id", ondelete="CASCADE"),
           nullable=False),
    Column("output_type", String(16), nullable=False),  # figure, table, report
    Column("output_path", String(PATH), nullable=False),
    Column("created_at", UTCDateTime),
)

# --- every signal seen, accepted or quarantined -------------------------------------------
signals = Table(
    "signals", metadata,
    Column("id", Integer, primary_key=True),
    Column("idempotency_key", String(300), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("experiment", String(NAME)),  # None when the name itself was the problem
    Column("path", String(PATH), nullable=False),
    Column("status", String(16), nullable=False),  # accepted, quarantined
    Column("reason", Text),
    Column("sha256", String(64)),
    Column("signal_time", UTCDateTime),  # the timestamp inside the signal
    Column("file_mtime", Float),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("extra_fields", JSON),  # a lab's own fields of an accepted signal (schema 0009)
    Index("ix_signals_status", "status"),
    Index("ix_signals_experiment", "experiment"),
)

# --- each sensor's last tick --------------------------------------------------------------
heartbeats = Table(
    "heartbeats", metadata,
    Column("name", String(NAME), primary_key=True),
    Column("beat_at", UTCDateTime, nullable=False),
    Column("detail", Text),
)

# --- facts that must be emitted once (joins reported, campaign reports requested) ---------
facts = Table(
    "facts", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("kind", String(64), nullable=False),
    Column("experiment", String(NAME)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("detail", JSON),
)

# --- status reports from any script (schema 0003) ------------------------------------------
status_events = Table(
    "status_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False, unique=True),  # once, however often seen
    Column("project", String(NAME), nullable=False),
    Column("job", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),  # started, running, completed, failed
    Column("progress", Float),
    Column("message", Text),
    Column("reported_at", UTCDateTime, nullable=False),
    Column("host", String(255)),
    Column("ingested_at", UTCDateTime, nullable=False),
    Index("ix_status_events_project_job", "project", "job", "reported_at"),
)

# --- the campaign control plane (schema 0004; the seed's production_overview) --------------
campaigns = Table(
    "campaigns", metadata,
    Column("id", Integer, primary_key=True),
    Column("tag", String(NAME), nullable=False),
    Column("type", String(NAME), nullable=False),
    Column("active", Boolean, nullable=False, default=False),  # curators switch it on
    Column("display_name", String(255)),
    Column("priority", Integer, nullable=False, default=0),  # lower shows first
    Column("started_at", UTCDateTime),
    Column("expected_end", UTCDateTime),
    Column("expected_jobs", Integer),  # None: one per experiment and stage (per checkpoint)
    Column("notes", Text),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("registered_by", String(PATH)),  # the signal or job that named it first
    UniqueConstraint("tag", "type"),
)

# a campaign type the configuration does not know: kept and counted, never dropped
unknown_campaign_types = Table(
    "unknown_campaign_types", metadata,
    Column("id", Integer, primary_key=True),
    Column("type", String(NAME), nullable=False),
    Column("tag", String(NAME), nullable=False),
    Column("occurrences", Integer, nullable=False, default=1),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("source", String(PATH)),  # where it was last seen
    UniqueConstraint("type", "tag"),
)

# --- supervision: each repair of a failed or late job, step by step (schema 0005) -------
supervisions = Table(
    "supervisions", metadata,
    Column("id", Integer, primary_key=True),
    # "job-{row}:{reason}": a job is supervised once per reason, however many ticks see it
    Column("key", String(300), nullable=False, unique=True),
    Column("experiment", String(NAME), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("checkpoint", String(PATH)),
    Column("job_row", ForeignKey("slurm_jobs.id"), nullable=False),  # the job supervised
    Column("job_id", String(64)),
    Column("attempt", Integer, nullable=False),  # the supervised job's attempt
    Column("reason", String(32), nullable=False),  # oom, timeout, ..., late_running, manual
    Column("action", String(16), nullable=False),  # resubmit, cancel, alert, gave_up, none
    Column("note", Text),  # why, in words
    Column("requested_by", String(255), nullable=False),  # "supervisor" or user@host
    Column("script", Text),  # the rendered repair (batch script, or the scancel command)
    Column("new_mem_mb", Float),
    Column("new_time_s", Integer),
    Column("dispatch_status", String(16), nullable=False),  # pending, dispatched, failed, ...
    Column("dispatch_error", Text),
    Column("repair_row", ForeignKey("slurm_jobs.id")),
    Column("repair_job_id", String(64)),
    Column("execution_status", String(16), nullable=False),  # pending, running, completed...
    Column("created_at", UTCDateTime, nullable=False),
    Column("dispatched_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Index("ix_supervisions_job_row", "job_row"),
    Index("ix_supervisions_execution_status", "execution_status"),
)

# --- the ledger's own upkeep: each backup, archive, vacuum and log pruning (schema 0011) ---
maintenance_runs = Table(
    "maintenance_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # backup, archive, vacuum, prune
    Column("ok", Boolean, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("path", String(PATH)),  # the backup written, the archive folder
    Column("bytes", BigInteger),  # the backup's size; the logs' size after pruning
    Column("detail", JSON),  # counts, the archive's stamp, the error of a failure
    Index("ix_maintenance_runs_kind", "kind", "finished_at"),
)
