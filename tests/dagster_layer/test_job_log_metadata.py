"""Each job's stdout and stderr are one click away in the Dagster UI: their paths (as the
ledger holds them) are path metadata of the stage's asset events and of its failures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from dagster import MetadataValue

from tests.dagster_layer.test_asset_checks import (
    evaluation_sensor,
    join,
    materialized,
    requests_of,
    training_sensor,
)
from tests.e2e.harness import InProcess, per_signal

pytestmark = pytest.mark.slow


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(InProcess(tmp_path, **per_signal(kwargs)))


def _logs_of(site: InProcess, experiment: str) -> dict[str, MetadataValue]:
    """What the metadata should say: the ledger's paths, under ``stdout``/``stderr`` for
    one job and ``stdout JOBID``/``stderr JOBID`` for each of several."""
    rows = site.ledger.jobs(experiment=experiment, stage="evaluation")
    one = len(rows) == 1
    return {(kind if one else f"{kind} {r.job_id}"): MetadataValue.path(getattr(r, f"{kind}_path"))
            for r in rows for kind in ("stdout", "stderr")}


def _submit(site: InProcess) -> object:
    [req] = requests_of(site.tick(training_sensor))
    run = site.run(req, training_sensor)
    assert run.success  # type: ignore[attr-defined]
    return run


def test_job_logs_are_in_the_materializations(make_site: Callable[..., InProcess]) -> None:
    site = make_site()
    step = site.checkpoint("exp1", 100)
    site.train("exp1", checkpoints=[step])  # two tasks: an array of two jobs
    [submitted] = materialized(_submit(site), "evaluation_job")
    expected = _logs_of(site, "exp1")
    assert len(expected) == 4 and all(" " in k for k in expected)
    assert {k: v for k, v in submitted.metadata.items() if k.startswith("std")} == expected
    run = site.run(join(site, "exp1"), evaluation_sensor)
    [metrics] = materialized(run, "evaluation_metrics")
    assert {k: v for k, v in metrics.metadata.items() if k.startswith("std")} == expected
    assert all(Path(v.value).is_file() for v in expected.values())  # the jobs wrote them


def test_job_logs_are_in_the_failure(make_site: Callable[..., InProcess]) -> None:
    site = make_site(extra_env={"FAKE_EVAL_FAIL": "nothing"})
    site.train("nothing")
    [submitted] = materialized(_submit(site), "evaluation_job")
    expected = _logs_of(site, "nothing")
    assert set(expected) == {"stdout", "stderr"}
    assert {k: submitted.metadata[k] for k in expected} == expected
    run = site.run(join(site, "nothing"), evaluation_sensor)
    assert not run.success
    [failure] = run.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    assert data is not None
    assert {k: data.metadata[k] for k in ("stdout", "stderr")} == expected
    # the job's own account of its end, where the metadata points
    assert "ended with exit code 1" in Path(expected["stdout"].value).read_text()
