"""Whole tables of the ledger, for ``baton sql``'s Parquet snapshot: rows with their JSON
columns as text, and each column's kind, so that even an empty table has typed columns."""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, select

from baton.ledger.base import LedgerBase
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

    def table_data(self, table: str) -> dict[str, list[Any]]:
        """Every row of ``table``, column by column (JSON values as text)."""
        t = metadata.tables[table]
        with self.read() as conn:
            rows = conn.execute(select(t)).mappings().all()
        return {c.name: [_plain(r[c.name]) for r in rows] for c in t.columns}
