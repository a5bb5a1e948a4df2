"""The metrics Parquet of the spec: ``evaluation/{experiment}/metrics/dataset=*/metric=*/``.

Each file holds these columns; ``metric`` comes from the folder (hive partitioning). baton's
writer adds ``generation``, the experiment's training generation the rows evaluate (a
retrain is a new one); a file without it (written before generations, or by a lab's own
script) holds generation 1."""

from __future__ import annotations

import pyarrow as pa

METRIC_SCHEMA = pa.schema([
    ("experiment", pa.string()),
    ("checkpoint", pa.string()),
    ("dataset", pa.string()),
    ("item_group", pa.string()),
    ("form", pa.string()),
    ("value", pa.float64()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
])


GENERATION = pa.field("generation", pa.int64())
# what baton's writer writes: the spec's columns and the generation
WRITTEN_METRIC_SCHEMA = METRIC_SCHEMA.append(GENERATION)
# columns a file may lack: a reader takes a file without a generation as the first
OPTIONAL_COLUMNS: dict[str, pa.Field] = {GENERATION.name: GENERATION}
FIRST_GENERATION = 1


def with_generation(source: str) -> str:
    """DuckDB SQL: a query over ``source`` (a ``read_parquet``) whose every row has its
    generation: a file without the column (NULL beside newer files, and no column at all
    when no file has one) holds the first."""
    return (f"SELECT * REPLACE (coalesce(generation, {FIRST_GENERATION}) AS generation) "
            f"FROM ((SELECT * FROM {source}) UNION ALL BY NAME "
            "(SELECT CAST(NULL AS BIGINT) AS generation WHERE false))")


def schema_problems(schema: pa.Schema, expected: pa.Schema = METRIC_SCHEMA) -> list[str]:
    """What differs from ``expected``: missing columns, wrong types, extra columns. An
    optional column (``generation``) may be missing, but not of another type."""
    problems = []
    expected_names = set(expected.names)
    for name, f in OPTIONAL_COLUMNS.items():
        if name not in expected_names:
            expected = expected.append(f)
    for f in expected:
        if f.name not in schema.names:
            if f.name not in OPTIONAL_COLUMNS:
                problems.append(f"missing column {f.name!r}")
        elif not schema.field(f.name).type.equals(f.type):
            problems.append(f"column {f.name!r} is {schema.field(f.name).type}, "
                            f"expected {f.type}")
    extra = set(schema.names) - set(expected.names)
    problems += [f"unexpected column {name!r}" for name in sorted(extra)]
    return problems
