"""MaxArraySize as ``scontrol show config`` prints it on the real cluster."""

from __future__ import annotations

from pathlib import Path

from baton.slurm.limits import parse_max_array_size

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"


def test_max_array_size_is_read_from_the_real_output() -> None:
    assert parse_max_array_size((DATA / "scontrol_show_config.txt").read_text()) == 10001


def test_an_output_without_it_says_none() -> None:
    assert parse_max_array_size("MaxJobCount             = 100000\n") is None
    assert parse_max_array_size("") is None
