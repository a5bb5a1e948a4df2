"""``baton sql``: DuckDB views over the metrics of every experiment and over the ledger.

The same views are written to ``{state_dir}/sql/views.sql`` for the ``duckdb`` CLI
(``duckdb -init ~/.local/state/baton/sql/views.sql``). The ledger is snapshotted to
Parquet first (``{state_dir}/sql/ledger/``), so DuckDB needs no database extension and
never touches the live ledger."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from baton.config import Config
from baton.evaluate.schema import METRIC_SCHEMA
from baton.ledger import open_ledger
from baton.ledger.schema import metadata

LEDGER_VIEWS = {"jobs": "slurm_jobs", "signals": "signals", "training_runs": "training_runs",
                "evaluation_jobs": "evaluation_jobs", "evaluation_results": "evaluation_results",
                "analysis_jobs": "analysis_jobs", "analysis_outputs": "analysis_outputs",
                "heartbeats": "heartbeats", "campaigns": "campaigns",
                "unknown_campaign_types": "unknown_campaign_types",
                "supervisions": "supervisions", "status_events": "status_events"}


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def snapshot_ledger(config: Config) -> Path:
    """Every ledger table to Parquet (JSON columns as text)."""
    folder = config.state_dir / "sql" / "ledger"
    folder.mkdir(parents=True, exist_ok=True)
    ledger = open_ledger(config.ledger_url)
    try:
        with ledger.read() as conn:
            for table in LEDGER_VIEWS.values():
                t = metadata.tables[table]
                rows = conn.execute(select(t)).mappings().all()
                schema = pa.schema([(c.name, _arrow_type(c.type)) for c in t.columns])
                data = {c.name: [_plain(r[c.name]) for r in rows] for c in t.columns}
                tmp = folder / f".{table}.parquet.tmp"
                pq.write_table(pa.table(data, schema=schema), tmp)
                tmp.replace(folder / f"{table}.parquet")
    finally:
        ledger.close()
    return folder


def _plain(value: object) -> object:
    import json

    return json.dumps(value) if isinstance(value, dict | list) else value


def _arrow_type(sql_type: object) -> pa.DataType:
    """The ledger's column types in Arrow, so even an empty table has typed columns."""
    from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer

    from baton.ledger.schema import UTCDateTime

    if isinstance(sql_type, UTCDateTime | DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(sql_type, Integer | BigInteger):
        return pa.int64()
    if isinstance(sql_type, Float):
        return pa.float64()
    if isinstance(sql_type, Boolean):
        return pa.bool_()
    return pa.string()  # text, and JSON as its text


def views_sql(config: Config) -> str:
    drive = config.drive
    lines = ["-- baton's views for the duckdb CLI. Made by `baton sql --views`; run",
             f"--   duckdb -init {config.state_dir / 'sql' / 'views.sql'}"]
    metrics = drive.evaluation / "*" / "metrics" / "dataset=*" / "metric=*" / "*.parquet"
    if any(drive.evaluation.glob("*/metrics/dataset=*/metric=*/*.parquet")):
        lines.append(f"CREATE OR REPLACE VIEW metrics AS SELECT * FROM read_parquet("
                     f"{_quote(metrics)}, hive_partitioning = true, union_by_name = true);")
    else:  # no metrics yet: an empty view with the right columns
        cols = ", ".join(f"NULL::{_duck(f.type)} AS {f.name}" for f in METRIC_SCHEMA) + \
            ", NULL::VARCHAR AS metric"
        lines.append(f"CREATE OR REPLACE VIEW metrics AS SELECT {cols} WHERE false;")
    preds = drive.evaluation / "*" / "predictions" / "*.parquet" / "*.parquet"
    if any(drive.evaluation.glob("*/predictions/*.parquet/*.parquet")):
        lines.append(f"CREATE OR REPLACE VIEW predictions AS SELECT * FROM read_parquet("
                     f"{_quote(preds)}, union_by_name = true);")
    folder = config.state_dir / "sql" / "ledger"
    for view, table in LEDGER_VIEWS.items():
        lines.append(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet("
                     f"{_quote(folder / (table + '.parquet'))});")
    return "\n".join(lines) + "\n"


def _duck(t: pa.DataType) -> str:
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    return "VARCHAR"


def refresh(config: Config) -> Path:
    """Snapshot the ledger and write views.sql; returns its path."""
    snapshot_ledger(config)
    path = config.state_dir / "sql" / "views.sql"
    path.write_text(views_sql(config))
    return path


def connect(config: Config) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(refresh(config).read_text())
    return con
