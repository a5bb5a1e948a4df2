"""Every fenced code block of the docs (docs/**/*.md) and of README.md is marked, on the
line right before its opening fence, as a runnable example of a kind
(``<!-- example: config -->``) or as not run, with the reason
(``<!-- example: not-run (needs a cluster) -->``); each runnable block runs here. The
kinds and how each is run: docs/development/tests.md, "Runnable examples in the docs"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.config import Config, load_config, substitute
from baton.evaluate.harness import load_eval_config
from baton.evaluate.protocol import load_evaluator
from baton.layout import DriveLayout
from tests.analyze.test_analyze_sql import _completed_jobs, campaign  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's python and baton
DOC_DRIVE = "/mnt/shared/subject-drop"  # the drive the examples name
RUNNABLE = ("config", "eval-config", "python", "shell", "sql")
KINDS = (*RUNNABLE, "not-run")

MARKER = re.compile(r"<!--\s*example:\s*(?P<kind>[a-z-]+)\s*(?:\((?P<reason>.*)\))?\s*-->")
FENCE = re.compile(r"(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its info string, its marker and its text."""

    path: str  # relative to the repository
    line: int  # 1-based line of the opening fence
    info: str
    kind: str | None  # None: no marker on the line before the fence
    reason: str | None
    text: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def parse_blocks(text: str, path: str = "<text>") -> list[Block]:
    """The fenced code blocks of a Markdown text, with the marker on the line before each
    (CommonMark fences: three or more backticks or tildes, closed by at least as many of
    the same character; a fence indented in a list item counts, its indent is removed)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip(" ")
        indent = len(lines[i]) - len(stripped)
        opening = FENCE.fullmatch(stripped.rstrip()) if stripped else None
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        close = re.compile(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.fullmatch(lines[j]):
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        before = lines[i - 1].strip() if i > 0 else ""
        marker = MARKER.fullmatch(before)
        reason = (marker["reason"] or "").strip() if marker else ""
        blocks.append(Block(path=path, line=i + 1, info=opening["info"].strip(),
                            kind=marker["kind"] if marker else None, reason=reason or None,
                            text="\n".join(body) + "\n"))
        i = j + 1
    return blocks


def doc_files() -> list[Path]:
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


def all_blocks() -> list[Block]:
    return [b for f in doc_files()
            for b in parse_blocks(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]


def blocks_of(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in all_blocks() if b.kind == kind]


# --- every block is marked --------------------------------------------------------------


def test_parser_finds_fences_and_markers() -> None:
    text = "\n".join([
        "# title",
        "<!-- example: shell -->",
        "```bash",
        "baton --help",
        "```",
        "",
        "```",
        "unmarked",
        "```",
        "<!-- example: not-run (needs root) -->",
        "~~~~text",
        "```",
        "a fence inside",
        "```",
        "~~~~",
        "- a list item:",
        "",
        "  <!-- example:   python   -->",
        "  ```python",
        "  print(1)",
        "      indented more",
        "  ```",
        "<!-- example: not-run -->",
        "```",
        "x",
        "```",
    ])
    got = [(b.line, b.info, b.kind, b.reason, b.text) for b in parse_blocks(text)]
    assert got == [
        (3, "bash", "shell", None, "baton --help\n"),
        (7, "", None, None, "unmarked\n"),
        (11, "text", "not-run", "needs root", "```\na fence inside\n```\n"),
        (19, "python", "python", None, "print(1)\n    indented more\n"),
        (24, "", "not-run", None, "x\n"),
    ]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_is_marked(path: Path) -> None:
    """A block is a runnable example of a known kind, or not run with a reason."""
    problems = []
    for b in parse_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))):
        if b.kind is None:
            problems.append(f"{b.id}: no <!-- example: KIND --> on the line before the fence")
        elif b.kind not in KINDS:
            problems.append(f"{b.id}: unknown kind {b.kind!r} (known: {', '.join(KINDS)})")
        elif b.kind == "not-run" and not b.reason:
            problems.append(f"{b.id}: not-run needs its reason: <!-- example: not-run (why) -->")
    assert problems == []


def test_the_docs_have_examples_of_every_kind() -> None:
    """Each kind is in use, so none of the parametrized tests below is empty."""
    assert {b.kind for b in all_blocks()} >= set(KINDS)


# --- the sandbox: a fresh drive, state, HOME and ledger; the venv's baton -----------------


@dataclass
class Sandbox:
    root: Path
    drive: Path
    env: dict[str, str]

    def localize(self, text: str) -> str:
        """The example with the drive it names standing for the sandbox's."""
        return text.replace(DOC_DRIVE, str(self.drive))


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    home, drive, state = tmp_path / "home", tmp_path / "drive", tmp_path / "state"
    home.mkdir()
    DriveLayout(drive).create()
    keep = {k: v for k, v in os.environ.items()
            if k in ("LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "PYTHONPATH")}
    env = {**keep, "HOME": str(home), "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
           "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_STATE_HOME": str(home / ".local/state"),
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
           "SHARED_DRIVE": str(drive), "BATON_STATE_DIR": str(state), "BATON_CONFIG": "",
           "BATON_SLURM_BACKEND": "local"}
    init = subprocess.run([str(BIN / "baton"), "db", "init"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    return Sandbox(tmp_path, drive, env)


# --- configuration ----------------------------------------------------------------------


def leaves(tree: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every scalar or list the YAML sets."""
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from leaves(v, f"{key}.{k}" if key else str(k))
    else:
        yield key, tree


def lookup(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def assert_all_set(snippet: Any, loaded: Mapping[str, Any]) -> None:
    """Every value the snippet sets is the loaded configuration's value."""
    pairs = list(leaves(snippet))
    assert pairs
    for key, value in pairs:
        assert lookup(loaded, key) == value, key


@pytest.mark.parametrize("block", blocks_of("config"))
def test_config_example_loads(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text(block.text)
    config = load_config(path, env={})
    assert config.source == str(path)
    assert_all_set(substitute(yaml.safe_load(block.text), {}), config.model_dump(mode="json"))


@pytest.mark.parametrize("block", blocks_of("eval-config"))
def test_eval_config_example_loads(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text(block.text)
    conf = load_eval_config(path, DriveLayout(tmp_path / "drive"))
    assert_all_set(yaml.safe_load(block.text), conf.model_dump(mode="json"))


# --- python and shell -------------------------------------------------------------------


def run_in(sandbox: Sandbox, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=sandbox.env, cwd=sandbox.root, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("block", blocks_of("python"))
def test_python_example_runs(block: Block, sandbox: Sandbox) -> None:
    """It exits 0 and writes nothing to stderr (where the hook logs what it could not do)."""
    script = sandbox.root / "example.py"
    script.write_text(sandbox.localize(block.text))
    run = run_in(sandbox, [str(BIN / "python"), str(script)])
    assert (run.returncode, run.stderr) == (0, "")


@pytest.mark.parametrize("block", blocks_of("shell"))
def test_shell_example_runs(block: Block, sandbox: Sandbox) -> None:
    """Every command exits 0 (bash -e) and writes nothing to stderr."""
    run = run_in(sandbox, ["bash", "-euo", "pipefail", "-c", sandbox.localize(block.text)])
    assert (run.returncode, run.stderr) == (0, "")


def test_evaluator_example_is_an_evaluator(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator the docs show loads as eval.yaml names one, by import path."""
    (block,) = [b for b in all_blocks()
                if b.kind == "python" and "class MyEvaluator" in b.text]
    (tmp_path / "doc_evaluator.py").write_text(block.text)
    monkeypatch.syspath_prepend(str(tmp_path))
    evaluator = load_evaluator("doc_evaluator:MyEvaluator")
    assert evaluator.datasets() == ["blimp", "wikitext"]


# --- SQL --------------------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("sql"))
def test_sql_example_returns_rows(block: Block, campaign: Config,  # noqa: F811 (the fixture)
                                  tmp_path: Path) -> None:
    """Each `baton sql "..."` of the block, by the venv's baton, over the example campaign of
    tests/analyze/test_analyze_sql.py (exp01 stands for its experiment `slow`) and three finished
    jobs, returns rows."""
    queries = re.findall(r'baton sql "(.*?)"', block.text, flags=re.S)
    assert queries
    own = campaign.model_copy(update={"state_dir": tmp_path / "state"})
    _completed_jobs(own)
    env = {**os.environ, "SHARED_DRIVE": str(own.shared_drive),
           "BATON_STATE_DIR": str(own.state_dir), "BATON_CONFIG": ""}
    for query in queries:
        run = subprocess.run([str(BIN / "baton"), "sql", query.replace("exp01", "slow"),
                              "--format", "json"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout), query
