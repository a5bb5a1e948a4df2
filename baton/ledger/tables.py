"""Whole tables of the ledger, for ``baton sql``: rows with their JSON columns as text,
streamed in batches (a reader holds one batch, not the table), and each column's kind, so
that even an empty table has typed columns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, select

from baton.ledger.base import LedgerBase
from baton.ledger.engine import STREAM_ROWS
from baton.ledger.schema import UTCDateTime, metadata

ColumnKind = Literal["timestamp", "integer", "float", "boolean", "text"]


def column_kind(sql_type: object) -> ColumnKind:
    if isinstance(sql_type, UTCDateTime | DateTime):
        return "timestamp"
    if isinstance(sql_type, Integer | BigInteger):
        return "integer"
    if isinstance(sql_type, Float):
        return "float"
    if isinstance(sql_type, Boolean):
        return "boolean"
    return "text"  # text, and JSON as its text


def _plain(value: object) -> object:
    return json.dumps(value) if isinstance(value, dict | list) else value


class Tables(LedgerBase):
    def table_columns(self, table: str) -> list[tuple[str, ColumnKind]]:
        return [(c.name, column_kind(c.type)) for c in metadata.tables[table].columns]

    def table_batches(self, table: str, size: int = STREAM_ROWS
                      ) -> Iterator[dict[str, list[Any]]]:
        """Every row of ``table`` in batches of ``size`` rows, each column by column (JSON
        values as text), as they stream from the database."""
        t = metadata.tables[table]
        as_text = {c.name for c in t.columns if isinstance(c.type, JSON)}
        with self.read() as conn:
            result = conn.execution_options(yield_per=size).execute(select(t))
            for rows in result.partitions():
                columns = zip(*rows, strict=True)  # column by column, in the table's order
                yield {c.name: [_plain(v) for v in values] if c.name in as_text
                       else list(values)
                       for c, values in zip(t.columns, columns, strict=True)}
