"""`baton demo` refuses bad input before it starts anything: one line naming the input,
exit 2 for a usage error (argparse's), 1 for a home it cannot use; no traceback, nothing
created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from baton.cli import build_parser


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_CONFIG", "SHARED_DRIVE")}
    return subprocess.run([sys.executable, "-m", "baton", "demo", "--once", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
def test_a_timeout_that_is_no_positive_number_is_a_usage_error(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["demo", "--timeout", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--timeout" in err and value in err, err


def test_a_home_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    run = demo("--home", str(home))
    assert run.returncode == 1, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("baton: error: "), run.stderr[-2000:]
    assert str(home) in lines[0] and "Traceback" not in run.stderr
    assert home.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [home]


def test_a_home_inside_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = demo("--home", str(blocker / "demo"))
    assert run.returncode == 1, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("baton: error: "), run.stderr[-2000:]
    assert str(blocker / "demo") in lines[0]
