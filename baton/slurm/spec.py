"""What to ask Slurm for. Every value that reaches a script or a command line is
validated here, so a hostile name fails before anything is rendered or run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from baton.errors import InvalidName
from baton.slurm.parse import expand_array_spec
from baton.units import (
    parse_memory_mb,
    parse_memory_request_mb,
    parse_time_limit_seconds,
    parse_time_seconds,
)

_WORD = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ARRAY = re.compile(r"^\d+(-\d+)?(:\d+)?(,\d+(-\d+)?(:\d+)?)*(%\d+)?$")
_DEPENDENCY = re.compile(
    r"^(singleton|(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer)"
    r"(:\d+(_\d+)?(\+\d+)?)+)([,?](singleton|(after|afterany|afterok|afternotok|aftercorr)"
    r"(:\d+(_\d+)?(\+\d+)?)+))*$"
)
# a path Slurm can read from a directive without quoting: no whitespace, quotes or $
_PATH = re.compile(r"^[A-Za-z0-9_./%+@=,:-]{1,4096}$")
_PATTERN = re.compile(r"%(.)")
_PATTERNS_OK = set("jAaxuN%")


def _check(pattern: re.Pattern[str], value: str | None, what: str, hint: str) -> None:
    if value is not None and not pattern.fullmatch(value):
        raise InvalidName(f"{what} {value!r} is not allowed: {hint}")


def check_path(value: str | None, what: str) -> None:
    _check(_PATH, value, what, "use a path without spaces, quotes or shell characters")
    if value is not None:
        bad = {m.group(1) for m in _PATTERN.finditer(value)} - _PATTERNS_OK
        if bad:
            raise InvalidName(f"{what} {value!r} uses unsupported pattern(s) "
                              f"{', '.join('%' + b for b in sorted(bad))}; "
                              "use %j %A %a %x %u %N or %%")


@dataclass(frozen=True)
class JobSpec:
    """One submission: the script text plus the resources and options of sbatch."""

    name: str
    script: str
    time: str = "01:00:00"
    mem: str = "4G"
    cpus: int = 1
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gres: str | None = None
    array: str | None = None
    dependency: str | None = None
    output: str | None = None
    error: str | None = None
    workdir: str | None = None
    comment: str | None = None
    extra: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check(_JOB_NAME, self.name, "job name", "use A-Z a-z 0-9 . _ - (1-200 characters)")
        for what in ("partition", "account", "qos", "gres", "comment"):
            _check(_WORD, getattr(self, what), what, "use A-Z a-z 0-9 _ . : -")
        _check(_ARRAY, self.array, "array", "use e.g. 0-9, 1,3,5 or 0-99%10")
        _check(_DEPENDENCY, self.dependency, "dependency", "use e.g. afterok:123:124")
        for what in ("output", "error", "workdir"):
            check_path(getattr(self, what), what)
        if not isinstance(self.cpus, int) or isinstance(self.cpus, bool) or self.cpus < 1:
            raise InvalidName(f"cpus {self.cpus!r} must be a positive integer")
        try:  # as sbatch reads them; 0 would mean no time limit, or a whole node's memory
            parse_time_limit_seconds(self.time)
            parse_memory_request_mb(self.mem)
        except ValueError as exc:
            raise InvalidName(str(exc)) from None
        if not self.script.startswith("#!"):
            raise InvalidName("script must start with a #! line (sbatch requires it)")
        if self.array is not None and len(self.array_tasks) > 100_000:
            raise InvalidName(f"array {self.array!r} has over 100000 tasks")

    @property
    def time_seconds(self) -> int:
        return parse_time_seconds(self.time)

    @property
    def mem_mb(self) -> float:
        return parse_memory_mb(self.mem)

    @property
    def array_tasks(self) -> list[int]:
        return expand_array_spec(self.array) if self.array else []

    @property
    def array_throttle(self) -> int | None:
        if self.array and "%" in self.array:
            return int(self.array.rsplit("%", 1)[1])
        return None

    def with_(self, **changes: object) -> JobSpec:
        return replace(self, **changes)  # type: ignore[arg-type]

    def sbatch_options(self) -> list[str]:
        """``--key=value`` options, in the order of the spec's templates."""
        opts = [f"--job-name={self.name}"]
        for flag, value in (("output", self.output), ("error", self.error),
                            ("time", self.time), ("mem", self.mem)):
            if value is not None:
                opts.append(f"--{flag}={value}")
        opts.append(f"--cpus-per-task={self.cpus}")
        for flag, value in (("partition", self.partition), ("account", self.account),
                            ("qos", self.qos), ("gres", self.gres), ("array", self.array),
                            ("dependency", self.dependency), ("chdir", self.workdir),
                            ("comment", self.comment)):
            if value is not None:
                opts.append(f"--{flag}={value}")
        return opts + list(self.extra)


_DIRECTIVE = re.compile(r"^#SBATCH\s+(--?[A-Za-z-]+)(?:[= ]\s*(\S+))?")
_SHORT = {"-J": "job-name", "-t": "time", "-o": "output", "-e": "error", "-c": "cpus-per-task",
          "-p": "partition", "-A": "account", "-q": "qos", "-a": "array", "-d": "dependency",
          "-D": "chdir"}
_FIELD = {"job-name": "name", "time": "time", "mem": "mem", "cpus-per-task": "cpus",
          "partition": "partition", "account": "account", "qos": "qos", "gres": "gres",
          "array": "array", "dependency": "dependency", "output": "output",
          "error": "error", "chdir": "workdir", "comment": "comment"}


def spec_from_script(script: str, default_name: str = "job", **overrides: object) -> JobSpec:
    """Build a JobSpec from a script's ``#SBATCH`` lines (as sbatch reads them: up to the
    first command), then apply ``overrides``."""
    values: dict[str, object] = {"name": default_name}
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#SBATCH")):
            continue
        m = _DIRECTIVE.match(stripped)
        if not m:
            if stripped.startswith("#SBATCH"):
                raise InvalidName(f"cannot read directive {stripped!r}")
            break
        flag, value = m.group(1), (m.group(2) or "").strip("'\"")
        key = _SHORT.get(flag) or flag.lstrip("-")
        if key in _FIELD:
            values[_FIELD[key]] = int(value) if key == "cpus-per-task" else value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return JobSpec(script=script, **values)  # type: ignore[arg-type]
