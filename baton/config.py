"""One typed configuration from ``baton.yaml`` plus environment variables.

Precedence: built-in defaults < ``baton.yaml`` < environment variables. String values
may use ``${VAR}`` or ``${VAR:-default}``. A bad config fails at start with the file,
the key and the reason (:class:`ConfigError`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from baton.errors import ConfigError, InvalidName
from baton.layout import DriveLayout, validate_name
from baton.units import (
    parse_memory_mb,
    parse_memory_request_mb,
    parse_time_limit_seconds,
    parse_time_seconds,
)

# Environment variables that override a key, as the spec's Appendix A names them.
ENV_KEYS: dict[str, tuple[str, ...]] = {
    "SHARED_DRIVE": ("shared_drive",),
    "BATON_STATE_DIR": ("state_dir",),
    "BATON_DATABASE_URL": ("database_url",),
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
    "BATON_SLURM_BACKEND": ("slurm", "backend"),
    "SLURM_ACCOUNT": ("slurm", "account"),
    "BATON_SLURM_PARTITION": ("slurm", "partition"),
    "BATON_LOG_LEVEL": ("logging", "level"),
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def default_state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "baton"


def default_drive() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "baton" / "drive"


def _memory(value: str) -> str:
    parse_memory_request_mb(value)  # as sbatch takes it; never 0 (a whole node)
    return value


def _time(value: str) -> str:
    parse_time_limit_seconds(value)  # as sbatch takes it; never 0 (no limit)
    return value


def _absolute(value: Path) -> Path:
    """A path relative to wherever a command was started differs from one command to the
    next: the drive's (signals, checkpoints and scripts carry it to other machines), and the
    state folder's (the ledger, the local backend's jobs)."""
    if not value.is_absolute():
        raise ValueError(f"{str(value)!r} is not an absolute path: a relative one would "
                         "follow the folder each command is started from (e.g. /mnt/shared)")
    return value


def _slurm_word(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", value):
        raise ValueError(f"{value!r} may only hold A-Z a-z 0-9 _ . : -")
    return value


def _type_name(value: str) -> str:
    return validate_name(value, "campaign type")


def _dataset(value: str) -> str:
    return validate_name(value, "dataset name")


Memory = Annotated[str, AfterValidator(_memory)]
Duration = Annotated[str, AfterValidator(_time)]
SlurmWord = Annotated[str | None, AfterValidator(_slurm_word)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SupervisionPolicy(Section):
    """What the supervisor does when a job of the stage fails or is late (README,
    "Supervision"). Resources grow by a factor up to a cap, for a bounded number of
    attempts; a plain failure is likely a bug and is not resubmitted unless asked."""

    enabled: bool = True
    max_attempts: int = Field(default=3, ge=1, le=20)  # the first submission counts
    mem_factor: float = Field(default=2.0, ge=1)
    mem_cap: Memory = "256G"
    time_factor: float = Field(default=2.0, ge=1)
    time_cap: Duration = "2-00:00:00"
    resubmit_failed: bool = False
    # a job pending longer than this is late (None: never)
    late_pending_seconds: float | None = Field(default=86400, gt=0)
    # a job running longer than this factor x the stage's expected_seconds is late, and
    # any job past 90% of its time limit is (see baton.supervision.policy)
    late_running_factor: float = Field(default=2.0, gt=0)
    late_action: Literal["alert", "cancel"] = "alert"


class StageConfig(Section):
    """Resources and command of one Slurm stage (the spec's template directives)."""

    time: Duration
    mem: Memory
    cpus: int = Field(ge=1, le=4096)
    gres: SlurmWord = None
    partition: SlurmWord = None
    qos: SlurmWord = None
    # lines run before the command (module load, venv activation); trusted admin input
    setup: list[str] = Field(default_factory=list)
    # the command; ``baton evaluate`` / ``baton analyze`` unless replaced (e.g. R targets)
    command: str | None = None
    template: Path | None = None
    expected_seconds: float | None = Field(default=None, gt=0)
    # evaluation: the datasets every evaluation must cover (the completeness check)
    datasets: list[Annotated[str, AfterValidator(_dataset)]] = Field(default_factory=list)
    array_throttle: int = Field(default=10, ge=1)
    supervision: SupervisionPolicy = Field(default_factory=SupervisionPolicy)

    @model_validator(mode="after")
    def _caps_above_requests(self) -> StageConfig:
        pol = self.supervision
        if parse_memory_mb(pol.mem_cap) < parse_memory_mb(self.mem):
            raise ValueError(f"supervision.mem_cap {pol.mem_cap} is below the stage's mem "
                             f"{self.mem}")
        if parse_time_seconds(pol.time_cap) < parse_time_seconds(self.time):
            raise ValueError(f"supervision.time_cap {pol.time_cap} is below the stage's time "
                             f"{self.time}")
        return self


class SlurmConfig(Section):
    backend: Literal["auto", "sbatch", "local"] = "auto"
    partition: SlurmWord = None
    account: SlurmWord = None
    qos: SlurmWord = None
    submit_per_minute: float = Field(default=60, gt=0)
    # the Slurm call budget of the whole installation (every baton process on this
    # machine): each sbatch, squeue, sacct, scontrol and scancel takes a token from a
    # bucket of calls_burst refilled at calls_per_second, and waits for one (never fails)
    # when it is empty; well under a site's per-user RPC limit (Slurm's default when a site
    # enables one: a bucket of 30 refilled at 2 per second)
    calls_per_second: float = Field(default=0.5, gt=0)
    calls_burst: int = Field(default=10, ge=1)
    # a sensor's status query waits at most this long for its token; over it, the poll
    # is skipped until the next tick (the daemon never hangs on the budget; sbatch and
    # scancel always wait their turn)
    poll_wait_seconds: float = Field(default=2, ge=0)
    # job ids per squeue or sacct call (a long --jobs list is one long request)
    ids_per_call: int = Field(default=500, ge=1, le=10_000)
    retries: int = Field(default=5, ge=1, le=20)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    local_max_concurrent: int = Field(default=2, ge=1)
    # a claim still SUBMITTING this long after it was made lost its submitter (a killed
    # run): the tracker adopts the queued job carrying its token, or marks it failed so
    # that the sensor asks again
    stale_claim_seconds: float = Field(default=600, gt=0)


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^\s]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/") if value else value


def _no_password(uri: str | None) -> str | None:
    """The tracking URI goes into every job script, every MLflow link of the Dagster
    metadata and `baton config show`: a password in it would be in all of them."""
    if uri and urlsplit(uri).password is not None:
        raise ValueError("has a password in it, which would be written into job scripts "
                         "and links: give it in MLFLOW_TRACKING_PASSWORD (the user in "
                         "MLFLOW_TRACKING_USERNAME) instead")
    return uri


class MLflowConfig(Section):
    tracking_uri: Annotated[str | None, AfterValidator(_no_password)] = None
    ui_url: Annotated[str | None, AfterValidator(_http_url)] = None

    def ui(self) -> str | None:
        """The MLflow UI as people open it (behind a proxy, not the jobs' tracking URI):
        ``ui_url``, else the tracking URI when it is an http(s) server."""
        uri = self.tracking_uri or ""
        return self.ui_url or (uri.rstrip("/") if uri.startswith(("http://", "https://"))
                               else None)


class DagsterConfig(Section):
    """Where people open the Dagster UI: the analysis report and the status pages link
    its asset pages."""

    url: Annotated[str | None, AfterValidator(_http_url)] = None


class WebConfig(Section):
    """Where people open ``baton web``'s pages (behind a proxy with its path, e.g.
    ``https://lab.example/baton``): the Dagster metadata and the analysis report link an
    experiment's page and its jobs' logs there."""

    url: Annotated[str | None, AfterValidator(_http_url)] = None

    def experiment_page(self, experiment: str) -> str | None:
        """The experiments page filtered to ``experiment`` (None: no ``url``)."""
        return f"{self.url}/experiments?name={quote(experiment)}" if self.url else None

    def log_page(self, job_id: str, kind: str = "stdout") -> str | None:
        """A job's log page (its tail; it links the other stream and the download)."""
        return f"{self.url}/logs/{quote(job_id, safe='')}/{kind}" if self.url else None


class SensorConfig(Section):
    interval_seconds: int = Field(default=15, ge=1)
    full_rescan_seconds: float = Field(default=600, gt=0)
    debounce_seconds: float = Field(default=2, ge=0)
    # request the evaluation of every accepted training signal (off: launch them by hand
    # or by backfill from the Dagster UI)
    auto_evaluate: bool = True
    # a job that finished without writing its signal is failed after this long
    missing_signal_grace_seconds: float = Field(default=300, ge=0)
    # record what would be submitted ("would submit": the run's log and an asset
    # observation) without calling sbatch or claiming anything in the ledger: baton tried
    # on a production drive safely (see docs/user/plan.md)
    dry_run: bool = False
    # what a sensor finds due in one tick is done by one run (one job array for all the
    # evaluations due); off: one run per signal and stage (the benchmarks' baseline)
    batch: bool = True
    # with batch: the evaluations of the signals a tick accepts are submitted by the tick
    # itself, without a run (sensors/tick_submission.py)
    submit_in_tick: bool = True


class CampaignConfig(Section):
    """The campaign types the control plane knows; a signal naming another type is recorded
    as unknown (``baton campaign list --unknown``), never dropped and never blocking."""

    types: list[Annotated[str, AfterValidator(_type_name)]] = Field(
        default_factory=lambda: ["default", "sweep", "ablation", "baseline", "finetune"],
        min_length=1)
    # the type of a campaign whose signals and jobs do not name one
    default_type: Annotated[str, AfterValidator(_type_name)] = "default"

    @model_validator(mode="after")
    def _default_is_known(self) -> CampaignConfig:
        if self.default_type not in self.types:
            raise ValueError(f"default_type {self.default_type!r} is not one of types "
                             f"{self.types}")
        return self


class StatusConfig(Section):
    """Status reports: how long a started or running job may stay silent before the
    ``BatonStatusReportOverdue`` alert fires."""

    expected_interval_seconds: float = Field(default=3600, gt=0)
    # per project (or ``project/job``) overrides
    intervals: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)

    def interval(self, project: str, job: str) -> float:
        return self.intervals.get(f"{project}/{job}",
                                  self.intervals.get(project, self.expected_interval_seconds))


def _prom_duration(value: str) -> str:
    if not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", value):
        raise ValueError(f"{value!r} is not a Prometheus duration (e.g. 30s, 5m, 1h, 1d)")
    return value


PromDuration = Annotated[str, AfterValidator(_prom_duration)]
MISSING_SIGNAL_SECONDS = {"evaluation": 86400.0, "analysis": 86400.0}


class AlertsConfig(Section):
    """Thresholds of the Prometheus alert rules (``baton alerts render``). The rest come
    from what the configuration says about the things watched: each stage's time limit and
    ``expected_seconds``, the sensors' interval, the jobs ``status.intervals`` names."""

    # a number is a threshold of a rule: .inf or .nan would render a rule that never fires
    model_config = ConfigDict(**Section.model_config, allow_inf_nan=False)
    for_duration: PromDuration = "5m"  # how long a warning must hold before it fires
    exporter_down_for: PromDuration = "5m"  # no baton exporter scraped this long
    component_down_for: PromDuration = "5m"  # a part of the exporter failing this long
    ledger_stale_seconds: float = Field(default=1800, gt=0)  # ledger numbers served older
    # the sensors silent this many sensors.interval_seconds, and at least heartbeat_min
    heartbeat_intervals: float = Field(default=3, ge=2)
    heartbeat_min_seconds: float = Field(default=300, gt=0)
    consecutive_failures: int = Field(default=3, ge=1)  # more Slurm failures in a row
    drive_free_ratio: float = Field(default=0.10, gt=0, lt=1)  # less free on the drive
    queue_depth: int = Field(default=50, ge=1)  # more jobs waiting in the Slurm queue
    # baton's Slurm calls over this share of slurm.calls_per_second for 10 minutes
    slurm_calls_fraction: float = Field(default=0.8, gt=0, lt=1)
    # a job running over slow_factor x its stage's expected_seconds, and in any case over
    # slow_limit_fraction of its time limit (so the alert comes before Slurm's kill)
    slow_factor: float = Field(default=2.0, gt=0)
    slow_limit_fraction: float = Field(default=0.8, gt=0, lt=1)
    # per stage: how long a model may wait for the stage's complete signal after the
    # previous stage's (training -> evaluation -> analysis); a stage left out keeps its
    # default
    missing_signal_seconds: Annotated[
        dict[Literal["evaluation", "analysis"], Annotated[float, Field(gt=0)]],
        AfterValidator(lambda v: {**MISSING_SIGNAL_SECONDS, **v})] = Field(
        default_factory=lambda: dict(MISSING_SIGNAL_SECONDS))
    failure_rate: float = Field(default=0.25, gt=0, le=1)  # over this share of jobs failing
    failure_rate_window: PromDuration = "1h"  # ... in this window
    unknown_type_window: PromDuration = "1h"  # a signal named an unknown campaign type
    backup_missing_seconds: float = Field(default=93600, gt=0)  # no verified backup (26 h)
    backup_failure_window: PromDuration = "1d"  # a failed backup in this window
    given_up_window: PromDuration = "1d"  # a request the sensors gave up on, in this window


class LoggingConfig(Section):
    """How every baton process logs (see baton.logs): the CLI, the exporter, and the
    Dagster code servers and runs, which hold the sensors and the submissions."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False
    file: Annotated[Path, AfterValidator(_absolute)] | None = None
    # rotated at UTC midnight or at this size, whichever comes first, then gzipped
    max_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    # rotated files older than this are deleted (``backups``: its name before rotation
    # went by days, still read)
    keep_days: int = Field(default=30, ge=1,
                           validation_alias=AliasChoices("keep_days", "backups"))


class BackupConfig(Section):
    """``baton db backup`` (the daily schedule too): where copies go and which are kept."""

    # None: the state folder's sibling ``{state_dir}-backups`` (a backup inside the state
    # folder dies with it; one on the shared drive shares the drive's failures)
    dir: Annotated[Path, AfterValidator(_absolute)] | None = None
    keep_daily: int = Field(default=7, ge=1)  # the newest backup of each of the last N days
    keep_weekly: int = Field(default=4, ge=0)  # and of each of the last M ISO weeks


class RetentionConfig(Section):
    """How long history stays in the ledger, and Slurm's logs of successful jobs on the
    drive (a failure's logs are kept)."""

    archive_after_days: float = Field(default=90, gt=0)
    logs_compress_after_days: float = Field(default=7, ge=0)
    logs_delete_after_days: float | None = Field(default=30, gt=0)  # None: never

    @model_validator(mode="after")
    def _delete_after_compress(self) -> RetentionConfig:
        if (self.logs_delete_after_days is not None
                and self.logs_delete_after_days < self.logs_compress_after_days):
            raise ValueError(f"logs_delete_after_days {self.logs_delete_after_days} is below "
                             f"logs_compress_after_days {self.logs_compress_after_days}")
        return self


def _default_stages() -> dict[str, StageConfig]:
    return {
        "evaluation": StageConfig(time="02:00:00", mem="32G", cpus=8),
        "analysis": StageConfig(time="04:00:00", mem="64G", cpus=16),
    }


def _stage_names(stages: dict[str, StageConfig]) -> dict[str, StageConfig]:
    for name in stages:
        if name not in ("evaluation", "analysis"):
            raise ValueError(f"unknown stage {name!r}; expected evaluation or analysis")
    return {**_default_stages(), **stages}


class Config(Section):
    shared_drive: Annotated[Path, AfterValidator(_absolute)] = Field(
        default_factory=default_drive)
    state_dir: Annotated[Path, AfterValidator(_absolute)] = Field(
        default_factory=default_state_dir)
    database_url: str | None = None
    mlflow: MLflowConfig = Field(default_factory=MLflowConfig)
    dagster: DagsterConfig = Field(default_factory=DagsterConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    stages: Annotated[dict[str, StageConfig], AfterValidator(_stage_names)] = Field(
        default_factory=_default_stages)
    sensors: SensorConfig = Field(default_factory=SensorConfig)
    campaigns: CampaignConfig = Field(default_factory=CampaignConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    source: str = Field(default="defaults", exclude=True)

    @property
    def drive(self) -> DriveLayout:
        return DriveLayout(self.shared_drive)

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'ledger.db'}"

    @property
    def backup_dir(self) -> Path:
        return self.backup.dir or self.state_dir.with_name(f"{self.state_dir.name}-backups")

    def stage(self, name: str) -> StageConfig:
        validate_name(name, "stage")
        try:
            return self.stages[name]
        except KeyError:
            raise InvalidName(f"unknown stage {name!r}") from None


def substitute(value: Any, env: Mapping[str, str], key: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML tree."""
    if isinstance(value, dict):
        return {k: substitute(v, env, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, env, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError("", key, f"environment variable {name} is not set "
                          f"(write ${{{name}:-default}} for a default)")

    return _VAR.sub(repl, value)


def _set(tree: dict[str, Any], keys: tuple[str, ...], value: str) -> None:
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError("environment", ".".join(keys), f"{k} is not a mapping")
    node[keys[-1]] = value


def find_config_file(env: Mapping[str, str]) -> Path | None:
    """``$BATON_CONFIG``, else ``./baton.yaml``, else none (the embedded defaults)."""
    if env.get("BATON_CONFIG"):
        return Path(env["BATON_CONFIG"])
    local = Path("baton.yaml")
    return local if local.is_file() else None


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None
                ) -> Config:
    env = os.environ if env is None else env
    file = Path(path) if path is not None else find_config_file(env)
    source = str(file) if file else "defaults"
    tree: dict[str, Any] = {}
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(source, "", "is not valid UTF-8") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(source, "", f"invalid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(source, "", "must be a mapping of keys to values")
        try:
            tree = substitute(loaded or {}, env)
        except ConfigError as exc:
            raise ConfigError(source, exc.key, exc.reason) from None
    for var, keys in ENV_KEYS.items():
        if env.get(var):
            _set(tree, keys, env[var])
    try:
        config = Config.model_validate({**tree, "source": source})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"])
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(source, key, reason + more) from None
    _check_ledger_not_on_drive(config)
    _check_backups_not_on_drive(config)
    return config


def _check_ledger_not_on_drive(config: Config) -> None:
    url = config.ledger_url
    if not url.startswith("sqlite:///"):
        return
    db = Path(os.path.realpath(url.removeprefix("sqlite:///")))
    drive = Path(os.path.realpath(config.shared_drive))
    if drive in db.parents:
        raise ConfigError(config.source, "database_url",
                          f"the SQLite ledger {db} is on the shared drive; SQLite's WAL does "
                          "not work over a network filesystem: put it on local disk")


def on_drive(config: Config, path: Path) -> bool:
    real, drive = Path(os.path.realpath(path)), Path(os.path.realpath(config.shared_drive))
    return real == drive or drive in real.parents


def _check_backups_not_on_drive(config: Config) -> None:
    """A ``backup.dir`` set on the drive is refused here; the default one (beside a state
    folder that is on the drive) by ``baton db backup``, not by every command."""
    if config.backup.dir is not None and on_drive(config, config.backup.dir):
        raise ConfigError(config.source, "backup.dir",
                          f"the ledger's backups {config.backup.dir} are on the shared drive: "
                          "a backup must not share the failures of what it backs up; put it "
                          "elsewhere")
