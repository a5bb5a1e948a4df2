"""The metrics Parquet of the spec: ``evaluation/{experiment}/metrics/dataset=*/metric=*/``.

Each file holds these columns; ``metric`` comes from the folder (hive partitioning)."""

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


def schema_problems(schema: pa.Schema, expected: pa.Schema = METRIC_SCHEMA) -> list[str]:
    """What differs from ``expected``: missing columns, wrong types, extra columns."""
    problems = []
    for f in expected:
        if f.name not in schema.names:
            problems.append(f"missing column {f.name!r}")
        elif not schema.field(f.name).type.equals(f.type):
            problems.append(f"column {f.name!r} is {schema.field(f.name).type}, "
                            f"expected {f.type}")
    extra = set(schema.names) - set(expected.names)
    problems += [f"unexpected column {name!r}" for name in sorted(extra)]
    return problems
