"""The campaign progress (``baton_campaign_*``, ``baton_progress_tasks``) as running totals:
each experiment's contribution (its finished and implied tasks per campaign, and its rows
of the progress table when the table shows it) is kept, and a computation redoes only the
experiments whose rows changed since the last one, subtracting what each contributed and
adding what it contributes now. An experiment can change after all of its jobs settled
(a retrain adds a generation and checkpoints, a repair a new attempt), so its contribution
is replaced, never added to.

Which experiments changed comes from the rows read by the folds of
:mod:`baton.exporter.folds`: the job rows above the mark or not yet settled (the job fold's
own reads, at no extra cost) and the training runs, generations and checkpoints above
theirs. A change no id tells (a row rewritten by hand, rows archived) is caught by the
periodic full recomputation, which builds this fold from scratch like the others."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection

from baton.exporter.dashboard import dashboard_state
from baton.ledger import Ledger
from baton.ledger.campaigns import CampaignProgress, Entries

# one experiment's (campaign, finished, implied) per campaign it has tasks in
Part = tuple[tuple[str, int, int], ...]
Keep = Callable[[Entries, Collection[str]], bool]


class ProgressFold:
    """Every experiment's part of the campaign progress, replaced when it changes."""

    def __init__(self, ledger: Ledger, keep: Keep) -> None:
        self.ledger, self.keep = ledger, keep
        self.redone = 0  # experiments read again by the last computation (for tests)
        self._clear()

    def _clear(self) -> None:
        self.parts: dict[str, Part] = {}
        self.kept: dict[str, Entries] = {}  # the experiments the progress table shows
        self.finished: Counter[str] = Counter()
        self.implied: Counter[str] = Counter()
        self.active: frozenset[str] | None = None  # the active campaigns kept for

    def compute(self, changed: Collection[str] | None, active: Collection[str]
                ) -> CampaignProgress:
        """The progress now. ``changed``: the experiments whose rows changed since the last
        computation (None: all, from scratch); ``active``: the active campaigns, whose
        experiments the progress table shows."""
        active = frozenset(active)
        if changed is None or self.active is None:
            self._clear()
            wanted: set[str] | None = None
        else:
            flipped = active ^ self.active  # an experiment of these may show or hide now
            wanted = set(changed) | {e for e, part in self.parts.items()
                                     if any(camp in flipped for camp, _, _ in part)}
        self.active = active
        seen: set[str] = set()
        try:
            for experiment, entries in self.ledger.experiment_entries(dashboard_state, wanted):
                seen.add(experiment)
                self._replace(experiment, entries)
        except Exception:
            self.active = None  # half replaced: the next computation starts from scratch
            raise
        for experiment in (wanted or set()) - seen:  # no job and no run left
            self._replace(experiment, {})
        self.redone = len(seen)
        tasks = {(camp, exp, stage): p for exp, entries in self.kept.items()
                 for (camp, stage), p in entries.items()}
        return CampaignProgress(tasks, +self.finished, +self.implied)

    def _replace(self, experiment: str, entries: Entries) -> None:
        for camp, finished, implied in self.parts.pop(experiment, ()):
            self.finished[camp] -= finished
            self.implied[camp] -= implied
        self.kept.pop(experiment, None)
        if not entries:
            return
        part: dict[str, tuple[int, int]] = {}
        for (camp, _), p in entries.items():
            finished, implied = part.get(camp, (0, 0))
            part[camp] = (finished + p.states["finished"],
                          implied + max(p.expected, p.states.total()))
        self.parts[experiment] = tuple((c, f, i) for c, (f, i) in part.items())
        for camp, (finished, implied) in part.items():
            self.finished[camp] += finished
            self.implied[camp] += implied
        assert self.active is not None
        if self.keep(entries, self.active):
            self.kept[experiment] = entries
