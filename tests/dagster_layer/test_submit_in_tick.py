"""``sensors.submit_in_tick`` (the default): the training sensor submits the evaluations of
the signals it accepts in its own tick, as one array, without a run (issue 15); every
partition still gets its ``evaluation_job`` event, and a daemon that dies mid-tick loses
nothing and submits nothing twice. The code location runs in process on the local Slurm
backend (tests/e2e/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter

from baton.pipeline.keys import UNDER_WAY
from tests.dagster_layer.test_batch_tick import experiments_of, materialized, requests_of
from tests.e2e.harness import InProcess

pytestmark = pytest.mark.slow

NAMES = ["t1", "t2", "t3"]


def confirmed(site: InProcess) -> set[str]:
    keys = set(site.ledger.fact_keys("run_requested"))
    return {exp for exp in NAMES if
            f"run:evaluation_job:{site.ledger.training_run(exp).signal_key}" in keys}


def events_of(site: InProcess) -> list:
    return site.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("evaluation_job")), limit=100).records


def trained(site: InProcess) -> None:
    for exp in NAMES:
        site.train(exp, checkpoints=[site.checkpoint(exp, 50)] if exp == "t1" else None)


def test_the_tick_submits_one_array_and_confirms_its_events_once_stored(
        tmp_path: Path) -> None:
    with InProcess(tmp_path) as site:
        trained(site)
        result = site.tick("training_sensor")
        assert requests_of(result) == []  # no run
        jobs = site.ledger.jobs(stage="evaluation")
        assert len(jobs) == 4 and len({j.array_job_id for j in jobs}) == 1  # t1: 2 ckpts
        assert materialized(site, "evaluation_job") == set(NAMES)
        by_exp = {r.partition_key: r.asset_materialization.metadata for r in events_of(site)}
        assert by_exp["t1"]["tasks"].value == 2 and by_exp["t1"]["submitted_now"].value
        assert confirmed(site) == set()  # emitted: not yet known to be stored
        again = site.tick("training_sensor")
        assert requests_of(again) == [] and not getattr(again, "asset_events", None)
        assert confirmed(site) == set(NAMES)
        assert site.ledger.facts_unanswered(UNDER_WAY, "under_way:", "run:") == []
        assert len(events_of(site)) == 3 and site.instance.get_runs() == []


def test_events_a_dying_daemon_never_stored_are_emitted_again_not_resubmitted(
        tmp_path: Path) -> None:
    with InProcess(tmp_path) as site:
        trained(site)
        lost = site.tick("training_sensor", apply=False)  # died before storing the events
        assert len(lost.asset_events) >= 3 and materialized(site, "evaluation_job") == set()
        ids = sorted(j.job_id for j in site.ledger.jobs(stage="evaluation"))
        again = site.tick("training_sensor")
        assert requests_of(again) == []
        assert sorted(j.job_id for j in site.ledger.jobs(stage="evaluation")) == ids
        assert materialized(site, "evaluation_job") == set(NAMES)
        assert not any(r.asset_materialization.metadata["submitted_now"].value
                       for r in events_of(site))  # the repeat submitted nothing
        site.tick("training_sensor")
        assert confirmed(site) == set(NAMES) and len(events_of(site)) == 3


def test_a_daemon_dead_before_its_claims_leaves_the_requests_to_a_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sensors.tick_submission

    def dies(*args: object, **kwargs: object) -> None:
        raise SystemExit("the daemon died here, its facts written, nothing claimed")

    with InProcess(tmp_path) as site:
        trained(site)
        monkeypatch.setattr(sensors.tick_submission, "submit_evaluations", dies)
        with pytest.raises(SystemExit):
            site.tick("training_sensor")
        monkeypatch.undo()
        assert site.ledger.jobs(stage="evaluation") == []
        [request] = requests_of(site.tick("training_sensor"))  # not new: a run answers
        assert (request.job_name, experiments_of(request)) == ("submit_evaluations", NAMES)
        assert site.run(request, "training_sensor").success
        assert materialized(site, "evaluation_job") == set(NAMES)
        assert confirmed(site) == set(NAMES)
        assert site.ledger.facts_unanswered(UNDER_WAY, "under_way:", "run:") == []
        assert requests_of(site.tick("training_sensor")) == []
        assert len(site.ledger.jobs(stage="evaluation")) == 4


def test_a_dry_run_and_a_refused_request_keep_their_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request the checks refuse (its checkpoint deleted after the tick accepted its
    signal) is left to a run, which fails naming it where the UI shows it; the others are
    submitted by the tick. A dry run is a run's, which observes what it would submit."""
    import shutil

    import sensors.tick_submission

    real = sensors.tick_submission.refusals

    def deleted_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        shutil.rmtree(site.drive.experiment("t1").checkpoint(50))
        return real(*args, **kwargs)

    with InProcess(tmp_path) as site:
        trained(site)
        monkeypatch.setattr(sensors.tick_submission, "refusals", deleted_meanwhile)
        [request] = requests_of(site.tick("training_sensor"))
        monkeypatch.undo()
        assert experiments_of(request) == ["t1"]
        assert sorted({j.experiment for j in site.ledger.jobs(stage="evaluation")}) == \
            ["t2", "t3"]
        assert materialized(site, "evaluation_job") == {"t2", "t3"}
        assert not site.run(request, "training_sensor").success
    with InProcess(tmp_path / "dry", sensors={"dry_run": "true"}) as site:
        trained(site)
        [request] = requests_of(site.tick("training_sensor"))
        assert experiments_of(request) == NAMES and site.ledger.jobs() == []


def test_a_run_that_died_after_its_sbatch_has_its_events_emitted_by_the_tick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same net under a batch run (``submit_in_tick: false``): a run killed after
    Slurm accepted its array but before its events were stored left the evaluations
    submitted and no ``evaluation_job`` event, and no request due to bring it (found by
    the SIGKILL drill, tests/e2e/test_e2e_sigkill.py). The next tick emits them, from the
    same submission: nothing is submitted again."""
    import assets.batches

    real = assets.batches.submit_stage

    def dies_after_sbatch(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        raise SystemExit("the run's process died here, after sbatch")

    with InProcess(tmp_path, sensors={"submit_in_tick": "false"}) as site:
        trained(site)
        [submit] = requests_of(site.tick("training_sensor"))
        monkeypatch.setattr(assets.batches, "submit_stage", dies_after_sbatch)
        assert not site.run(submit, "training_sensor").success
        monkeypatch.undo()
        ids = sorted(j.job_id for j in site.ledger.jobs(stage="evaluation"))
        assert len(ids) == 4 and materialized(site, "evaluation_job") == set()
        assert requests_of(site.tick("training_sensor")) == []  # answered by its tasks
        assert materialized(site, "evaluation_job") == set(NAMES)
        assert sorted(j.job_id for j in site.ledger.jobs(stage="evaluation")) == ids
        site.tick("training_sensor")
        assert confirmed(site) == set(NAMES)
        assert site.ledger.facts_unanswered(UNDER_WAY, "under_way:", "run:") == []
