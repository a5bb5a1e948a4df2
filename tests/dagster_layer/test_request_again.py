"""A request whose run ended without success is asked for again, under a new run key; one
whose claim is still being submitted waits; one whose run succeeded is done. Through the
training sensor and real runs of `submit_evaluation` (local backend): the run fails for
real, its checkpoint gone when it starts."""

from __future__ import annotations

import shutil
from pathlib import Path

from dagster import DagsterRunStatus, RunRequest, RunsFilter

from baton.pipeline.keys import evaluation_key
from sensors.once import REQUEST_TAG
from tests.e2e.harness import PER_SIGNAL, InProcess


def asked(site: InProcess) -> list[RunRequest]:
    """The run requests of one tick of the training sensor."""
    return list(site.tick("training_sensor").run_requests or [])


def test_failed_run_is_requested_again_until_one_succeeds(tmp_path: Path,
                                                           ledger_url: str) -> None:
    with InProcess(tmp_path, extra_env={"BATON_DATABASE_URL": ledger_url},
                   sensors=PER_SIGNAL) as site:
        site.train("again")
        [first] = asked(site)
        key = first.run_key
        assert first.tags[REQUEST_TAG] == key
        final = site.drive.experiment("again").final_dir
        kept = tmp_path / "kept"
        shutil.move(final, kept)  # the run fails before it claims anything
        assert not site.run(first, "training_sensor").success
        assert site.ledger.jobs(experiment="again") == []

        [second] = asked(site)
        assert (second.run_key, second.tags[REQUEST_TAG]) == (f"{key}#2", key)
        assert second.partition_key == "again"
        assert not site.run(second, "training_sensor").success

        # a claim still being submitted (its submitter died): wait for the tracker
        run = site.ledger.training_run("again")
        claim = site.ledger.claim_submission(
            evaluation_key("again", run.signal_key, run.checkpoint_path), stage="evaluation",
            experiment="again", backend="local")
        assert asked(site) == []
        site.ledger.mark_submit_failed(claim.row_id, "no queued job carries its token")

        shutil.move(kept, final)
        [third] = asked(site)
        assert (third.run_key, third.tags[REQUEST_TAG]) == (f"{key}#3", key)
        assert site.run(third, "training_sensor").success
        [job] = site.ledger.jobs(experiment="again")
        assert (job.id, job.state != "SUBMIT_FAILED", bool(job.job_id)) == (
            claim.row_id, True, True)  # the failed claim, claimed again and submitted

        assert asked(site) == []  # done
        assert [t.slurm_job_row for t in site.ledger.evaluation_tasks("again")] == [job.id]
        runs = site.instance.get_run_records(RunsFilter(tags={REQUEST_TAG: key}))
        assert sorted(r.dagster_run.status.value for r in runs) == [
            DagsterRunStatus.FAILURE.value, DagsterRunStatus.FAILURE.value,
            DagsterRunStatus.SUCCESS.value]


def test_request_gives_up_after_five_failed_runs(tmp_path: Path) -> None:
    with InProcess(tmp_path, sensors=PER_SIGNAL) as site:
        site.train("doomed")
        [request] = asked(site)
        shutil.rmtree(site.drive.experiment("doomed").final_dir)
        keys = []
        while request is not None:
            keys.append(request.run_key)
            assert not site.run(request, "training_sensor").success
            requests = asked(site)
            assert len(requests) <= 1
            request = requests[0] if requests else None
        key = keys[0]
        assert keys == [key] + [f"{key}#{n}" for n in range(2, 6)]
        assert site.ledger.has_fact(f"run:{key}")
        assert asked(site) == []
