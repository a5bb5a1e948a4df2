"""The published JSON Schema (docs/user/schema/) is what the models generate, and the
schema and the reader agree on a table of valid and invalid signals; the one thing the
schema cannot say (a near miss of a known field) the reader refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baton.errors import SignalError
from baton.signal_schema import main, schema_files, signal_schema
from baton.signals import SIGNAL_TYPES, parse_signal
from tests.conftest import require

try:
    import jsonschema
    from jsonschema import Draft202012Validator
except ImportError:  # pragma: no cover - the test extras hold it
    jsonschema = None  # type: ignore[assignment]

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "user" / "schema"
T = "2026-11-21T10:00:00Z"
TRAIN = {"timestamp": T, "experiment": "exp1", "checkpoint_path": "/d/models/exp1/final",
         "hostname": "gpu01", "user": "alice"}
EVAL = {"timestamp": T, "experiment": "exp1", "job_id": "123", "status": "complete"}
FAILED = {**EVAL, "status": "failed", "error_message": "out of memory"}
ANALYSIS = {"timestamp": T, "experiment": "exp1", "job_id": "123_4", "status": "complete"}

# (kind, document, valid?)
TABLE: list[tuple[str, dict[str, Any], bool]] = [
    ("training_complete", TRAIN, True),
    ("training_complete", {**TRAIN, "num_epochs": 10, "final_loss": 2.34, "total_steps": 5,
                           "git_commit": "v1.2-3-ga94429c-dirty", "campaign": "c1",
                           "checkpoints": ["/d/models/exp1/step-100"]}, True),
    ("training_complete", {**TRAIN, "lab_field": {"any": ["json", 1]}}, True),
    ("training_complete", {**TRAIN, "timestamp": "2026-11-21T11:00:00+01:00"}, True),
    ("training_complete", {**TRAIN, "final_loss": 2}, True),
    ("training_complete", {**TRAIN, "config_path": None}, True),
    ("training_complete", {**TRAIN, "schema_version": 1}, True),
    ("training_complete", {k: v for k, v in TRAIN.items() if k != "user"}, False),
    ("training_complete", {**TRAIN, "timestamp": "2026-11-21T10:00:00"}, False),
    ("training_complete", {**TRAIN, "timestamp": "yesterday"}, False),
    ("training_complete", {**TRAIN, "timestamp": 1700000000}, False),
    ("training_complete", {**TRAIN, "experiment": "bad name"}, False),
    ("training_complete", {**TRAIN, "experiment": "-dash"}, False),
    ("training_complete", {**TRAIN, "checkpoint_path": "relative/path"}, False),
    ("training_complete", {**TRAIN, "hostname": ""}, False),
    ("training_complete", {**TRAIN, "hostname": "gpu\n01"}, False),
    ("training_complete", {**TRAIN, "num_epochs": "10"}, False),
    ("training_complete", {**TRAIN, "num_epochs": -1}, False),
    ("training_complete", {**TRAIN, "num_epochs": 1.5}, False),
    ("training_complete", {**TRAIN, "total_steps": True}, False),
    ("training_complete", {**TRAIN, "final_loss": "low"}, False),
    ("training_complete", {**TRAIN, "git_commit": "not-a-sha"}, False),
    ("training_complete", {**TRAIN, "git_commit": "a" * 65}, False),
    ("training_complete", {**TRAIN, "schema_version": 2}, False),
    ("training_complete", {**TRAIN, "mlflow_run_id": "has space"}, False),
    ("training_complete", {**TRAIN, "checkpoints": "/d/one"}, False),
    ("eval_complete", EVAL, True),
    ("eval_complete", {**EVAL, "job_id": 123}, True),
    ("eval_complete", {**EVAL, "metrics_summary": {"acc": 0.9, "squad": {"f1": 0.8}},
                       "datasets_evaluated": ["squad"], "eval_duration_seconds": 3.5}, True),
    ("eval_complete", {**EVAL, "job_id": -1}, False),
    ("eval_complete", {**EVAL, "job_id": "12a"}, False),
    ("eval_complete", {**EVAL, "job_id": True}, False),
    ("eval_complete", {**EVAL, "status": "done"}, False),
    ("eval_complete", {**EVAL, "metrics_summary": {"squad": {"f1": {"deep": 1}}}}, False),
    ("eval_complete", {**EVAL, "metrics_summary": {"acc": "high"}}, False),
    ("eval_complete", {**EVAL, "metrics_summary": {"": 1.0}}, False),
    ("eval_complete", {**EVAL, "eval_duration_seconds": -1}, False),
    ("eval_complete", {**EVAL, "datasets_evaluated": ["a b"]}, False),
    ("eval_failed", FAILED, True),
    ("eval_failed", {**FAILED, "failures": [{"error": "oom", "dataset": "squad"}]}, True),
    ("eval_failed", {**FAILED, "failures": [{"error": "oom", "node": {"name": "gpu07"}}]},
     True),
    ("eval_failed", {**FAILED, "status": "complete"}, False),
    ("eval_failed", {k: v for k, v in FAILED.items() if k != "error_message"}, False),
    ("eval_failed", {**FAILED, "failures": [{"dataset": "squad"}]}, False),
    ("eval_failed", {**FAILED, "failures": [{"error": "x", "checkpoint": "rel"}]}, False),
    ("analysis_complete", ANALYSIS, True),
    ("analysis_complete", {**ANALYSIS, "report_path": "/d/r.html", "outputs": ["/d/a.csv"],
                           "analysis_duration_seconds": 0}, True),
    ("analysis_complete", {**ANALYSIS, "outputs": ["a.csv"]}, False),
    ("analysis_complete", {**ANALYSIS, "status": "ok"}, False),
]

# the reader refuses these, the schema cannot: its description says so
NEAR_MISSES = [("training_complete", {**TRAIN, "final_los": 1.0}),
               ("eval_complete", {**EVAL, "metrics_sumary": {"a": 1.0}}),
               ("eval_failed", {**FAILED, "failures": [{"error": "x", "datset": "squad"}]}),
               ("analysis_complete", {**ANALYSIS, "report_pth": "/d/r.html"})]


def reader_accepts(kind: str, doc: dict[str, Any]) -> bool:
    try:
        parse_signal(Path(f"x/{kind}"), json.dumps(doc).encode(), SIGNAL_TYPES[kind])
    except SignalError:
        return False
    return True


def schema_accepts(kind: str, doc: dict[str, Any]) -> bool:
    require(jsonschema is not None, "jsonschema is not installed (pip install -e .[test])")
    schema = json.loads((PUBLISHED / f"{kind}.schema.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return validator.is_valid(doc)


def test_the_date_time_format_is_checked() -> None:
    # without rfc3339-validator jsonschema skips "date-time" and naive timestamps pass
    require(jsonschema is not None, "jsonschema is not installed (pip install -e .[test])")
    assert not Draft202012Validator.FORMAT_CHECKER.conforms("2026-11-21T10:00:00", "date-time")


@pytest.mark.parametrize(("kind", "doc", "valid"), TABLE)
def test_schema_and_reader_agree(kind: str, doc: dict[str, Any], valid: bool) -> None:
    assert reader_accepts(kind, doc) is valid
    assert schema_accepts(kind, doc) is valid


@pytest.mark.parametrize(("kind", "doc"), NEAR_MISSES)
def test_near_misses_are_the_readers_own(kind: str, doc: dict[str, Any]) -> None:
    assert not reader_accepts(kind, doc)
    assert schema_accepts(kind, doc)
    assert "near miss" in signal_schema(SIGNAL_TYPES[kind])["description"]


def test_every_kind_has_a_row_each_way() -> None:
    for kind in SIGNAL_TYPES:
        assert {v for k, _, v in TABLE if k == kind} == {True, False}, kind


def test_published_schema_is_what_the_models_generate() -> None:
    published = {p.name: p.read_text(encoding="utf-8") for p in PUBLISHED.glob("*.json")}
    assert published == schema_files(), \
        "docs/user/schema/ is stale: run python -m baton.signal_schema docs/user/schema"


def test_the_generator_creates_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "missing").exists()
    assert "not a folder" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(schema_files())
