"""The dagster.yaml of a Dagster instance baton configures itself (the demo's, the tests'
and the drills'): what it must say for baton's promise of one submission per signal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunMonitoring:
    """Dagster's run monitoring, as baton sets it on an instance it configures: a run whose
    process died (a killed daemon, a reboot) is failed once it has been starting for
    ``start_timeout_seconds`` or running for ``max_runtime_seconds`` (baton's runs submit
    and return), which frees its slot in the run queue and lets the sensor that asked for
    it ask again (see docs/operator/dagster-settings.md)."""

    start_timeout_seconds: int
    max_runtime_seconds: int
    poll_interval_seconds: int


# the demo's runs start in seconds on a laptop; a killed one is retried within minutes
DEMO_MONITORING = RunMonitoring(start_timeout_seconds=120, max_runtime_seconds=600,
                                poll_interval_seconds=15)


def dagster_instance_yaml(monitoring: RunMonitoring) -> str:
    """The dagster.yaml of an instance baton configures (the demo's, the tests'):
    telemetry off, run monitoring on."""
    return ("telemetry:\n  enabled: false\n"
            "run_monitoring:\n  enabled: true\n"
            f"  start_timeout_seconds: {monitoring.start_timeout_seconds}\n"
            f"  max_runtime_seconds: {monitoring.max_runtime_seconds}\n"
            f"  poll_interval_seconds: {monitoring.poll_interval_seconds}\n"
            "  max_resume_run_attempts: 0\n")
