"""``baton sql``: DuckDB views over the metrics of every experiment and over the ledger.

``baton sql QUERY`` (:func:`connect`) writes nothing: it reads read-only only the ledger
tables the query names (:func:`named_views`), each streamed in batches of rows into the
query as DuckDB scans it (:class:`LedgerTable`: neither Python nor DuckDB holds a table),
so a query of the metrics costs nothing however long the ledger's history, and memory
stays flat as the ledger grows, whatever it names; the metrics and predictions views read the
drive's Parquet. A ledger view is the union of its table and of the Parquet files ``baton
db archive`` moved its settled rows to (``{state_dir}/archive/{table}/*.parquet``).
DuckDB does not read the ledger directly: its sqlite and postgres extensions are on PyPI
only for older DuckDB versions than baton's, an extension loads only into the version it
was built for, and its download site is out of reach of the lab's machines. Its DuckDB is
locked down: no external access but the drive's ``evaluation/`` folder, no extension
installed or loaded, configuration locked, and only statements DuckDB's parser calls SELECT
or EXPLAIN run (:func:`refuse_writes`, checked before anything is read), so nothing
(``COPY ... TO``, ``ATTACH``, ``EXPORT``) writes or reaches out.

Every metrics and predictions row has its ``generation`` (a retrained experiment's results
are generation 2, 3, ...; a file written before generations reads as 1), and
``latest_metrics`` holds each experiment's newest generation only.

``baton sql --views`` (:func:`refresh`) writes the same views to
``{state_dir}/sql/views.sql`` for the ``duckdb`` CLI (``duckdb -init
~/.local/state/baton/sql/views.sql``): the metrics and predictions views are globs, read at
each query, so the file never goes stale for them; the ledger is snapshotted to Parquet
(``{state_dir}/sql/ledger/``, with the archive's files as above), so DuckDB needs no
database extension and never touches the live ledger."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from baton.config import Config
from baton.errors import BatonError
from baton.evaluate.metric_schema import WRITTEN_METRIC_SCHEMA, with_generation
from baton.evaluate.writer import PREDICTION_SCHEMA
from baton.fsio import atomic_path
from baton.layout import METRIC_FILES
from baton.ledger import Ledger, open_ledger

LEDGER_VIEWS = {"jobs": "slurm_jobs", "signals": "signals", "training_runs": "training_runs",
                "training_generations": "training_generations",
                "evaluation_jobs": "evaluation_jobs", "evaluation_results": "evaluation_results",
                "analysis_jobs": "analysis_jobs", "analysis_outputs": "analysis_outputs",
                "heartbeats": "heartbeats", "campaigns": "campaigns",
                "unknown_campaign_types": "unknown_campaign_types",
                "supervisions": "supervisions", "status_events": "status_events"}


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


# each experiment's newest generation: what a retrained experiment's results are now
LATEST_METRICS = ("CREATE OR REPLACE VIEW latest_metrics AS SELECT * FROM metrics "
                  "QUALIFY generation = max(generation) OVER (PARTITION BY experiment);")


# rows per batch a query's scan reads: a batch is what the scan holds (as Python objects
# first), about 24 MB at 2,048 rows of jobs against 63 MB at 10,000; 2,048 is a DuckDB vector
SCAN_ROWS = 2048
ARROW = {"timestamp": pa.timestamp("us", tz="UTC"), "integer": pa.int64(),
         "float": pa.float64(), "boolean": pa.bool_(), "text": pa.string()}


def ledger_batches(ledger: Ledger, table: str, size: int | None = None
                   ) -> pa.RecordBatchReader:
    """One ledger table as Arrow batches of ``size`` rows (the ledger's default if None;
    JSON columns as text), read as they are consumed."""
    schema = pa.schema([(name, ARROW[kind]) for name, kind in ledger.table_columns(table)])
    batches = ledger.table_batches(table) if size is None else ledger.table_batches(table, size)
    return pa.RecordBatchReader.from_batches(schema, (
        pa.record_batch(batch, schema=schema) for batch in batches))


class LedgerTable:
    """A ledger table as an Arrow stream that DuckDB can scan any number of times: each
    scan asks for ``__arrow_c_stream__`` anew and gets a fresh read of the table, streamed
    batch by batch into the query (a RecordBatchReader registered as such could be
    scanned once; copied into a DuckDB table it would hold the whole table in memory).
    Each scan is a read transaction of its own."""

    def __init__(self, ledger: Ledger, table: str) -> None:
        self.ledger, self.table = ledger, table

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        reader = ledger_batches(self.ledger, self.table, SCAN_ROWS)
        return reader.__arrow_c_stream__(requested_schema)


def archive_glob(config: Config, table: str) -> Path | None:
    """The Parquet files ``baton db archive`` moved ``table``'s settled rows to, as a glob;
    None while there are none (DuckDB refuses a glob that matches nothing)."""
    folder = config.state_dir / "archive" / table
    return folder / "*.parquet" if next(folder.glob("*.parquet"), None) else None


def with_archive(config: Config, view: str, table: str, live: str) -> str:
    """``CREATE VIEW`` of ``view``: the relation ``live`` and ``table``'s archived rows."""
    sql = f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {live}"
    if (files := archive_glob(config, table)) is not None:
        sql += f" UNION ALL BY NAME SELECT * FROM read_parquet({_quote(files)})"
    return sql + ";"


def snapshot_ledger(config: Config) -> Path:
    """Every ledger table to Parquet (JSON columns as text), streamed batch by batch."""
    ledger = open_ledger(config.ledger_url, read_only=True)  # refuses a missing one first
    folder = config.state_dir / "sql" / "ledger"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for table in LEDGER_VIEWS.values():
            reader = ledger_batches(ledger, table)
            with atomic_path(folder / f"{table}.parquet") as tmp, \
                    pq.ParquetWriter(tmp, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
    finally:
        ledger.close()
    return folder


def glob_root(config: Config) -> Path:
    """``{state_dir}/sql/files``: ``drive`` links to the drive's ``evaluation/`` folder and
    ``empty`` holds one empty, typed Parquet file for metrics and one for predictions.
    One glob over both always matches a file, so the views can be created before any
    metrics exist (DuckDB refuses a glob that matches nothing) and, being globs, they see
    every file written afterwards, at each query."""
    root = config.state_dir / "sql" / "files"
    empty = root / "empty" / "_"
    for schema, path in ((WRITTEN_METRIC_SCHEMA, empty / "metrics" / "dataset=_" / "metric=_"),
                         (PREDICTION_SCHEMA, empty / "predictions" / "_.parquet")):
        path.mkdir(parents=True, exist_ok=True)
        if not (path / "empty.parquet").is_file():
            with atomic_path(path / "empty.parquet") as tmp:
                pq.write_table(schema.empty_table(), tmp)
    link = root / "drive"
    target = config.drive.evaluation
    if not link.is_symlink() or Path(os.readlink(link)) != target:
        tmp_link = root / ".drive.tmp"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(target, target_is_directory=True)
        tmp_link.replace(link)
    return root


def views_sql(config: Config) -> str:
    root = glob_root(config)
    snapshot = config.state_dir / "sql" / "ledger"
    lines = ["-- baton's views for the duckdb CLI. Made by `baton sql --views`; run",
             f"--   duckdb -init {config.state_dir / 'sql' / 'views.sql'}",
             "-- metrics and predictions read the drive's Parquet at each query (files",
             f"-- {root / 'drive'} -> {config.drive.evaluation});",
             f"-- the ledger views read the snapshot in {snapshot}, taken when this file was",
             "-- written: run `baton sql --views` again for a fresh one."]
    metrics = root / "*" / "*" / "metrics" / METRIC_FILES
    lines.append("CREATE OR REPLACE VIEW metrics AS " + with_generation(
        f"read_parquet({_quote(metrics)}, hive_partitioning = true, union_by_name = true)")
        + ";")
    lines.append(LATEST_METRICS)
    # one experiment's metrics from its own folder: the view cannot prune on the experiment
    # (its folder is not key=value), so through it a query opens every experiment's files
    own = (f"{_quote(str(root / 'drive') + '/')} || name || "
           f"{_quote('/metrics/' + METRIC_FILES)}")
    lines.append("CREATE OR REPLACE MACRO experiment_metrics(name) AS TABLE " + with_generation(
        f"read_parquet({own}, hive_partitioning = true, union_by_name = true)") + ";")
    preds = root / "*" / "*" / "predictions" / "*.parquet" / "*.parquet"
    lines.append("CREATE OR REPLACE VIEW predictions AS " + with_generation(
        f"read_parquet({_quote(preds)}, hive_partitioning = false, union_by_name = true)")
        + ";")
    for view, table in LEDGER_VIEWS.items():
        lines.append(with_archive(config, view, table,
                                  f"read_parquet({_quote(snapshot / (table + '.parquet'))})"))
    return "\n".join(lines) + "\n"


def refresh(config: Config) -> Path:
    """Snapshot the ledger and write views.sql; returns its path."""
    snapshot_ledger(config)
    path = config.state_dir / "sql" / "views.sql"
    path.write_text(views_sql(config))
    return path


READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")  # DuckDB's StatementType names
NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                 "allow_community_extensions": False}


def named_views(query: str) -> list[str]:
    """The ledger views ``query`` names: every identifier DuckDB's tokenizer finds in it
    (a CTE or column of the same name, too: reading a table for nothing costs time, never
    a wrong answer)."""
    tokens = duckdb.tokenize(query)
    ends = [pos for pos, _ in tokens[1:]] + [len(query)]
    names = {re.sub(r"[\s\"]", "", part).lower()
             for (pos, kind), end in zip(tokens, ends, strict=True)
             if kind == duckdb.token_type.identifier
             for part in query[pos:end].split(".")}
    return [view for view in LEDGER_VIEWS if view in names]


def connect(config: Config, views: Iterable[str] | None = None
            ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the views of one ``baton sql`` query, locked down (see the
    module's docstring); writes no file. ``views``: the ledger views to read (all when
    None; :func:`named_views` gives a query's)."""
    ledger = open_ledger(config.ledger_url, read_only=True)  # refuses a missing one
    con = duckdb.connect(config=NO_EXTENSIONS)  # type: ignore[arg-type]
    archive = config.state_dir / "archive"
    # the ledger stays open while the connection scans it (closed when both are collected)
    for view in LEDGER_VIEWS if views is None else views:
        table = LEDGER_VIEWS[view]
        con.register(f"ledger_{table}", LedgerTable(ledger, table))
        con.execute(with_archive(config, view, table, f"ledger_{table}"))
    evaluation = config.drive.evaluation
    files = {"metrics": f"*/metrics/{METRIC_FILES}",
             "predictions": "*/predictions/*.parquet/*.parquet"}
    for view, hive, empty in (("metrics", "true", _empty_metrics()),
                              ("predictions", "false", PREDICTION_SCHEMA.empty_table())):
        if next(evaluation.glob(files[view]), None) is None:  # DuckDB refuses an empty glob
            con.from_arrow(empty).create(view)
        else:
            con.execute(f"CREATE VIEW {view} AS " + with_generation(
                f"read_parquet({_quote(evaluation / files[view])}, hive_partitioning = {hive}, "
                "union_by_name = true)"))
    con.execute(LATEST_METRICS)
    con.execute("CREATE MACRO experiment_metrics(name) AS TABLE " + with_generation(
        f"read_parquet({_quote(str(evaluation) + '/')} || name || "
        f"{_quote('/metrics/' + METRIC_FILES)}, hive_partitioning = true, "
        "union_by_name = true)"))
    readable = {str(evaluation) + os.sep, str(evaluation.resolve()) + os.sep}
    if archive.is_dir():
        readable |= {str(archive) + os.sep, str(archive.resolve()) + os.sep}
    con.execute(f"SET allowed_directories = [{', '.join(map(_quote, sorted(readable)))}]")
    con.execute("SET temp_directory = ''")  # spill nowhere: a query writes no file
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _empty_metrics() -> pa.Table:
    """The metrics view's columns (the file's and the ``metric`` partition), no rows."""
    return WRITTEN_METRIC_SCHEMA.append(pa.field("metric", pa.string())).empty_table()


def refuse_writes(query: str) -> None:
    """:class:`BatonError` naming the first statement of ``query`` that DuckDB's parser does
    not call a query; checked before anything is snapshotted, so a refused statement
    changes nothing. A DuckDB error (a parse error) propagates."""
    with duckdb.connect(config=NO_EXTENSIONS) as parser:  # type: ignore[arg-type]
        statements = parser.extract_statements(query)
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise BatonError(f"baton sql is read-only and runs queries only (SELECT, "
                             f"EXPLAIN): {' '.join(statement.query.split())[:80]!r} is "
                             f"{kind}; save results with --format csv or json and a shell "
                             "redirect")


def read_only_sql(con: duckdb.DuckDBPyConnection, query: str
                  ) -> duckdb.DuckDBPyRelation | None:
    """``con.sql(query)`` once :func:`refuse_writes` lets it through."""
    refuse_writes(query)
    return con.sql(query)
