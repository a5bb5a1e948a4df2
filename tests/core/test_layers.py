"""The layout rules of DESIGN.md, checked: the layers in .importlinter hold (and a
back-arrow breaks them), and no two modules share a name."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("baton", "assets", "sensors", "resources", "ops_slurm", "schedules", "prometheus")
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT, "--no-cache", "--config", str(root / ".importlinter")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_hold() -> None:
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_an_import_up_the_layers_breaks_them(tmp_path: Path) -> None:
    """The contracts are not vacuous: the Slurm adapter importing the ledger (the arrow
    issue 12 found) fails them."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    render = tmp_path / "baton" / "slurm" / "render.py"
    render.write_text(render.read_text() + "\nfrom baton.ledger import Ledger  # noqa\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "baton.slurm is not allowed to import baton.ledger" in proc.stdout


def test_no_two_modules_share_a_name() -> None:
    names = collections.defaultdict(list)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts or path.name in ("__init__.py", "__main__.py"):
                continue
            names[path.stem].append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
