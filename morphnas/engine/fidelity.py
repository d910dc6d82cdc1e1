"""Multi-fidelity search: successive halving with asynchronous promotion (ASHA; Li et al., MLSys 2020).

``fidelity = "asha"`` turns it on (``"single"``, the default, trains every trial ``max_epochs``). Every new
architecture the strategy suggests is trained briefly, at **rung 0** (``min_epochs``); rung ``k`` stands for
``min_epochs * eta**k`` epochs, capped at ``max_epochs``, which is the top rung. Whenever a worker is free, the
loop first asks ``next_promotion``: is some trial in the top ``1/eta`` of its rung, not yet promoted? If so, it
is **promoted**: a new trial row (``continues`` = that trial, ``parent`` too, no ops) trains the same model
further, from its own trained weights, for the difference in epochs to the next rung. Otherwise the strategy
suggests a new architecture, which starts at rung 0. Children of any trial inherit its weights as always.

Decisions, and why:

- **Asynchronous promotion** (ASHA rather than synchronous successive halving): no rung waits for a full
  bracket, so it works with one worker and with N, in the loop's async and sync modes alike, and a search
  that is cut by its time budget has spent nothing on brackets it could not finish. The price is ASHA's:
  a trial promoted early might not have been in the top ``1/eta`` had its rung been complete.
- **A pure function of the recorded trials.** ``next_promotion`` reads only trial rows (rung, status,
  metric, id, ``continues``), so ``resume`` recomputes the same decisions: a promotion is recorded as a
  pending row the moment it is decided (its source then counts as promoted, so it is never run twice) and
  re-run on resume like any pending trial.
- **Who counts in a rung**: trials of that rung that finished ``ok`` with a metric. A failed trial has no
  metric to rank; a ``cut`` one trained less than its rung (the search's deadline stopped it), so its metric
  is another fidelity's, and it is neither ranked nor promoted. Ties go to the earlier trial.
- **Highest rung first**: among promotable trials the loop takes one from the highest rung, the best of it
  first (ASHA's order), so the few long trainings the budget allows go to the best candidates early.
- **Continuing, not restarting**: a promotion replays no ops on its source's model and trains the extra
  epochs with a fresh learning-rate schedule over them (a warm restart, which is what every inheriting child
  already gets); its starting point counts as epoch 0 (``Trainer.fit(start=...)``), so its metric is never
  below its source's, and "the highest rung wins" (``storage.rundir.best_trial``) never trades a lineage's
  model for a worse one.
- **Epochs only, for now.** A rung is a number of epochs on the whole training split. A stratified subset of
  the data for the first rung (cheaper than one epoch on large data) is not built yet: it needs the trainer to
  train on a subset and the time budget's epoch-cost measurements (which scale epoch times by image counts)
  to know each trial's subset size.
- **Budgets**: a promotion is a trial (it takes a trial id, counts against ``max_trials``, and its epochs
  against ``epoch_budget``); it gets the search's deadline like any trial and may be cut there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from morphnas.status import TrialStatus
from morphnas.storage.rundir import TrialRecord

FIDELITIES = ("single", "asha")
DEFAULT_ETA = 3
DEFAULT_MIN_EPOCHS = 1


@dataclass(frozen=True)
class Rungs:
    """The rungs of a multi-fidelity search: rung k stands for ``min_epochs * eta**k`` epochs, and the last
    rung for ``max_epochs``; a rung closer than a factor ``sqrt(eta)`` below ``max_epochs`` is left out (it
    would add a promotion for little more training: with eta 2, 2-4-8-9 epochs become 2-4-9)."""

    min_epochs: int
    eta: int
    max_epochs: int

    def __post_init__(self) -> None:
        for name in ("min_epochs", "eta", "max_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.eta < 2:
            raise ValueError(f"eta (the reduction factor of successive halving) must be at least 2, got {self.eta}")
        if not 1 <= self.min_epochs < self.max_epochs:
            raise ValueError(f"multi-fidelity needs 1 <= min_epochs < max_epochs (the top rung), got min_epochs = "
                             f"{self.min_epochs} and max_epochs = {self.max_epochs}")

    @property
    def epochs(self) -> tuple[int, ...]:
        """Cumulative epochs of each rung, the first ``min_epochs``, the last ``max_epochs``."""
        out, e = [self.min_epochs], self.min_epochs * self.eta
        while e * math.sqrt(self.eta) <= self.max_epochs:
            out.append(e)
            e *= self.eta
        return (*out, self.max_epochs)

    @property
    def top(self) -> int:
        """The index of the top rung (no promotion beyond it)."""
        return len(self.epochs) - 1

    def train_epochs(self, rung: int) -> int:
        """Epochs a trial of ``rung`` trains: the rung's epochs at rung 0, else the difference to the rung below."""
        epochs = self.epochs
        if not 0 <= rung < len(epochs):
            raise ValueError(f"rung {rung} is not one of this search's rungs 0..{len(epochs) - 1}")
        return epochs[rung] - (epochs[rung - 1] if rung else 0)

    def describe(self) -> str:
        """E.g. ``rungs of 1, 3, 9 epochs (eta 3)``."""
        return f"rungs of {', '.join(map(str, self.epochs))} epochs (eta {self.eta})"

    @classmethod
    def from_config(cls, config: Any) -> Rungs | None:
        """The rungs of a ``SearchConfig`` (None for a single-fidelity search)."""
        if getattr(config, "fidelity", "single") != "asha":
            return None
        return cls(config.min_epochs, config.eta, config.max_epochs)


def rung_members(trials: Iterable[TrialRecord], rung: int) -> list[TrialRecord]:
    """The trials that completed ``rung`` (status ``ok`` with a metric), best first (earlier trial on ties)."""
    done = [t for t in trials if t.rung == rung and t.status == TrialStatus.OK and t.metric is not None]
    return sorted(done, key=lambda t: (-float(t.metric), t.id))


def promotable(trials: Iterable[TrialRecord], rungs: Rungs) -> list[tuple[TrialRecord, int]]:
    """Every (trial, rung it would be promoted to) that may be promoted now, in the order promotions are made:
    the highest rung first, within a rung the best first. A trial may be promoted when it is in the top
    ``len(rung) // eta`` of its rung and no trial continues it yet (pending or finished)."""
    trials = list(trials)
    taken = {t.continues for t in trials if t.continues is not None}
    out = []
    for rung in reversed(range(rungs.top)):
        members = rung_members(trials, rung)
        out += [(t, rung + 1) for t in members[: len(members) // rungs.eta] if t.id not in taken]
    return out


def next_promotion(trials: Iterable[TrialRecord], rungs: Rungs) -> tuple[TrialRecord, int] | None:
    """The promotion to make now, as (trial to continue, its new rung), or None: a pure function of the trials."""
    found = promotable(trials, rungs)
    return found[0] if found else None


def rung_summary(trials: Iterable[TrialRecord], rungs: Rungs | None) -> list[dict[str, Any]]:
    """Per rung: its epochs, trials finished in it (ok or cut), and how many of them were promoted."""
    trials = list(trials)
    if rungs is None:
        return []
    taken = {t.continues for t in trials if t.continues is not None}
    rows = []
    for rung, epochs in enumerate(rungs.epochs):
        done = [t for t in trials if t.rung == rung and t.finished]
        rows.append({"rung": rung, "epochs": epochs, "finished": len(done),
                     "promoted": sum(t.id in taken for t in done)})
    return rows
