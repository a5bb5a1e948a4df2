"""``baton plan`` and the dry run show a retrain's evaluation as it will run: its script
exports the generation the new training signal will be (the next one while the ledger has
not accepted it, its own once it has), not the first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from baton.config import Config
from baton.inbox import publish
from baton.ledger import open_ledger
from baton.ledger.training import apply_training_signal
from baton.pipeline.plan import make_plan
from baton.signals import TrainingComplete, read_signal


def _exported(plan: object) -> str:
    [sub] = plan.submissions  # type: ignore[attr-defined]
    assert sub.rendered is not None, sub.problem
    return next(line for line in sub.rendered.script.splitlines()
                if "BATON_GENERATION=" in line)


def test_the_plan_of_a_retrain_exports_its_generation(config: Config) -> None:
    ledger = open_ledger(config.ledger_url, init=True)
    final = config.drive.experiment("exp1").final_dir
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"\1")
    start = datetime.now(UTC)

    def train(n: int) -> Path:
        return publish(config.drive, TrainingComplete(
            timestamp=start + timedelta(seconds=n), experiment="exp1", hostname="h",
            user="u", checkpoint_path=str(final)))

    assert ledger.accept_signal(read_signal(train(0), config.drive), apply_training_signal)
    retrained = train(1)
    assert _exported(make_plan(config, [retrained], ledger)) == "export BATON_GENERATION=2"
    assert ledger.accept_signal(read_signal(retrained, config.drive), apply_training_signal)
    assert _exported(make_plan(config, [retrained], ledger)) == "export BATON_GENERATION=2"
    assert _exported(make_plan(config, [retrained])) == "export BATON_GENERATION=1"  # no ledger
    ledger.close()


def test_the_plan_names_the_signal_each_task_answers(config: Config) -> None:
    """The planned script is the one the daemon would submit: with its trigger lines."""
    final = config.drive.experiment("exp1").final_dir
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"\1")
    sf = read_signal(publish(config.drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment="exp1", hostname="h", user="u",
        checkpoint_path=str(final))), config.drive)
    ledger = open_ledger(config.ledger_url, init=True)
    [sub] = make_plan(config, [sf.path], ledger).submissions
    assert sub.rendered is not None, sub.problem
    assert (f"# baton-trigger: task=0 generation=1 signal={sf.idempotency_key} "
            f"time={sf.signal.timestamp.isoformat()}") in sub.rendered.script.splitlines()
    ledger.close()


def test_the_plan_shows_what_the_daemon_would_hold(config: Config) -> None:
    """A ledger that does not know the drive's results of an experiment: the daemon holds
    it (submits nothing), and so does its plan, saying why; the others are planned."""
    for name in ("old", "new"):
        final = config.drive.experiment(name).final_dir
        final.mkdir(parents=True)
        (final / "model.safetensors").write_bytes(b"\1")
    paths = [publish(config.drive, TrainingComplete(
        timestamp=datetime.now(UTC), experiment=name, hostname="h", user="u",
        checkpoint_path=str(config.drive.experiment(name).final_dir)))
        for name in ("old", "new")]
    done = config.drive.experiment("old").eval_complete_signal  # results of a lost ledger
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("{}")
    ledger = open_ledger(config.ledger_url, init=True)
    plan = make_plan(config, paths, ledger)
    [sub] = plan.submissions
    assert [t.experiment for t in sub.tasks] == ["new"]
    assert any(n.startswith("old: held: the drive has results the ledger does not know")
               for n in plan.notes), plan.notes
    ledger.close()
