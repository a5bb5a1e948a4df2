"""The whole class of bad input, table-driven: every ``baton`` subcommand is run as people
run it (a real process) with hostile and malformed values (non-UTF-8, control characters,
huge and empty values, path traversal, zero and negative resources, missing files,
unreachable services, a missing ledger). Each must end with one line naming the problem,
no traceback, a non-zero exit, and no change to the ledger, the spool or the drive."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from baton.layout import DriveLayout

GOOD_EXP = "exp_ok"


@dataclass(frozen=True)
class Case:
    """One bad invocation: ``says`` holds words of which the error line must name one."""

    args: tuple[str | bytes, ...]
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def case(*args: str | bytes, says: str | tuple[str, ...], **env: str) -> Case:
    return Case(args, (says,) if isinstance(says, str) else says, env)


NOT_UTF8 = b"caf\xe9\xff"
ESCAPES = "a\x1b]0;owned\x07\r\nb"
LONG = "x" * 200
SUBMIT = ("slurm", "submit", "--stage", "evaluation", "--backend", "local")
DEAD_PG = "postgresql://baton:s3cret@127.0.0.1:9/baton"

CASES: dict[str, Case] = {
    # configuration
    "config: missing --config file": case("--config", "/nonexistent/baton.yaml", "config",
                                          "show", says="baton.yaml"),
    "config: relative shared_drive": case("config", "show", says="shared_drive",
                                          SHARED_DRIVE="relative/drive"),
    "db: check on a missing ledger": case("db", "check", says=("ledger", "db init"),
                                          BATON_STATE_DIR="{tmp}/elsewhere"),
    "db rebuild: missing ledger": case("db", "rebuild", says="db init",
                                       BATON_STATE_DIR="{tmp}/elsewhere"),
    "db rebuild: missing drive": case("db", "rebuild", says="{tmp}/nodrive",
                                      SHARED_DRIVE="{tmp}/nodrive"),
    "db adopt: nothing named": case("db", "adopt", says="--all"),
    "db adopt: traversal name": case("db", "adopt", "../etc", says="../etc"),
    # a ledger that is missing or unreachable
    "status list: missing ledger": case("status", "list", says="db init",
                                        BATON_STATE_DIR="{tmp}/elsewhere"),
    "status list: unreachable PostgreSQL": case("status", "list", says="127.0.0.1",
                                                BATON_DATABASE_URL=DEAD_PG),
    "campaign list: unreachable PostgreSQL": case("campaign", "list", says="127.0.0.1",
                                                  BATON_DATABASE_URL=DEAD_PG),
    "sql: missing ledger": case("sql", "SELECT 1", says="db init",
                                BATON_STATE_DIR="{tmp}/elsewhere"),
    "exporter: missing ledger": case("exporter", "--port", "0", says="db init",
                                     BATON_STATE_DIR="{tmp}/elsewhere"),
    "signal quarantined: missing ledger": case("signal", "quarantined", says="db init",
                                               BATON_STATE_DIR="{tmp}/elsewhere"),
    "supervise list: missing ledger": case("supervise", "list", says="db init",
                                           BATON_STATE_DIR="{tmp}/elsewhere"),
    # stage submissions: names, paths and resources
    "submit: traversal name": case(*SUBMIT, "--experiment", "../etc", "--checkpoint",
                                   "{ckpt}", says="../etc"),
    "submit: shell in name": case(*SUBMIT, "--experiment", "x$(id)", "--checkpoint", "{ckpt}",
                                  says="x$(id)"),
    "submit: option as name": case(*SUBMIT, "--experiment=-rf", "--checkpoint", "{ckpt}",
                                   says="-rf"),
    "submit: 200-character name": case(*SUBMIT, "--experiment", LONG, "--checkpoint",
                                       "{ckpt}", says=("128", "experiment")),
    "submit: empty name": case(*SUBMIT, "--experiment=", "--checkpoint", "{ckpt}",
                               says="experiment"),
    "submit: non-UTF-8 name": case(*SUBMIT, "--experiment", NOT_UTF8, "--checkpoint",
                                   "{ckpt}", says="experiment"),
    "submit: checkpoint outside the drive": case(*SUBMIT, "--experiment", GOOD_EXP,
                                                 "--checkpoint", "/etc", says="/etc"),
    "submit: checkpoint that does not exist": case(*SUBMIT, "--experiment", GOOD_EXP,
                                                   "--checkpoint", "{drive}/models/nope",
                                                   says="nope"),
    "submit: --mem lots": case(*SUBMIT, "--experiment", GOOD_EXP, "--checkpoint", "{ckpt}",
                               "--mem", "lots", says="lots"),
    "submit: --mem 0": case(*SUBMIT, "--experiment", GOOD_EXP, "--checkpoint", "{ckpt}",
                            "--mem", "0", says="mem"),
    "submit: --time -1": case(*SUBMIT, "--experiment", GOOD_EXP, "--checkpoint", "{ckpt}",
                              "--time", "-1", says="time"),
    "submit: --time 0": case(*SUBMIT, "--experiment", GOOD_EXP, "--checkpoint", "{ckpt}",
                             "--time", "0", says="time"),
    "submit: --attempt 0": case(*SUBMIT, "--experiment", GOOD_EXP, "--checkpoint", "{ckpt}",
                                "--attempt", "0", says="attempt"),
    "submit: --attempt -3": case(*SUBMIT, "--experiment", GOOD_EXP, "--checkpoint",
                                 "{ckpt}", "--attempt=-3", says="attempt"),
    "submit: missing script": case("slurm", "submit", "--backend", "local",
                                   "{tmp}/no_such_script.sh", says="no_such_script.sh"),
    "cancel: unknown job": case("slurm", "cancel", "--backend", "local", "99999",
                                says="99999"),
    "cancel: not a job id": case("slurm", "cancel", "--backend", "local", "12;rm",
                                 says="12;rm"),
    # baton sql is read-only and says why in one line
    "sql: COPY TO the ledger": case("sql", "COPY (SELECT 1) TO '{state}/ledger.db'",
                                    says=("COPY", "read-only", "write", "permission",
                                          "disabled")),
    "sql: COPY TO elsewhere": case("sql", "COPY (SELECT 1) TO '{tmp}/out.csv'",
                                   says=("COPY", "read-only", "write", "permission",
                                         "disabled")),
    "sql: ATTACH": case("sql", "ATTACH '{tmp}/other.duckdb' AS o",
                        says=("ATTACH", "read-only", "permission", "disabled")),
    "sql: INSTALL": case("sql", "INSTALL httpfs", says=("INSTALL", "httpfs", "disabled",
                                                        "permission")),
    "sql: SET configuration": case("sql", "SET enable_external_access = true",
                                   says=("configuration", "locked", "enable_external_access")),
    "sql: failed CAST while fetching": case("sql", "SELECT CAST('a' || i AS INTEGER) FROM "
                                            "range(3) t(i)", says=("CAST", "Conversion",
                                                                   "convert")),
    "sql: syntax error": case("sql", "SELEC 1", says=("SELEC", "syntax")),
    "sql: --max-rows -1": case("sql", "--max-rows=-1", "SELECT 1", says="max-rows"),
    # the exporter
    "exporter: port in use": case("exporter", "--port", "{busy_port}", says="{busy_port}"),
    "exporter: bad host": case("exporter", "--host", "no-such-host.invalid", "--port", "0",
                               says="no-such-host.invalid"),
    "exporter: port out of range": case("exporter", "--port", "70000", says="70000"),
    # campaigns
    "campaign set: non-UTF-8 display name": case("campaign", "set", "c1", "--display-name",
                                                 NOT_UTF8, says="display"),
    "campaign set: traversal tag": case("campaign", "set", "../c", "--note", "x",
                                        says="../c"),
    "campaign set: negative expected jobs": case("campaign", "set", "c1",
                                                 "--expected-jobs=-1", says="expected"),
    # signals from a shell
    "training-complete: traversal name": case("signal", "training-complete", "--experiment",
                                              "../x", "--checkpoint", "{ckpt}", says="../x"),
    "training-complete: checkpoint outside the drive": case(
        "signal", "training-complete", "--experiment", GOOD_EXP, "--checkpoint", "/etc",
        says="/etc"),
    "training-complete: missing checkpoint": case(
        "signal", "training-complete", "--experiment", GOOD_EXP, "--checkpoint",
        "{drive}/models/{exp}/nope", says="nope"),
    "training-complete: escapes in name": case("signal", "training-complete", "--experiment",
                                               ESCAPES, "--checkpoint", "{ckpt}",
                                               says="experiment"),
    "analysis-complete: traversal name": case("signal", "analysis-complete", "--experiment",
                                              "../x", says="../x"),
    "analysis-complete: missing report": case("signal", "analysis-complete", "--experiment",
                                              GOOD_EXP, "--report", "{tmp}/nope.html",
                                              says="nope.html"),
    "validate: missing file": case("signal", "validate", "{tmp}/nope.json", says="nope.json"),
    "quarantined: --limit -1": case("signal", "quarantined", "--limit=-1", says="limit"),
    # work commands
    "evaluate: traversal name": case("evaluate", "--experiment", "../x", "--checkpoint",
                                     "{ckpt}", says="../x"),
    # (``baton evaluate`` is what a Slurm job runs: a checkpoint it cannot use is announced as
    # the job's .eval_failed, so that the pipeline hears of it; not a case for this table)
    "analyze: traversal name": case("analyze", "--experiment", "../x", says="../x"),
    "example train: traversal name": case("example", "train", "--experiment", "../x",
                                          says="../x"),
    "example train: zero epochs": case("example", "train", "--experiment", GOOD_EXP,
                                       "--epochs", "0", says="epochs"),
    "example train: NaN learning rate": case("example", "train", "--experiment", GOOD_EXP,
                                             "--lr", "nan", says="lr"),
    # supervision
    "supervise show: unknown id": case("supervise", "show", "99999", says="99999"),
    "supervise retry: unknown id": case("supervise", "retry", "99999", says="99999"),
    "supervise cancel: unknown id": case("supervise", "cancel", "99999", says="99999"),
    "supervise list: --limit -1": case("supervise", "list", "--limit=-1", says="limit"),
    "status history: --limit -1": case("status", "history", "--project", "p", "--limit=-1",
                                       says="limit"),
}


@dataclass
class World:
    tmp: Path
    drive: DriveLayout
    env: dict[str, str]
    busy_port: int

    def fill(self, value: str | bytes) -> str | bytes:
        if isinstance(value, bytes):
            return value
        return value.format(tmp=self.tmp, drive=self.drive.root, state=self.tmp / "state",
                            exp=GOOD_EXP, busy_port=self.busy_port,
                            ckpt=self.drive.root / "models" / GOOD_EXP / "checkpoint_final")


def run(world: World, args: tuple[str | bytes, ...], env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    extra = {k: str(world.fill(v)) for k, v in (env or {}).items()}
    argv: list[str | bytes] = [sys.executable, "-m", "baton", *(world.fill(a) for a in args)]
    # none of the caller's baton settings: only the world's and the case's
    base = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    try:
        return subprocess.run(argv, capture_output=True, env={**base, **world.env, **extra},
                              cwd=world.tmp, timeout=90, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} did not end within 90 s (it should refuse at once): "
                    f"{(exc.stderr or b'')[-500:]!r}", pytrace=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("hostile")
    drive = DriveLayout(tmp / "drive")
    drive.create()
    (drive.root / "models" / GOOD_EXP / "checkpoint_final").mkdir(parents=True)
    env = {"SHARED_DRIVE": str(drive.root), "BATON_STATE_DIR": str(tmp / "state"),
           "BATON_CONFIG": "", "BATON_SLURM_BACKEND": "local"}
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    w = World(tmp, drive, env, busy.getsockname()[1])
    init = run(w, ("db", "init"))
    assert init.returncode == 0, init.stderr.decode(errors="replace")
    # one queued status report that a command on the wrong ledger must not consume
    report = run(w, ("status", "report", "--project", "p", "--job", "j", "--status",
                     "running"))
    assert report.returncode == 0, report.stderr.decode(errors="replace")
    yield w
    busy.close()


def snapshot(world: World) -> dict[str, object]:
    """Every file under the test's folder (the drive, the state, anything else) with its
    content, and the ledger's rows: what a refused command must leave as it was."""
    files: dict[str, object] = {}
    for path in sorted(world.tmp.rglob("*")):
        rel = str(path.relative_to(world.tmp))
        if path.name.startswith("ledger.db"):
            continue  # compared by rows below (SQLite may touch the file on a read)
        files[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
    db = sqlite3.connect(world.tmp / "state" / "ledger.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        db.close()
    return {"files": files, "ledger": rows}


def problem_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block: what the user is told."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):
        lines = [line for line in lines[1:] if not line.startswith(" ")]
    return lines


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_in_one_line_and_changes_nothing(world: World, name: str) -> None:
    bad = CASES[name]
    before = snapshot(world)
    proc = run(world, bad.args, bad.env)
    stderr = proc.stderr.decode("utf-8", errors="backslashreplace")
    assert "Traceback" not in stderr, f"{name}: traceback:\n{stderr[-2000:]}"
    assert proc.returncode in (1, 2), (f"{name}: exit {proc.returncode}, stdout "
                                       f"{proc.stdout[-300:]!r}, stderr {stderr[-500:]!r}")
    lines = problem_lines(stderr)
    assert len(lines) == 1, f"{name}: expected one line, got {lines}"
    wanted = [str(world.fill(s)) for s in bad.says]
    assert any(w.lower() in lines[0].lower() for w in wanted), (
        f"{name}: {lines[0]!r} names none of {wanted}")
    assert "s3cret" not in stderr + proc.stdout.decode(errors="replace")
    assert "\x1b" not in stderr, f"{name}: a raw ESC reached the terminal: {stderr!r}"
    assert snapshot(world) == before, f"{name}: changed the ledger, the spool or the drive"
