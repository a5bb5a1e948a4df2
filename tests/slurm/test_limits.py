"""MaxArraySize as ``scontrol show config`` prints it on the real cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from baton.config import Config
from baton.slurm.budget import read_calls
from baton.slurm.factory import make_backend
from baton.slurm.limits import parse_max_array_size
from baton.slurm.sbatch import SbatchBackend

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"


def test_max_array_size_is_read_from_the_real_output() -> None:
    assert parse_max_array_size((DATA / "scontrol_show_config.txt").read_text()) == 10001


def test_an_output_without_it_says_none() -> None:
    assert parse_max_array_size("MaxJobCount             = 100000\n") is None
    assert parse_max_array_size("") is None


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_the_real_max_array_size_is_asked_once_through_the_call_budget(config: Config
                                                                         ) -> None:
    """Every Slurm call is counted and paced (issue 19), the cluster's limits too: asked
    through the backend, once per process."""
    from baton.slurm import sbatch

    sbatch._max_array_size = None  # this process' cache, from an earlier test
    backend = make_backend(config, "sbatch", "run")
    assert isinstance(backend, SbatchBackend)
    shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                           check=True).stdout
    assert backend.max_array_size() == parse_max_array_size(shown)
    assert backend.max_array_size() == parse_max_array_size(shown)
    assert read_calls(config.state_dir) == {("scontrol", "run"): 1}
