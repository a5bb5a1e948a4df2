"""A Dagster run opens the ledger its configuration names and never creates one: pointed at
a missing ledger, the run fails saying which URL and what to run, and leaves no file."""

from __future__ import annotations

from pathlib import Path


def test_a_run_against_a_missing_ledger_fails_and_creates_nothing(tmp_path: Path) -> None:
    import definitions
    from baton.config import load_config

    config = load_config(None, {"SHARED_DRIVE": str(tmp_path / "drive"),
                                "BATON_STATE_DIR": str(tmp_path / "state")})
    missing = tmp_path / "nowhere" / "ledger.db"
    job = definitions.build_definitions(config).resolve_job_def("cancel_jobs")
    result = job.execute_in_process(run_config={
        "ops": {"cancel_slurm_jobs": {"config": {"experiments": ["x"]}}},
        "resources": {"ledger": {"config": {"url": f"sqlite:///{missing}"}},
                      "slurm": {"config": {"backend": "local"}}}}, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error, messages = failure.step_failure_data.error, []
    while error is not None:  # Dagster wraps the op's error: the chain holds ours
        messages.append(error.message)
        error = error.cause
    message = "\n".join(messages)
    assert f"ledger sqlite:///{missing}: " in message and "baton db init" in message
    assert not missing.parent.exists()
