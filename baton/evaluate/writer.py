"""Streaming metric rows to Parquet in the spec's layout, a batch at a time.

Each (dataset, metric) of one checkpoint goes to its own file
``metrics/dataset={d}/metric={m}/part-{checkpoint}-{job}.parquet`` (a new checkpoint
adds files, never rewrites old ones); predictions go to ``predictions/{d}.parquet/``.
A retrained experiment's generation N > 1 names its files ``part-{checkpoint}-{job}-gN``
and every row carries its ``generation``: a retrain never replaces an earlier
generation's files, even for a checkpoint of the same name.
Files are written under a temporary name and renamed when the dataset is done, so a
failed dataset leaves nothing half-written behind. Evaluating a checkpoint again within a
generation (a resubmission: another job id) replaces that checkpoint's earlier file of
that generation instead of adding a second copy of its rows."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from baton.errors import BatonError
from baton.evaluate.metric_schema import (
    FIRST_GENERATION,
    GENERATION,
    WRITTEN_METRIC_SCHEMA,
    schema_problems,
)
from baton.evaluate.protocol import Row
from baton.layout import ExperimentLayout, validate_name

PREDICTION_SCHEMA = pa.schema([
    ("experiment", pa.string()), ("checkpoint", pa.string()), ("dataset", pa.string()),
    ("item_group", pa.string()), ("form", pa.string()), ("metric", pa.string()),
    ("value", pa.float64()), ("detail", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
    GENERATION,
])
ROW_KEYS = frozenset(Row.__annotations__)  # metric, value, item_group, form, detail


def _tail(generation: int) -> str:
    """The file name's mark of a generation: none for the first (as before generations)."""
    return "" if generation == FIRST_GENERATION else f"-g{generation}"


def part_name(checkpoint: str, job: str, generation: int = FIRST_GENERATION) -> str:
    return f"part-{checkpoint}-{job}{_tail(generation)}.parquet"


def same_checkpoint(checkpoint: str, generation: int = FIRST_GENERATION) -> re.Pattern[str]:
    """Files of ``checkpoint`` and ``generation`` written by any job. Job ids (``123``,
    ``123_4``) have no ``-`` and never look like ``g2``, so checkpoint ``a`` never matches
    the files of checkpoint ``a-7``, nor generation 1 those of generation 2."""
    job = r"(?!g\d+\.parquet$)[^-]+"
    return re.compile(rf"part-{re.escape(checkpoint)}-{job}{_tail(generation)}\.parquet")


def install(tmp: Path, final: Path, checkpoint: str,
            generation: int = FIRST_GENERATION) -> None:
    """Move ``tmp`` to ``final``, replacing the checkpoint's files of the same generation
    from other jobs so that a reader listing the folder sees the old rows or the new ones,
    never neither and never both: the new file is renamed over an old one, which then
    takes its name. Other generations' files stay."""
    pattern = same_checkpoint(checkpoint, generation)
    old = sorted(p for p in final.parent.iterdir() if pattern.fullmatch(p.name) and p != final)
    if not old:
        os.replace(tmp, final)
        return
    os.replace(tmp, old[0])
    os.replace(old[0], final)
    for extra in old[1:]:
        extra.unlink(missing_ok=True)


def clean_partial(exp: ExperimentLayout, checkpoint: str, dataset: str, job: str,
                  generation: int = FIRST_GENERATION) -> list[Path]:
    """Remove the temporary files a dataset's writer left (its process died); returns them."""
    tmp_name = f".{part_name(checkpoint, job, generation)}.tmp"
    found = [*exp.metrics_dir.glob(f"dataset={dataset}/metric=*/{tmp_name}"),
             *exp.predictions_dir.glob(f"{dataset}.parquet/{tmp_name}")]
    for tmp in found:
        tmp.unlink(missing_ok=True)
        _remove_empty(tmp)
    return found


def _remove_empty(tmp: Path) -> None:
    for folder in (tmp.parent, tmp.parent.parent):
        try:
            folder.rmdir()
        except OSError:
            break  # not empty: other checkpoints' files live there


@dataclass
class DatasetResult:
    dataset: str
    rows: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def means(self) -> dict[str, float]:
        return {m: self.sums[m] / self.counts[m] for m in self.sums if self.counts[m]}


class DatasetWriter:
    """Writes one dataset's rows for one checkpoint; ``commit`` or ``abort`` at the end."""

    def __init__(self, exp: ExperimentLayout, checkpoint: str, dataset: str, job: str,
                 batch_rows: int = 5000, generation: int = FIRST_GENERATION) -> None:
        self.exp, self.checkpoint, self.job = exp, checkpoint, job
        self.generation = generation
        self.dataset = validate_name(dataset, "dataset name")
        self.batch_rows = batch_rows
        self.buffers: dict[str, list[Row]] = {}
        self.names: set[str] = set()  # metric names already validated
        self.writers: dict[str, tuple[pq.ParquetWriter, Path, Path]] = {}
        self.predictions: list[Row] = []
        self.result = DatasetResult(dataset)
        self.stamp = datetime.now(UTC)

    def _target(self, metric: str) -> Path:
        folder = self.exp.metrics_dir / f"dataset={self.dataset}" / f"metric={metric}"
        return folder / part_name(self.checkpoint, self.job, self.generation)

    def add(self, row: Row) -> None:
        if not isinstance(row, dict):
            raise BatonError(f"dataset {self.dataset}: a row must be a dict, got "
                             f"{type(row).__name__}")
        if not ROW_KEYS.issuperset(row):
            unknown = sorted(set(row) - ROW_KEYS, key=str)
            raise BatonError(f"dataset {self.dataset}: row has unknown key(s) "
                             f"{', '.join(repr(k) for k in unknown)} (a row has "
                             f"{', '.join(sorted(ROW_KEYS))})")
        metric = row.get("metric")
        if type(metric) is not str or metric not in self.names:  # each name checked once
            metric = validate_name(metric, "metric name")
            self.names.add(metric)
        value = row.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool) or \
                not math.isfinite(float(value)):
            raise BatonError(f"dataset {self.dataset}: metric {metric} has value {value!r}, "
                             "not a finite number")
        buf = self.buffers.setdefault(metric, [])
        buf.append(row)
        self.result.rows += 1
        self.result.sums[metric] = self.result.sums.get(metric, 0.0) + float(value)
        self.result.counts[metric] = self.result.counts.get(metric, 0) + 1
        if "detail" in row:
            self.predictions.append(row)
        if len(buf) >= self.batch_rows:
            self._flush(metric)
        if len(self.predictions) >= self.batch_rows:
            self._flush_predictions()

    def add_all(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.add(row)

    def _columns(self, rows: list[Row]) -> dict[str, list]:
        """The columns metrics and predictions share (schemas pick and order them)."""
        n = len(rows)
        return {
            "experiment": [self.exp.name] * n, "checkpoint": [self.checkpoint] * n,
            "dataset": [self.dataset] * n,
            "item_group": [str(r.get("item_group", "")) for r in rows],
            "form": [str(r.get("form", "")) for r in rows],
            "metric": [r["metric"] for r in rows],
            "value": [float(r["value"]) for r in rows], "timestamp": [self.stamp] * n,
            "generation": [self.generation] * n,
        }

    def _flush(self, metric: str) -> None:
        rows = self.buffers.get(metric) or []
        if not rows:
            return
        cols = self._columns(rows)
        schema = WRITTEN_METRIC_SCHEMA
        table = pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
        self._writer(metric, self._target(metric), schema).write_table(table)
        self.buffers[metric] = []

    def _writer(self, key: str, final: Path, schema: pa.Schema) -> pq.ParquetWriter:
        """The open writer for ``key``, writing to a temp name beside ``final``."""
        if key not in self.writers:
            self._check_neighbours(final.parent, schema)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.tmp")
            self.writers[key] = (pq.ParquetWriter(tmp, schema), tmp, final)
        return self.writers[key][0]

    def _check_neighbours(self, folder: Path, schema: pa.Schema) -> None:
        """Refuse to add a file the partition's other files would not read together with:
        one table with two schemas breaks every query over the folder."""
        mine = same_checkpoint(self.checkpoint, self.generation)
        for other in sorted(folder.glob("*.parquet")):
            if mine.fullmatch(other.name):
                continue  # replaced by this run's file at commit
            try:
                problems = schema_problems(pq.read_schema(other), schema)
            except (OSError, pa.ArrowException) as exc:
                problems = [f"unreadable ({exc})"]
            if problems:
                raise BatonError(
                    f"dataset {self.dataset}: not appending to {folder}: the existing "
                    f"{other.name} has another schema ({'; '.join(problems)}); move it away "
                    "or rewrite it with the current schema")

    def _flush_predictions(self) -> None:
        if not self.predictions:
            return
        rows = self.predictions
        cols = self._columns(rows)
        cols["detail"] = [json.dumps(r.get("detail"), default=str) for r in rows]
        table = pa.table({f.name: cols[f.name] for f in PREDICTION_SCHEMA},
                         schema=PREDICTION_SCHEMA)
        final = (self.exp.predictions_dir / f"{self.dataset}.parquet" /
                 part_name(self.checkpoint, self.job, self.generation))
        self._writer("__predictions__", final, PREDICTION_SCHEMA).write_table(table)
        self.predictions = []

    def commit(self) -> DatasetResult:
        for metric in list(self.buffers):
            self._flush(metric)
        self._flush_predictions()
        for writer, tmp, final in self.writers.values():
            writer.close()
            install(tmp, final, self.checkpoint, self.generation)
            self.result.files.append(str(final))
        return self.result

    def abort(self) -> None:
        """Drop this dataset's unfinished files (and the folders they alone made)."""
        for writer, tmp, _ in self.writers.values():
            try:
                writer.close()
            finally:
                tmp.unlink(missing_ok=True)
                _remove_empty(tmp)
