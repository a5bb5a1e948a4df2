"""The drive layout, name validation, and the one typed config."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import load_config
from baton.errors import ConfigError, InvalidName, PathEscape
from baton.layout import DriveLayout, validate_name


@pytest.mark.parametrize("name", ["exp1", "A", "lr-3e-4_seed.2", "x" * 128, "0abc"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "x; rm -rf ~", "../etc", ".hidden", "-flag", "a b",
                                  "x" * 129, "é", "a/b", "$(id)", "a\nb"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidName, match="not allowed"):
        validate_name(name)


def test_layout_follows_the_spec(tmp_path: Path) -> None:
    drive = DriveLayout(tmp_path)
    drive.create()
    for folder in ("models", "evaluation", "analysis", "config/experiments",
                   "config/evaluation", "logs/training", "logs/evaluation", "logs/analysis"):
        assert (tmp_path / folder).is_dir(), folder
    assert not (tmp_path / "state").exists()  # no database on the drive
    exp = drive.experiment("exp1")
    assert exp.training_signal == tmp_path / "models/exp1/.training_complete"
    assert exp.checkpoint(1000) == tmp_path / "models/exp1/checkpoints/checkpoint-1000"
    assert exp.metrics_dir == tmp_path / "evaluation/exp1/metrics"
    assert exp.eval_complete_signal == tmp_path / "evaluation/exp1/.eval_complete"
    assert exp.eval_failed_signal == tmp_path / "evaluation/exp1/.eval_failed"
    assert exp.figures_dir == tmp_path / "analysis/figures/exp1"
    assert exp.analysis_signal == tmp_path / "analysis/reports/exp1/.analysis_complete"
    with pytest.raises(InvalidName):
        drive.experiment("../../etc")


def test_no_path_escapes_the_drive(tmp_path: Path) -> None:
    drive = DriveLayout(tmp_path / "drive")
    drive.create()
    assert drive.inside("models/x") == (tmp_path / "drive/models/x").resolve()
    with pytest.raises(PathEscape, match="outside the shared drive"):
        drive.inside("../x")
    (drive.root / "models" / "link").symlink_to("/etc")
    with pytest.raises(PathEscape, match="resolves to /etc"):
        drive.inside(drive.root / "models" / "link" / "passwd")


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(env={"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "s"),
                              "XDG_DATA_HOME": str(tmp_path / "d")})
    # defaults come from the XDG variables of the real environment when set
    assert config.stage("evaluation").mem == "32G"
    assert config.stage("analysis").cpus == 16
    assert config.slurm.backend == "auto"
    assert config.ledger_url.startswith("sqlite:///")


def test_file_env_and_substitution(tmp_path: Path) -> None:
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(
        "shared_drive: ${LAB_ROOT}/drive\n"
        "mlflow:\n  tracking_uri: http://${MLFLOW_HOST:-localhost}:5000\n"
        "slurm:\n  partition: gpu\n"
        "stages:\n  evaluation:\n    time: '04:00:00'\n    mem: 64G\n    cpus: 4\n"
        "    setup: ['module load python/3.11']\n")
    env = {"LAB_ROOT": str(tmp_path), "BATON_STATE_DIR": str(tmp_path / "state"),
           "SLURM_ACCOUNT": "lab42"}
    config = load_config(cfg, env)
    assert config.shared_drive == tmp_path / "drive"
    assert config.mlflow.tracking_uri == "http://localhost:5000"
    assert config.slurm.partition == "gpu" and config.slurm.account == "lab42"
    assert config.stage("evaluation").mem == "64G"
    assert config.stage("analysis").mem == "64G"  # untouched stage keeps its default
    env["SHARED_DRIVE"] = "/elsewhere"  # the environment wins over the file
    assert load_config(cfg, env).shared_drive == Path("/elsewhere")


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("slurm:\n  backend: pbs\n", "slurm.backend", "Input should be"),
    ("stages:\n  evaluation:\n    time: 1h\n    mem: 4G\n    cpus: 1\n",
     "stages.evaluation.time", "invalid time"),
    ("stages:\n  evaluation:\n    time: '1:00:00'\n    mem: lots\n    cpus: 1\n",
     "stages.evaluation.mem", "invalid memory"),
    ("stages:\n  training:\n    time: '1'\n    mem: 1G\n    cpus: 1\n", "stages",
     "unknown stage"),
    ("slurm:\n  account: 'x; rm -rf ~'\n", "slurm.account", "may only hold"),
    ("slurm:\n  acount: lab\n", "slurm.acount", "unknown key"),
    ("shared_drive: ${NOT_SET_ANYWHERE}\n", "shared_drive",
     "environment variable NOT_SET_ANYWHERE is not set"),
    ("- a list\n", "", "must be a mapping"),
    ("slurm: [unclosed\n", "", "invalid YAML"),
])
def test_bad_config_names_key_and_reason(tmp_path: Path, text: str, key: str,
                                         reason: str) -> None:
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, {"BATON_STATE_DIR": str(tmp_path / "s")})
    assert str(info.value).startswith(f"{cfg}: ")
    assert info.value.key == key
    assert reason in info.value.reason


def test_sqlite_ledger_on_the_drive_is_refused(tmp_path: Path) -> None:
    env = {"SHARED_DRIVE": str(tmp_path / "drive"),
           "BATON_DATABASE_URL": f"sqlite:///{tmp_path}/drive/state/ledger.db"}
    with pytest.raises(ConfigError, match="on the shared drive"):
        load_config(env=env)


# --- values Slurm would take as "everything": refused where they are read ---------------
@pytest.mark.parametrize("text", ["0", "0G", "0M", "-1", "1.5G", "4000Mn", "lots", ""])
def test_a_memory_request_must_be_a_whole_positive_amount(text: str) -> None:
    from baton.units import parse_memory_request_mb

    with pytest.raises(ValueError, match=f"memory {text!r}"):
        parse_memory_request_mb(text)


@pytest.mark.parametrize("text", ["0", "00:00:00", "0:0", "0-0", "-1", "1.5", "forever"])
def test_a_time_limit_must_be_a_whole_positive_duration(text: str) -> None:
    from baton.units import parse_time_limit_seconds

    with pytest.raises(ValueError, match=f"time.*{text!r}"):
        parse_time_limit_seconds(text)


def test_good_requests_are_read_as_slurm_reads_them() -> None:
    from baton.units import parse_memory_request_mb, parse_time_limit_seconds

    assert parse_memory_request_mb("32G") == 32768 and parse_memory_request_mb("100") == 100
    assert parse_time_limit_seconds("30") == 1800
    assert parse_time_limit_seconds("00:00:30") == 30


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("stages:\n  evaluation:\n    time: '1:00:00'\n    mem: 0G\n    cpus: 1\n",
     "stages.evaluation.mem", "all of a node's memory"),
    ("stages:\n  analysis:\n    time: '0'\n    mem: 4G\n    cpus: 1\n",
     "stages.analysis.time", "no limit"),
    ("stages:\n  evaluation:\n    time: '1:00:00'\n    mem: 1.5G\n    cpus: 1\n",
     "stages.evaluation.mem", "whole number"),
    ("stages:\n  evaluation:\n    time: '1:00:00'\n    mem: 4G\n    cpus: 1\n"
     "    supervision:\n      mem_cap: 0G\n", "stages.evaluation.supervision.mem_cap",
     "all of a node's memory"),
    ("shared_drive: drive\n", "shared_drive", "absolute"),
    ("shared_drive: ~/drive\n", "shared_drive", "absolute"),
])
def test_zero_resources_and_a_relative_drive_are_refused(tmp_path: Path, text: str, key: str,
                                                          reason: str) -> None:
    cfg = tmp_path / "baton.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, {"BATON_STATE_DIR": str(tmp_path / "s")})
    assert str(info.value).startswith(f"{cfg}: {key}: ")
    assert reason in info.value.reason


def test_a_relative_drive_from_the_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"SHARED_DRIVE": "shared", "BATON_STATE_DIR": str(tmp_path / "s")})
    assert info.value.key == "shared_drive" and "absolute" in info.value.reason


def test_a_relative_state_dir_is_refused(tmp_path: Path) -> None:
    """The ledger and the local backend's jobs would follow the folder a command is run
    from: ``baton db init`` in one folder, and every other command finds no ledger."""
    with pytest.raises(ConfigError) as info:
        load_config(env={"SHARED_DRIVE": str(tmp_path / "d"), "BATON_STATE_DIR": "state"})
    assert info.value.key == "state_dir" and "absolute" in info.value.reason


# --- the drive's folders, created where they are missing --------------------------------
def test_ensure_creates_missing_folders_under_an_existing_drive(tmp_path: Path) -> None:
    drive = DriveLayout(tmp_path / "drive")
    drive.root.mkdir()
    drive.ensure(drive.logs / "evaluation")
    assert (drive.root / "logs" / "evaluation").is_dir()
    drive.ensure(*drive.top_level())
    assert all(folder.is_dir() for folder in drive.top_level())


def test_ensure_never_creates_the_drive_itself(tmp_path: Path) -> None:
    """A drive that is not there is likely not mounted: creating it would hide that."""
    from baton.errors import BatonError

    drive = DriveLayout(tmp_path / "not-mounted")
    with pytest.raises(BatonError, match=f"shared drive {drive.root} does not exist"):
        drive.ensure(drive.logs / "evaluation")
    assert not drive.root.exists()


def test_ensure_names_a_folder_it_cannot_create(tmp_path: Path) -> None:
    from baton.errors import BatonError

    drive = DriveLayout(tmp_path / "drive")
    (drive.root / "logs").mkdir(parents=True)
    (drive.logs / "evaluation").write_text("a file where a folder belongs")
    with pytest.raises(BatonError, match=f"cannot create {drive.logs / 'evaluation'}: "):
        drive.ensure(drive.logs / "evaluation")
