"""The campaign control plane: registration on first sight, unknown types kept and counted
without blocking anything, curator commands, progress and completion, and its metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.core import CollectorRegistry, Metric
from sqlalchemy import delete, update

from baton.config import CampaignConfig, Config, load_config
from baton.errors import BatonError, ConfigError
from baton.exporter.control import active_campaigns, campaign_metrics, whole_progress
from baton.exporter.dashboard import dashboard_state
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.ledger.campaigns import completion
from baton.ledger.schema import campaigns, evaluation_jobs
from baton.pipeline.scan import Scanner
from baton.pipeline.steps import submit_analyses, submit_evaluations
from baton.pipeline.submission import submit_jobs
from baton.signals import TrainingComplete
from baton.slurm.local import LocalBackend
from baton.slurm.states import JobStatus
from tests.core.test_cli import baton


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:
    return open_ledger(ledger_url, init=True)


def trained(drive: DriveLayout, exp: str, campaign: str | None, type_: str | None = None,
            extra: int = 0) -> TrainingComplete:
    final = drive.experiment(exp).final_dir
    final.mkdir(parents=True, exist_ok=True)
    (final / "model.safetensors").write_bytes(b"x")
    ckpts = []
    for i in range(extra):
        c = drive.experiment(exp).checkpoints_dir / f"step_{i}"
        c.mkdir(parents=True, exist_ok=True)
        (c / "model.safetensors").write_bytes(b"x")
        ckpts.append(str(c))
    return TrainingComplete(timestamp=datetime.now(UTC), experiment=exp, hostname="h",
                            user="u", checkpoint_path=str(final), campaign=campaign,
                            campaign_type=type_, checkpoints=ckpts or None)


def scan(drive: DriveLayout, ledger: Ledger, *signals: TrainingComplete) -> list[str]:
    for s in signals:
        publish(drive, s)
    tick = Scanner(drive, ledger, debounce_seconds=0).tick(["training_complete"])
    return [sf.signal.experiment for sf in tick.accepted]


def test_a_campaign_registers_once_inactive_on_its_first_signal(
        drive: DriveLayout, ledger: Ledger) -> None:
    assert scan(drive, ledger, trained(drive, "a1", "lr-sweep"),
                trained(drive, "a2", "lr-sweep"), trained(drive, "b1", None)) == [
        "a1", "a2", "b1"]
    rows = ledger.list_campaigns()
    assert [(r.tag, r.type, r.active, r.priority) for r in rows] == [
        ("lr-sweep", "default", False, 0)]
    assert "a1" in rows[0].registered_by  # the signal that named it first
    assert ledger.list_campaigns(active_only=True) == []


def test_an_unknown_type_is_recorded_counted_and_blocks_nothing(
        drive: DriveLayout, ledger: Ledger) -> None:
    accepted = scan(drive, ledger, trained(drive, "x1", "moonshot", "exotic"),
                    trained(drive, "x2", "moonshot", "exotic"))
    assert accepted == ["x1", "x2"]  # the signals went through ...
    assert sorted(r.experiment_name for r in ledger.training_awaiting_evaluation()) == [
        "x1", "x2"]  # ... on to their evaluation
    assert ledger.list_campaigns() == []  # not registered under a type nobody declared
    [u] = ledger.unknown_types_seen()
    assert (u.type, u.tag, u.occurrences) == ("exotic", "moonshot", 2)
    assert "x2" in (u.source or "")
    # once the type is declared, the next signal registers it
    cfg = CampaignConfig(types=["default", "exotic"])
    assert ledger.note_campaign("moonshot", "exotic", "signal x3", cfg) == "registered"
    assert [(r.tag, r.type) for r in ledger.list_campaigns()] == [("moonshot", "exotic")]


def test_a_job_registers_its_campaign_under_its_known_type(ledger: Ledger) -> None:
    cfg = CampaignConfig()
    assert ledger.note_campaign("abl", "ablation", "signal s", cfg) == "registered"
    assert ledger.note_campaign("abl", None, "evaluation job of e", cfg) == "known"
    assert ledger.note_campaign("new", None, "evaluation job of f", cfg) == "registered"
    assert ledger.note_campaign(None, None, "job without campaign", cfg) == "none"
    assert {(r.tag, r.type) for r in ledger.list_campaigns()} == {("abl", "ablation"),
                                                                ("new", "default")}


def test_curators_activate_order_and_describe(ledger: Ledger) -> None:
    cfg = CampaignConfig()
    for tag in ("c-low", "c-high", "c-off"):
        ledger.note_campaign(tag, None, "test", cfg)
    ledger.update_campaign("c-low", active=True, priority=5)
    ledger.update_campaign("c-high", active=True, priority=1, display_name="Run 3",
                           notes="pass 1", expected_jobs=10)
    assert [r.tag for r in ledger.list_campaigns(active_only=True)] == ["c-high", "c-low"]
    assert [r.tag for r in ledger.list_campaigns()] == ["c-high", "c-low", "c-off"]
    with pytest.raises(BatonError, match="no campaign 'nope' is registered"):
        ledger.update_campaign("nope", active=True)
    with pytest.raises(BatonError, match="has no type 'sweep'; it has: default"):
        ledger.update_campaign("c-low", "sweep", active=True)
    with pytest.raises(ValueError, match="not editable: registered_at"):
        ledger.update_campaign("c-low", registered_at=datetime.now(UTC))


def _job(ledger: Ledger, exp: str, stage: str, attempt: int, state: str, n: int,
         checkpoint: str = "") -> None:
    claim = ledger.claim_submission(f"{stage}:{exp}:{checkpoint}:{attempt}", stage=stage,
                                    experiment=exp, backend="local", attempt=attempt,
                                    metadata={"checkpoint": checkpoint} if checkpoint else None)
    ledger.mark_submitted(claim.row_id, str(n))
    ledger.apply_statuses({str(n): JobStatus(job_id=str(n), state=state)})


def test_progress_counts_tasks_by_their_latest_attempt(drive: DriveLayout,
                                                       ledger: Ledger) -> None:
    scan(drive, ledger, trained(drive, "p1", "camp", extra=2), trained(drive, "p2", "camp"))
    _job(ledger, "p1", "evaluation", 1, "OUT_OF_MEMORY", 1, "ck-a")
    _job(ledger, "p1", "evaluation", 2, "COMPLETED", 2, "ck-a")  # the repair succeeded
    _job(ledger, "p1", "evaluation", 1, "RUNNING", 3, "ck-b")
    _job(ledger, "p1", "evaluation", 1, "FAILED", 4, "ck-c")
    _job(ledger, "p2", "evaluation", 1, "COMPLETED", 5)
    _job(ledger, "p2", "analysis", 1, "PENDING", 6)
    prog = ledger.campaign_progress(dashboard_state)
    assert prog.tasks[("camp", "p1", "evaluation")].row() == {
        "expected": 3, "submitted": 3, "running": 1, "finished": 1, "failed": 1}
    assert prog.tasks[("camp", "p1", "analysis")].row() == {
        "expected": 1, "submitted": 0, "running": 0, "finished": 0, "failed": 0}
    assert prog.tasks[("camp", "p2", "analysis")].row()["submitted"] == 1
    rows = ledger.list_campaigns()
    assert completion(rows, prog) == {("camp", "default"): (2, 3 + 1 + 1 + 1)}
    [row] = ledger.update_campaign("camp", expected_jobs=4, active=True)
    assert completion([row], prog) == {("camp", "default"): (2, 4)}  # the curator's count


def _samples(ledger: Ledger) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()

    class One:
        def collect(self) -> Iterator[Metric]:
            rows = ledger.list_campaigns()
            return campaign_metrics(ledger, rows,
                                    whole_progress(ledger, active_campaigns(rows)))

    registry.register(One())  # type: ignore[arg-type]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in registry.collect() for s in fam.samples}


def test_metrics_show_active_campaigns_with_priority_and_completion(
        drive: DriveLayout, ledger: Ledger) -> None:
    scan(drive, ledger, trained(drive, "m1", "shown"), trained(drive, "m2", "hidden"),
         trained(drive, "m3", "odd", "exotic"))
    _job(ledger, "m1", "evaluation", 1, "COMPLETED", 11)
    ledger.update_campaign("shown", active=True, priority=2, display_name="Shown")
    s = _samples(ledger)
    key = (("campaign", "shown"), ("type", "default"))
    assert s[("baton_campaign_active", key)] == 1
    assert s[("baton_campaign_active", (("campaign", "hidden"), ("type", "default")))] == 0
    assert s[("baton_campaign_priority", key)] == 2
    assert s[("baton_campaign_completion_ratio", key)] == 0.5  # 1 of evaluation + analysis
    assert s[("baton_campaign_expected_jobs", key)] == 2
    assert not any(n == "baton_campaign_priority" and dict(lb)["campaign"] == "hidden"
                   for n, lb in s)  # only active campaigns are ordered and shown
    assert s[("baton_progress_tasks", (("campaign", "shown"), ("column", "finished"),
                                       ("experiment", "m1"), ("stage", "evaluation")))] == 1
    assert s[("baton_campaign_unknown_type_signals_total", (("type", "exotic"),))] == 1


def test_curator_commands(tmp_path: Path, drive: DriveLayout) -> None:
    env = {"SHARED_DRIVE": str(drive.root), "BATON_STATE_DIR": str(tmp_path / "state"),
           "BATON_CONFIG": ""}
    config: Config = load_config(path=None, env=env)
    ledger = open_ledger(config.ledger_url, init=True)
    scan(drive, ledger, trained(drive, "k1", "lr-sweep"), trained(drive, "k2", "ablate-x",
                                                                  "ablation"),
         trained(drive, "k3", "wild", "exotic"))
    out = baton("campaign", "list", env=env)
    assert out.returncode == 0 and "no active campaigns" in out.stdout
    out = baton("campaign", "list", "--all", env=env).stdout
    assert "lr-sweep" in out and "ablate-x" in out and "wild" not in out
    assert "exotic" in baton("campaign", "list", "--unknown", env=env).stdout
    done = baton("campaign", "activate", "lr-sweep", env=env)
    assert done.returncode == 0 and "lr-sweep (default): active" in done.stdout
    assert baton("campaign", "set", "lr-sweep", "--priority", "3", "--display-name",
                 "LR sweep", "--note", "pass 1", "--expected-end", "2026-12-24",
                 "--expected-jobs", "8", env=env).returncode == 0
    baton("campaign", "activate", "ablate-x", env=env)
    lines = baton("campaign", "list", env=env).stdout.splitlines()
    assert [ln.split()[1] for ln in lines[1:]] == ["ablate-x", "lr-sweep"]  # priority 0, 3
    assert "0/8" in lines[2] and "2026-12-24" in lines[2] and "LR sweep / pass 1" in lines[2]
    assert baton("campaign", "deactivate", "ablate-x", env=env).returncode == 0
    assert len(baton("campaign", "list", env=env).stdout.splitlines()) == 2
    # the control plane is queryable with SQL too
    rows = baton("sql", "SELECT tag, type, active, priority FROM campaigns ORDER BY tag",
                 "--format", "csv", env=env).stdout.split()
    assert rows == ["tag,type,active,priority", "ablate-x,ablation,False,0",
                    "lr-sweep,default,True,3"]
    unknown = baton("sql", "SELECT type, tag, occurrences FROM unknown_campaign_types",
                    "--format", "csv", env=env).stdout.split()
    assert unknown == ["type,tag,occurrences", "exotic,wild,1"]
    bad = baton("campaign", "set", "nope", "--priority", "1", env=env)
    assert bad.returncode == 1 and "no campaign 'nope' is registered" in bad.stderr
    bad = baton("campaign", "set", "lr-sweep", env=env)
    assert bad.returncode == 1 and "nothing to set" in bad.stderr
    bad = baton("campaign", "set", "lr-sweep", "--expected-end", "soon", env=env)
    assert bad.returncode == 2 and "not an ISO 8601" in bad.stderr


def test_a_default_type_that_is_not_declared_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text("campaigns:\n  types: [sweep]\n  default_type: other\n")
    with pytest.raises(ConfigError, match=r"campaigns.*default_type 'other' is not one of"):
        load_config(path, env={})


# --- a job names its campaign, on every submission path ---------------------------------
def _quick(config: Config, ledger: Ledger) -> tuple[Config, LocalBackend]:
    """The stages run ``true`` on the local backend (what they run does not matter)."""
    stages = {name: s.model_copy(update={"command": "true"})
              for name, s in config.stages.items()}
    cfg = config.model_copy(update={"database_url": ledger.url, "stages": stages})
    return cfg, LocalBackend(cfg.state_dir)


def _campaign_of(ledger: Ledger, experiment: str, stage: str) -> list[str | None]:
    return [j.campaign for j in ledger.jobs(experiment=experiment, stage=stage)]


def test_submit_jobs_registers_the_campaign_it_names(config: Config, ledger: Ledger) -> None:
    cfg, backend = _quick(config, ledger)

    def item(exp: str) -> tuple[str, str]:
        final = cfg.drive.experiment(exp).final_dir
        final.mkdir(parents=True)  # a submission refuses a checkpoint that is not there
        return exp, str(final)

    submit_jobs(cfg, ledger, backend, "evaluation", [item("solo")], campaign="x")
    assert [(r.tag, r.type, r.active) for r in ledger.list_campaigns()] == [
        ("x", "default", False)]
    assert _campaign_of(ledger, "solo", "evaluation") == ["x"]
    # an array: each experiment's own campaign, each registered
    submit_jobs(cfg, ledger, backend, "evaluation", [item("a1"), item("b1"), item("n1")],
                campaign={"a1": "camp-a", "b1": "camp-b", "n1": None})
    assert {r.tag for r in ledger.list_campaigns()} == {"x", "camp-a", "camp-b"}
    assert [_campaign_of(ledger, e, "evaluation") for e in ("a1", "b1", "n1")] == [
        ["camp-a"], ["camp-b"], [None]]


def test_evaluations_and_analyses_carry_each_experiment_campaign(
        drive: DriveLayout, config: Config, ledger: Ledger) -> None:
    """A backfill of experiments of two campaigns is one array whose tasks keep their own
    campaigns; so is their analysis."""
    cfg, backend = _quick(config, ledger)
    scan(drive, ledger, trained(drive, "e1", "spring"), trained(drive, "e2", "autumn"),
         trained(drive, "e3", None))
    subs = submit_evaluations(cfg, ledger, backend, ["e1", "e2", "e3"])
    assert len({s.job_ids[0].split("_")[0] for s in subs.values()}) == 1  # one array
    assert [_campaign_of(ledger, e, "evaluation") for e in ("e1", "e2", "e3")] == [
        ["spring"], ["autumn"], [None]]
    with ledger.write() as conn:  # what the evaluation sensor records when they end
        conn.execute(update(evaluation_jobs).values(status="completed"))
    submit_analyses(cfg, ledger, backend, ["e1", "e2", "e3"])
    assert [_campaign_of(ledger, e, "analysis") for e in ("e1", "e2", "e3")] == [
        ["spring"], ["autumn"], [None]]


def test_analysis_registers_a_campaign_not_seen_before(drive: DriveLayout, config: Config,
                                                       ledger: Ledger) -> None:
    """The campaign comes from the training signal; had its registration been lost (it
    never blocks the signal), the analysis job registers it."""
    cfg, backend = _quick(config, ledger)
    scan(drive, ledger, trained(drive, "late", "recovered"))
    with ledger.write() as conn:
        conn.execute(delete(campaigns))
    ledger.record_evaluation_task(experiment="late", trigger_key="sig-late",
                                  checkpoint="", slurm_row=None, job_id=None)
    with ledger.write() as conn:
        conn.execute(update(evaluation_jobs).values(status="completed"))
    submit_analyses(cfg, ledger, backend, ["late"])
    assert [r.tag for r in ledger.list_campaigns()] == ["recovered"]


def test_slurm_submit_campaign(tmp_path: Path, drive: DriveLayout) -> None:
    env = {"SHARED_DRIVE": str(drive.root), "BATON_STATE_DIR": str(tmp_path / "state"),
           "BATON_CONFIG": "", "BATON_SLURM_BACKEND": "local"}
    assert baton("db", "init", env=env).returncode == 0
    proc = baton("slurm", "submit", "--stage", "analysis", "--experiment", "cli-exp",
                 "--campaign", "from-cli", env=env)
    assert proc.returncode == 0, proc.stderr
    ledger = open_ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.db'}")
    assert [r.tag for r in ledger.list_campaigns()] == ["from-cli"]
    assert _campaign_of(ledger, "cli-exp", "analysis") == ["from-cli"]
    bad = baton("slurm", "submit", "--stage", "analysis", "--experiment", "cli-exp",
                "--campaign", "no way", env=env)
    assert bad.returncode == 2 and "campaign 'no way' is not allowed" in bad.stderr
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    refused = baton("slurm", "submit", str(script), "--campaign", "c", env=env)
    assert refused.returncode == 1 and "--campaign is for stage jobs" in refused.stderr
