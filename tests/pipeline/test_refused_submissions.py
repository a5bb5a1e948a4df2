"""A submission refused for its input leaves nothing behind: no ledger row, no campaign, no
script; a claim whose sbatch never ran is released at once; the corrected retry submits.
This is the path every submitter shares (``baton slurm submit --stage``, the Dagster asset
jobs, the supervisor's repairs)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from baton.config import Config
from baton.errors import BatonError
from baton.ledger import Ledger
from baton.pipeline.submission import submit_jobs
from baton.slurm.local import LocalBackend

BAD_NAMES = ["../etc", "x$(id)", "-rf", "x" * 200, ""]


def checkpoint(cfg: Config, experiment: str) -> str:
    final = cfg.drive.experiment(experiment).final_dir
    final.mkdir(parents=True, exist_ok=True)
    (final / "model.safetensors").write_bytes(b"\0" * 64)
    return str(final)


def scripts(cfg: Config) -> list[Path]:
    return [p for p in (cfg.drive.logs / "scripts").rglob("*") if p.is_file()]


def assert_nothing_left(cfg: Config, ledger: Ledger) -> None:
    assert [(r.submission_key, r.state) for r in ledger.jobs()] == []
    assert ledger.list_campaigns() == []
    assert scripts(cfg) == []


def refused(cfg: Config, ledger: Ledger, backend: LocalBackend, items: list[tuple[str, str]],
            **kwargs: Any) -> str:
    with pytest.raises(BatonError) as info:
        submit_jobs(cfg, ledger, backend, "evaluation", items, campaign="first-week", **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_experiment_name_claims_nothing(cfg: Config, ledger: Ledger,
                                              backend: LocalBackend, name: str) -> None:
    good = checkpoint(cfg, "good")
    message = refused(cfg, ledger, backend, [(name, good)])
    assert "not allowed" in message
    assert_nothing_left(cfg, ledger)
    # one bad task of an array refuses the whole array, before any claim
    refused(cfg, ledger, backend, [("good", good), (name, good)])
    assert_nothing_left(cfg, ledger)


@pytest.mark.parametrize(("where", "says"), [
    ("/etc", "outside the shared drive"),
    ("{drive}/models/good/../../../etc", "outside the shared drive"),
    ("{drive}/models/good/no-such-checkpoint", "does not exist"),
    ("", "needs a checkpoint"),
])
def test_a_bad_checkpoint_claims_nothing(cfg: Config, ledger: Ledger, backend: LocalBackend,
                                         where: str, says: str) -> None:
    checkpoint(cfg, "good")
    message = refused(cfg, ledger, backend, [("good", where.format(drive=cfg.drive.root))])
    assert says in message
    assert_nothing_left(cfg, ledger)


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"mem": "lots"}, "invalid memory 'lots'"),
    ({"mem": "0"}, "all of a node's memory"),
    ({"mem": "1.5G"}, "whole number"),
    ({"time": "0"}, "no limit"),
    ({"time": "-1"}, "invalid time '-1'"),
    ({"attempt": 0}, "attempt 0"),
    ({"attempt": -2}, "attempt -2"),
])
def test_bad_resources_or_attempt_claim_nothing_and_the_corrected_retry_submits(
        cfg: Config, ledger: Ledger, backend: LocalBackend, kwargs: dict[str, Any],
        says: str) -> None:
    ckpt = checkpoint(cfg, "exp1")
    assert says in refused(cfg, ledger, backend, [("exp1", ckpt)], **kwargs)
    assert_nothing_left(cfg, ledger)
    again = submit_jobs(cfg, ledger, backend, "evaluation", [("exp1", ckpt)])
    assert again[0].submitted_now and again[0].job_id
    assert [r.state for r in ledger.jobs()] == ["PENDING"]


def test_a_claim_whose_sbatch_never_ran_is_released(cfg: Config, ledger: Ledger,
                                                    backend: LocalBackend) -> None:
    """The audit copy of the script cannot be written: nothing reached Slurm, so the claim
    is given back (not left SUBMITTING, not counted as a submit failure)."""
    ckpt = checkpoint(cfg, "exp1")
    blocker = cfg.drive.logs / "scripts" / "evaluation"
    blocker.write_text("a file where the scripts folder belongs")
    with pytest.raises(BatonError, match="exp1") as info:
        submit_jobs(cfg, ledger, backend, "evaluation", [("exp1", ckpt)])
    assert str(blocker) in str(info.value)
    assert ledger.jobs() == []
    assert backend.queue_states() == {}
    blocker.unlink()
    again = submit_jobs(cfg, ledger, backend, "evaluation", [("exp1", ckpt)])
    assert again[0].submitted_now and again[0].job_id


def test_the_log_folder_is_made_before_the_job_is_submitted(cfg: Config, ledger: Ledger,
                                                            backend: LocalBackend) -> None:
    ckpt = checkpoint(cfg, "exp1")
    shutil.rmtree(cfg.drive.logs)
    out = submit_jobs(cfg, ledger, backend, "evaluation", [("exp1", ckpt)])[0]
    assert (cfg.drive.logs / "evaluation").is_dir()
    assert Path(ledger.job(out.row_id).stdout_path).parent == cfg.drive.logs / "evaluation"


def test_a_log_folder_that_cannot_be_made_refuses_the_submission(
        cfg: Config, ledger: Ledger, backend: LocalBackend) -> None:
    ckpt = checkpoint(cfg, "exp1")
    shutil.rmtree(cfg.drive.logs / "evaluation")
    (cfg.drive.logs / "evaluation").write_text("not a folder")
    message = refused(cfg, ledger, backend, [("exp1", ckpt)])
    assert f"cannot create {cfg.drive.logs / 'evaluation'}" in message
    assert_nothing_left(cfg, ledger)


def test_a_missing_drive_is_refused_and_not_created(cfg: Config, ledger: Ledger,
                                                    backend: LocalBackend) -> None:
    gone = cfg.model_copy(update={"shared_drive": cfg.shared_drive.parent / "unmounted"})
    with pytest.raises(BatonError, match="does not exist"):
        submit_jobs(gone, ledger, backend, "analysis", [("exp1", "")])
    assert not gone.shared_drive.exists()
    assert ledger.jobs() == []
