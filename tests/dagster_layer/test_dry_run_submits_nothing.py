"""``sensors.dry_run: true``: the daemon's submission run says what it would submit (its
log and an asset observation with the array, resources and script) and submits nothing:
no sbatch (the local backend holds no job), no claim or job in the ledger, and no
materialization of a job that does not exist. The run succeeds."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import PER_SIGNAL, InProcess


def test_dry_run_records_would_submit_and_submits_nothing(tmp_path: Path,
                                                          ledger_url: str) -> None:
    with InProcess(tmp_path, sensors={"dry_run": "true", **PER_SIGNAL},
                   extra_env={"BATON_DATABASE_URL": ledger_url}) as site:
        assert site.config.sensors.dry_run and site.config.ledger_url == ledger_url
        step = site.checkpoint("dry", 100)
        site.train("dry", checkpoints=[step])
        [request] = site.tick("training_sensor").run_requests
        run = site.run(request, "training_sensor")
        assert run.success
        assert run.get_asset_materialization_events() == []  # no job: nothing materialized
        [event] = run.get_asset_observation_events()
        observation = event.asset_observation_data.asset_observation
        assert (observation.asset_key.to_user_string(), observation.partition) == \
            ("evaluation_job", "dry")
        meta = {k: v.value for k, v in observation.metadata.items()}
        final = str(site.drive.experiment("dry").final_dir)
        assert meta["dry_run"] is True and meta["would_submit"] == [final, step]
        assert meta["array"] == "0-1%10" and meta["mem"] == "200M"
        assert "#SBATCH --array=0-1%10" in meta["script"]
        messages = [e.user_message for e in site.instance.all_logs(run.run_id)]
        assert any("dry: dry run (sensors.dry_run): would submit evaluation of "
                   f"{final}, {step}; nothing was submitted" in m for m in messages), messages
        jobs = site.config.state_dir / "local-slurm" / "jobs"
        assert not jobs.exists() or list(jobs.iterdir()) == []  # sbatch never called
        assert site.ledger.jobs() == []  # nothing claimed, nothing recorded
        assert site.ledger.evaluation_tasks("dry") == []
        assert not (site.drive.logs / "scripts" / "evaluation" / "_arrays").exists() or \
            list((site.drive.logs / "scripts" / "evaluation" / "_arrays").iterdir()) == []


def test_range_runs_observe_each_partition_in_a_dry_run_and_materialize_each_otherwise(
        tmp_path: Path, ledger_url: str) -> None:
    """A backfill's single run over two partitions: one array and both partitions
    materialized for real; two observations and no job in a dry run."""
    range_tags = {"dagster/asset_partition_range_start": "r1",
                  "dagster/asset_partition_range_end": "r2"}
    for dry in (False, True):
        site_dir = tmp_path / str(dry)
        site_dir.mkdir()
        with InProcess(site_dir, sensors={"dry_run": str(dry).lower(), **PER_SIGNAL},
                       extra_env={"BATON_DATABASE_URL": ledger_url}) as site:
            if not dry:  # one ledger for both sites: it starts empty
                assert site.ledger.jobs() == []
            for exp in ("r1", "r2"):
                site.train(exp)
            site.tick("training_sensor")  # registers the partitions and the models
            run = site.materialize(["evaluation_job"], None, tags=range_tags)
            assert run.success
            materialized = sorted(e.partition for e in run.get_asset_materialization_events())
            observed = sorted(e.asset_observation_data.asset_observation.partition
                              for e in run.get_asset_observation_events())
            jobs = [(j.experiment, j.job_id) for j in site.ledger.jobs()
                    if j.experiment in ("r1", "r2")]
            if dry:
                assert (materialized, observed) == ([], ["r1", "r2"])
                assert len(jobs) == 2  # the real site's array only: the dry run added none
            else:
                assert (materialized, observed) == (["r1", "r2"], [])
                assert [e for e, _ in jobs] == ["r1", "r2"]
                assert len({job_id.split("_")[0] for _, job_id in jobs}) == 1  # one array
