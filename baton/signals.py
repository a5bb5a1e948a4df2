"""Signal files: the contract between training nodes, compute nodes and the orchestrator.

Writers use :func:`write_signal` (temp file, fsync, rename: a reader never sees half a
signal). Readers use :func:`read_signal`, which trusts nothing: size, encoding, JSON,
fields, types, status and every path it points to are checked, and a bad signal raises
:class:`SignalError` naming the file and the problem.

Other people's scripts write signals too, so what an ordinary writer emits is accepted:
fields of the lab's own are kept with the signal (:meth:`Signal.extra_fields`) unless
their name is a near miss of a known one (a typo, refused with the field it meant), a
UTF-8 byte-order mark, ``git describe --dirty`` output, per-dataset ``metrics_summary``.
The contract is published as JSON Schema generated from these models
(:mod:`baton.signal_schema`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from baton.errors import BatonError, SignalError
from baton.fsio import atomic_write
from baton.layout import (
    ANALYSIS_SIGNAL,
    EVAL_COMPLETE_SIGNAL,
    EVAL_FAILED_SIGNAL,
    NAME_RE,
    TRAINING_SIGNAL,
    DriveLayout,
    validate_name,
)

MAX_SIGNAL_BYTES = 1024 * 1024
SCHEMA_VERSION = 1
OUTSIDE_SLURM = "0"  # the job id a run outside Slurm (by hand) signs its signals with
UTF8_BOM = b"\xef\xbb\xbf"
# an unknown field this close to a known one is a typo, not a lab's own field
NEAR_MISS_CUTOFF = 0.85
# a commit as git prints it: a hash (`git rev-parse`, `git describe --always`) or
# `git describe` output (TAG-N-gHASH), either with `-dirty` (`--dirty`)
GIT_COMMIT_PATTERN = (r"^(?:[0-9a-fA-F]{4,64}"
                      r"|[A-Za-z0-9][A-Za-z0-9._/+-]*-[0-9]+-g[0-9a-fA-F]{4,64})(?:-dirty)?$")


def _check_name(value: str) -> str:
    return validate_name(value, "name")


def _check_text(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise ValueError("must not contain control characters")
    return value


def _check_finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _job_id(value: Any) -> Any:
    # Slurm prints ids as text; a bash writer may well emit a JSON number.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# the patterns of the checks done in code, for the JSON Schema (the code's message is clearer)
Name = Annotated[str, AfterValidator(_check_name),
                 Field(json_schema_extra={"pattern": NAME_RE.pattern})]
NO_CONTROL = r"^[^\x00-\x08\x0a-\x1f]*$"
Text = Annotated[str, Field(min_length=1, max_length=4096, json_schema_extra={
    "pattern": NO_CONTROL}), AfterValidator(_check_text)]
LongText = Annotated[str, Field(max_length=65536)]
AbsPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^/"),
                    AfterValidator(_check_text),
                    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 4096,
                                    "allOf": [{"pattern": "^/"}, {"pattern": NO_CONTROL}]})]
Finite = Annotated[float, AfterValidator(_check_finite)]
NonNegative = Annotated[float, Field(ge=0), AfterValidator(_check_finite)]
Count = Annotated[int, Field(ge=0)]
JobId = Annotated[str, BeforeValidator(_job_id), Field(pattern=r"^\d+(_\d+)?$"),
                  WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^\d+(_\d+)?$"},
                                            {"type": "integer", "minimum": 0}]})]
RunId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
GitCommit = Annotated[str, Field(max_length=64, pattern=GIT_COMMIT_PATTERN)]
MetricName = Annotated[str, Field(min_length=1, max_length=128)]
# {metric: value} or, per dataset, {dataset: {metric: value}} (or both at once)
MetricsSummary = dict[MetricName, Finite | dict[MetricName, Finite]]


def near_misses(signal_type: type[BaseModel], doc: dict[str, Any]) -> list[str]:
    """"unknown field 'x': did you mean 'y'?" for each field of ``doc`` that is not one of
    ``signal_type``'s but close to one; the others are fields of the lab's own."""
    by_lower = {k.lower(): k for k in signal_type.model_fields}
    problems = []
    for field in doc:
        if field in signal_type.model_fields:
            continue
        match = difflib.get_close_matches(field.lower(), list(by_lower), n=1,
                                          cutoff=NEAR_MISS_CUTOFF)
        if match:
            problems.append(f"unknown field '{field}': did you mean '{by_lower[match[0]]}'?")
    return problems


class Signal(BaseModel):
    """Fields every signal has."""

    # a lab's own fields are kept (extra_fields), a near miss of a known one refused
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    kind: ClassVar[str]
    filename: ClassVar[str]

    schema_version: Literal[1] = SCHEMA_VERSION
    timestamp: AwareDatetime
    experiment: Name
    campaign: Name | None = None
    # the campaign's type for the control plane (baton.yaml campaigns.types); absent: the
    # configured default type
    campaign_type: Name | None = None

    @model_validator(mode="after")
    def _refuse_near_misses(self) -> Signal:
        # `final_los` would otherwise be kept as a lab's field and final_loss silently lost
        # (after, not before: a before-validator would end strict JSON parsing of datetimes)
        if problems := near_misses(type(self), self.extra_fields()):
            raise PydanticCustomError("near_miss", "{problems}", {"problems": "; ".join(problems)})
        return self

    def extra_fields(self) -> dict[str, Any]:
        """The fields of the writer's own (not in the contract), as written."""
        return dict(self.model_extra or {})

    @classmethod
    def extra_fields_of(cls, doc: dict[str, Any] | None) -> dict[str, Any]:
        """The writer's own fields in a signal stored as JSON (the ledger's metadata)."""
        return {k: v for k, v in (doc or {}).items() if k not in cls.model_fields}

    def checkpoint_paths(self) -> list[str]:
        """Paths this signal points to that must stay on the shared drive."""
        return []


class TrainingComplete(Signal):
    kind: ClassVar[str] = "training_complete"
    filename: ClassVar[str] = TRAINING_SIGNAL

    checkpoint_path: AbsPath
    hostname: Text
    user: Text
    config_path: AbsPath | None = None
    num_epochs: Count | None = None
    final_loss: Finite | None = None
    total_steps: Count | None = None
    git_commit: GitCommit | None = None
    mlflow_run_id: RunId | None = None
    # intermediate checkpoints to evaluate as well (one array task each)
    checkpoints: list[AbsPath] | None = None

    def checkpoint_paths(self) -> list[str]:
        return [self.checkpoint_path, *(self.checkpoints or [])]


class EvalComplete(Signal):
    kind: ClassVar[str] = "eval_complete"
    filename: ClassVar[str] = EVAL_COMPLETE_SIGNAL

    job_id: JobId
    status: Literal["complete", "failed"]
    datasets_evaluated: list[Name] | None = None
    metrics_summary: MetricsSummary | None = None
    eval_duration_seconds: NonNegative | None = None
    error_message: LongText | None = None
    checkpoints_evaluated: list[AbsPath] | None = None
    mlflow_run_id: RunId | None = None

    def checkpoint_paths(self) -> list[str]:
        return list(self.checkpoints_evaluated or [])

    def metric_values(self) -> list[tuple[str | None, str, float]]:
        """(dataset or None, metric, value) of every number in ``metrics_summary``."""
        values: list[tuple[str | None, str, float]] = []
        for key, value in (self.metrics_summary or {}).items():
            if isinstance(value, dict):
                values += [(key, metric, v) for metric, v in value.items()]
            else:
                values.append((None, key, value))
        return values


class Failure(BaseModel):
    """One thing that failed in an evaluation (an entry of ``failures``). As in a signal, a
    lab's own fields are kept and a near miss of a known one is refused."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    error: LongText
    dataset: Name | None = None
    checkpoint: AbsPath | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_near_misses(cls, data: Any) -> Any:
        # before, so that a typo of the required `error` is named as such, not only as a
        # missing field (no datetime here whose strict JSON parsing a before-validator ends)
        if isinstance(data, dict) and (problems := near_misses(cls, data)):
            raise PydanticCustomError("near_miss", "{problems}", {"problems": "; ".join(problems)})
        return data

    def extra_fields(self) -> dict[str, Any]:
        """The fields of the writer's own (not in the contract), as written."""
        return dict(self.model_extra or {})


class EvalFailed(EvalComplete):
    kind: ClassVar[str] = "eval_failed"
    filename: ClassVar[str] = EVAL_FAILED_SIGNAL

    status: Literal["failed"]
    error_message: LongText
    failures: list[Failure] | None = None


class AnalysisComplete(Signal):
    kind: ClassVar[str] = "analysis_complete"
    filename: ClassVar[str] = ANALYSIS_SIGNAL

    job_id: JobId
    status: Literal["complete", "failed"]
    report_path: AbsPath | None = None
    manifest_path: AbsPath | None = None
    outputs: list[AbsPath] | None = None
    analysis_duration_seconds: NonNegative | None = None
    error_message: LongText | None = None
    mlflow_run_id: RunId | None = None

    def checkpoint_paths(self) -> list[str]:
        # not checkpoints, but they must stay on the drive just the same
        return [p for p in (self.report_path, self.manifest_path, *(self.outputs or [])) if p]


SIGNAL_TYPES: dict[str, type[Signal]] = {
    t.kind: t for t in (TrainingComplete, EvalComplete, EvalFailed, AnalysisComplete)
}
BY_FILENAME: dict[str, type[Signal]] = {t.filename: t for t in SIGNAL_TYPES.values()}


@dataclass(frozen=True)
class SignalFile:
    """A validated signal and the facts about the file it came from."""

    path: Path
    signal: Signal
    sha256: str
    size: int
    mtime: float

    @property
    def kind(self) -> str:
        return self.signal.kind

    @property
    def idempotency_key(self) -> str:
        """Same content at the same place -> same key, however often it is seen."""
        return f"{self.kind}:{self.signal.experiment}:{self.sha256[:24]}"


def kind_of(path: Path, kind: str | None = None) -> type[Signal]:
    """The signal type named by ``kind``, or else by the file's name."""
    if kind is not None:
        try:
            return SIGNAL_TYPES[kind.lstrip(".")]
        except KeyError:
            raise SignalError(path, f"unknown signal kind {kind!r}; expected one of "
                              f"{', '.join(SIGNAL_TYPES)}") from None
    try:
        return BY_FILENAME[path.name]
    except KeyError:
        raise SignalError(path, f"cannot tell the signal kind from the name {path.name!r}; "
                          f"name it one of {', '.join(BY_FILENAME)} or give the kind") from None


def _read_bounded(path: Path) -> tuple[bytes, os.stat_result]:
    """Read a regular file of at most MAX_SIGNAL_BYTES without following a symlink or
    blocking on a FIFO."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise SignalError(path, "file does not exist") from None
    except OSError as exc:
        raise SignalError(path, f"cannot stat: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SignalError(path, "is a symlink; a signal must be a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise SignalError(path, "is not a regular file")
    if st.st_size > MAX_SIGNAL_BYTES:
        raise SignalError(path, f"is {st.st_size} bytes; a signal may be at most "
                          f"{MAX_SIGNAL_BYTES} bytes (1 MiB)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise SignalError(path, f"cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_SIGNAL_BYTES + 1)
    if len(data) > MAX_SIGNAL_BYTES:
        raise SignalError(path, f"is over {MAX_SIGNAL_BYTES} bytes (1 MiB)")
    return data, st


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the field."""
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(document)"
        if err["type"] == "near_miss":  # inside the document: say where (failures.1)
            problems.append(f"{field}: {err['msg']}" if err["loc"] else err["msg"])
        elif err["type"] == "missing":
            problems.append(f"missing required field '{field}'")
        elif err["type"] == "extra_forbidden":
            problems.append(f"unknown field '{field}'")
        elif err["type"] == "literal_error" and field == "status":
            problems.append(f"unknown status {err['input']!r} ({err['msg']})")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"field '{field}': {msg} (got {_short(err.get('input'))})")
    return "; ".join(problems)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_signal(path: Path, data: bytes, signal_type: type[Signal]) -> Signal:
    """Pure part of reading: bytes -> a validated signal, or SignalError."""
    # Windows tools (and PowerShell's Out-File) start UTF-8 with a byte-order mark
    try:
        text = data.removeprefix(UTF8_BOM).decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise SignalError(path, f"is not valid UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_reject_duplicates,
                         parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SignalError(path, f"malformed JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    except ValueError as exc:
        raise SignalError(path, f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SignalError(path, f"must be a JSON object, got {type(doc).__name__}")
    # a typo of a required field is also a missing field: say both, the hint first
    problems = near_misses(signal_type, doc)
    try:
        signal = signal_type.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems.append(describe_validation_error(exc))
    if problems:
        raise SignalError(path, "; ".join(dict.fromkeys(problems)))
    return signal


def check_paths(path: Path, signal: Signal, drive: DriveLayout) -> None:
    """Every path the signal points to must resolve (symlinks included) inside the drive."""
    for target in signal.checkpoint_paths():
        try:
            drive.inside(target, "path")
        except BatonError as exc:
            raise SignalError(path, str(exc)) from None


def expected_experiment(path: Path, signal_type: type[Signal], drive: DriveLayout) -> str | None:
    """The experiment a signal must name when it sits in its canonical place on the drive."""
    parent = path.parent
    homes = {
        TrainingComplete: drive.models,
        EvalComplete: drive.evaluation,
        EvalFailed: drive.evaluation,
        AnalysisComplete: drive.analysis / "reports",
    }
    home = homes[signal_type]
    if path.name == signal_type.filename and parent.parent == home:
        return parent.name
    return None


def _check_folder(path: Path, signal_type: type[Signal], drive: DriveLayout) -> str | None:
    """The folder name the signal must match (if it sits in its canonical place), valid."""
    folder = expected_experiment(path, signal_type, drive)
    if folder is not None:
        try:
            validate_name(folder, "its folder name")
        except BatonError as exc:
            raise SignalError(path, str(exc)) from None
    return folder


def _check_placement(path: Path, signal: Signal, folder: str | None,
                     drive: DriveLayout) -> None:
    if folder is not None and folder != signal.experiment:
        raise SignalError(path, f"experiment {signal.experiment!r} does not match its "
                          f"folder {folder!r}")
    check_paths(path, signal, drive)


def checkpoint_problem(signal: Signal) -> str | None:
    """A training signal's checkpoints must exist, be non-empty and hold no partial files;
    otherwise there is nothing to evaluate."""
    if not isinstance(signal, TrainingComplete):
        return None
    for ckpt in signal.checkpoint_paths():
        path = Path(ckpt)
        if not path.exists():
            return f"checkpoint {ckpt} does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        if not files:
            return f"checkpoint {ckpt} is empty"
        for f in files:
            if f.name.endswith((".tmp", ".partial", ".incomplete")):
                return f"checkpoint {ckpt} holds a partial file {f.name}"
            if os.stat(f).st_size == 0:
                return f"checkpoint file {f} is empty"
    return None


def acceptance_problem(signal: Signal) -> str | None:
    """What the sensors check in a signal that read strictly (its checkpoints are there to
    evaluate): the reason they quarantine it, or None when they accept it. The sensors and
    the training hook both ask this, so a writer never announces what the orchestrator
    refuses."""
    return checkpoint_problem(signal)


def check_signal(path: Path | str, signal: Signal, drive: DriveLayout) -> None:
    """Raise SignalError unless the sensors would accept ``signal`` written at ``path``:
    its folder names its experiment, every path it names is on the drive, and
    :func:`acceptance_problem` finds nothing; and it is on the drive itself, where the
    sensors look. What a writer asks before it writes."""
    path = Path(path)
    try:
        drive.inside(path.parent, "its folder")
    except BatonError as exc:
        raise SignalError(path, str(exc)) from None
    _check_placement(path, signal, _check_folder(path, type(signal), drive), drive)
    if problem := acceptance_problem(signal):
        raise SignalError(path, problem)


def read_signal(path: Path | str, drive: DriveLayout | None = None,
                kind: str | None = None) -> SignalFile:
    """Read and validate one signal file. Raises SignalError naming the file and problem.
    With ``drive``, also its place: its folder names its experiment and every path it
    names is on the drive (what the sensors then ask of it: :func:`acceptance_problem`)."""
    path = Path(path)
    signal_type = kind_of(path, kind)
    folder = _check_folder(path, signal_type, drive) if drive is not None else None
    data, st = _read_bounded(path)
    signal = parse_signal(path, data, signal_type)
    if drive is not None:
        _check_placement(path, signal, folder, drive)
    return SignalFile(path=path, signal=signal, sha256=hashlib.sha256(data).hexdigest(),
                      size=len(data), mtime=st.st_mtime)


def encode_signal(signal: Signal | dict[str, Any]) -> bytes:
    """Pretty-printed UTF-8 JSON, as the spec asks; None fields are left out."""
    doc = signal.model_dump(mode="json", exclude_none=True) if isinstance(signal, Signal) \
        else signal
    data = (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
    if len(data) > MAX_SIGNAL_BYTES:
        raise BatonError(f"signal is {len(data)} bytes; at most {MAX_SIGNAL_BYTES} allowed")
    return data


def write_signal(path: Path | str, signal: Signal, **kwargs: Any) -> Path:
    """Validate (by round-trip) and atomically write a signal."""
    data = encode_signal(signal)
    parse_signal(Path(path), data, type(signal))
    return atomic_write(path, data, **kwargs)


def utcnow() -> datetime:
    return datetime.now(UTC)
