"""One wall-clock budget for the whole job: the search, then the final training and its single test.

The rules, and why (docs/architecture.md, "The budget"):

- **One clock over sessions.** ``JobClock`` counts the seconds the job has been running: this session's (from
  the moment the search, or ``morphnas train``, was asked for, data loading included) plus what earlier
  sessions recorded (``RunDir.job_state()["elapsed"]``, ticked at every event, every few seconds while trials
  run and at every final epoch). Time between sessions is not counted: a resumed run continues the same budget.
- **The final share.** ``final_time`` seconds when the configuration sets it (0: no final step), else
  ``final_reserve``: ``E`` final epochs of the best trial so far, at its *measured* epoch time scaled from the
  training split to train+validation (the final trains on both), plus the test pass (the validation pass scaled
  to the test size), one more validation pass (a trial cut before its first epoch ends validates the partial
  one after the search's end) and ``FINAL_FIXED_SECONDS`` (building the trainer, saving the model, writing
  final.json), kept between ``FINAL_SHARE_MIN`` and ``FINAL_SHARE_MAX`` of the budget. ``E`` is
  ``final_epochs`` when set, else ``FINAL_TARGET_EPOCHS``. Before any trial has been measured the share is
  ``FINAL_SHARE_UNMEASURED``.
  The share is recomputed whenever a trial is submitted, so it follows the best architecture's cost.
- **The search's end** is the job's end minus the final share. Every trial is given it as its deadline (it is
  cut there, keeping its best epoch), and no trial is started with less search time left than a median
  finished trial's epoch: it could not finish one, and the time is worth more to the final training.
- **The final training** plans ``floor(time left before the test / epoch time)`` epochs (at most
  ``final_epochs`` when set, else ``FINAL_MAX_EPOCHS``), so its learning-rate schedule spans exactly the
  epochs planned, and is cut at the job's end minus the test allowance (``final_allowance``: the test pass, a
  validation pass, the fixed cost) as a safety net. When not even one epoch fits, the search's final step
  does not retrain: the best trial's own trained model (trained on the training split only) is tested once.
- **Margin.** Trials stop within one optimizer step of the search's end, and the final training within one step
  of its own deadline, so ``final.json`` is written before budget + ``margin_seconds(budget)`` (10 s + 1 %):
  the overshoot is one step, a validation pass of a cut epoch, and the error of the test-time estimate.

- **A cost cap that follows the budget** (``cost_cap_macs``): before each suggestion the strategy's
  ``Limits.max_macs`` is set so that no proposal costs more than the time left can pay for. An epoch's seconds
  are predicted from the network's multiply-accumulates per image at the median measured seconds per MAC of
  the finished trials; a candidate must (a) train its ``max_epochs`` within ``workers`` / ``COST_CAP_TRIALS``
  of the search time left, so that a few more trials still fit after it, and (b) be one the final step could
  retrain for its target epochs within the largest final share (``FINAL_SHARE_MAX``). Why a cap and not
  expected improvement per second: dividing by cost favours the cheapest networks all the time, also early when
  the budget could pay for bigger ones, while the failure to avoid is a single proposal that eats the budget
  (a 646k-parameter child at 670 images/s whose 15-epoch retrain took 66 minutes). The cap never falls below
  ``COST_CAP_FLOOR`` times the cheapest trained network, so the search can still grow from it, nor below
  ``COST_CAP_FLOOR`` times the best trial's own MACs as far as the final step could retrain such a child at the
  best's *own* measured seconds per MAC: cheap children of the best stay proposable to the search's end (the
  cap is one number, so other proposals up to it are allowed too). Why: one median rate over all trials
  mispredicts networks unlike the ones it came from. In the third hour of docs/experiments.md the small CNN-line
  trials had run 3.1–3.5 µs per MAC by minute 17, the ResNet line 2.3–2.5; at the median rate the final-step
  term held the cap below the best's own cost from minute 17 on (the time left from minute 21), so the best
  line, measured and affordable, froze. The floor is bounded: successive bests raise it 1.25× at a time, never
  past what the final step could retrain at the best's own rate; once the best is that large none of its
  children fit (morphisms only add cost). Without a final step only 1.25 × the best bounds it: a line that keeps
  improving may keep growing, and trials are still cut at the deadline.

Runs bounded by wall-clock are not bit-reproducible (where a trial is cut and how many final epochs fit
depend on the machine's speed); runs bounded by trials or epochs are.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FINAL_TARGET_EPOCHS = 20  # final epochs the automatic share is sized for (docs/architecture.md, "The budget": why 20)
FINAL_SHARE_MIN = 0.10  # the automatic final share, as a fraction of the budget: at least ...
FINAL_SHARE_MAX = 0.40  # ... and at most (so that most of the budget searches)
FINAL_SHARE_UNMEASURED = 0.25  # before any trial has measured an epoch
FINAL_MAX_EPOCHS = 100  # the most epochs a budgeted final training plans when final_epochs is not set
FINAL_FIXED_SECONDS = 2.0  # building the final trainer, saving the model, writing final.json
TICK_SECONDS = 5.0  # how often a running job records its elapsed time
COST_CAP_TRIALS = 3  # a proposal's max_epochs must fit in workers / this of the search time left
COST_CAP_FLOOR = 1.25  # the cap is at least this times the cheapest trained network's MACs (and the best's)


def margin_seconds(budget: float) -> float:
    """How far past ``budget`` seconds a job may end (10 s + 1 %): one optimizer step, a validation pass of a
    cut epoch, and the error of the test-time estimate."""
    return 10.0 + 0.01 * budget


@dataclass
class JobClock:
    """The job's seconds over all its sessions, and where its time budget ends (absolute ``time.time()``)."""

    budget: float | None
    elapsed_before: float = 0.0
    session_start: float = 0.0

    def __post_init__(self) -> None:
        if not self.session_start:
            self.session_start = time.time()

    def elapsed(self) -> float:
        """Seconds of the job so far, over all sessions."""
        return self.elapsed_before + time.time() - self.session_start

    def end(self) -> float | None:
        """The wall-clock time (``time.time()``) at which the budget is spent; None without a budget."""
        return None if self.budget is None else self.session_start + self.budget - self.elapsed_before

    def left(self) -> float | None:
        """Seconds of budget left (negative once overspent); None without a budget."""
        return None if self.budget is None else self.budget - self.elapsed()


@dataclass(frozen=True)
class EpochCost:
    """Measured seconds of one epoch: training on ``train_images`` images, and one validation pass of
    ``val_images`` images."""

    train: float
    val: float
    train_images: int
    val_images: int

    def scaled(self, train_images: int, val_images: int | None = None) -> EpochCost:
        """The same network's cost on other split sizes (time proportional to images)."""
        val_images = self.val_images if val_images is None else val_images
        return EpochCost(self.train * train_images / max(self.train_images, 1),
                         self.val * val_images / max(self.val_images, 1), train_images, val_images)

    @property
    def epoch(self) -> float:
        """Seconds of one epoch, validation included."""
        return self.train + self.val

    def eval_seconds(self, images: int) -> float:
        """Seconds to evaluate ``images`` images (e.g. the test split), from the validation pass."""
        return self.val * images / max(self.val_images, 1)


def epoch_cost(history: Sequence[dict[str, Any]], train_images: int, val_images: int) -> EpochCost | None:
    """The mean epoch cost in a trial's history (a partial epoch counts for its ``fraction``); None if empty."""
    train, val = [], []
    for h in history:
        fraction = float(h.get("fraction", 1.0)) or 1.0
        train.append(float(h["train_seconds"]) / fraction)
        val.append(max(0.0, float(h["seconds"]) - float(h["train_seconds"])))
    if not train:
        return None
    return EpochCost(statistics.fmean(train), statistics.fmean(val), train_images, val_images)


def median_epoch_seconds(histories: Iterable[Sequence[dict[str, Any]]]) -> float:
    """The median over trials of their mean epoch seconds (0 with no measured trial)."""
    means = []
    for history in histories:
        seconds = [float(h["seconds"]) / (float(h.get("fraction", 1.0)) or 1.0) for h in history]
        if seconds:
            means.append(statistics.fmean(seconds))
    return statistics.median(means) if means else 0.0


def final_reserve(budget: float, *, final_time: float | None, final_epochs: int,
                  cost: EpochCost | None, test_images: int) -> float:
    """Seconds of ``budget`` kept for the final training and test (see the module docstring for the rule).

    ``cost`` is the final epoch's estimated cost on train+validation (None before any measurement)."""
    if final_time is not None:
        return float(final_time)
    if cost is None:
        return FINAL_SHARE_UNMEASURED * budget
    epochs = final_epochs or FINAL_TARGET_EPOCHS
    wanted = epochs * cost.epoch + cost.val + final_allowance(cost, test_images)
    return min(max(wanted, FINAL_SHARE_MIN * budget), FINAL_SHARE_MAX * budget)


def final_allowance(cost: EpochCost, test_images: int) -> float:
    """Seconds kept after the final training's deadline: the test pass, a validation pass (a training cut before
    its first epoch ends validates the partial one) and ``FINAL_FIXED_SECONDS``."""
    return cost.eval_seconds(test_images) + cost.val + FINAL_FIXED_SECONDS


def plan_epochs(seconds: float, epoch_seconds: float, cap: int) -> int:
    """How many whole epochs of ``epoch_seconds`` fit in ``seconds``: at least 1, at most ``cap``."""
    if epoch_seconds <= 0 or not math.isfinite(epoch_seconds):
        return cap
    return max(1, min(cap, int(seconds // epoch_seconds)))


def cost_cap_macs(measured: Sequence[tuple[int, float]], *, search_seconds_left: float, workers: int,
                  trial_epochs: int, final_epoch_seconds: float | None,
                  best: tuple[int, float] | None = None) -> int | None:
    """The largest multiply-accumulates per image a proposal may have (module doc, "a cost cap"); None before
    any trial has measured an epoch.

    ``measured``: ``(macs, seconds per epoch)`` of finished trials; ``final_epoch_seconds``: the most seconds a
    trial-sized epoch may take for the final step to retrain it for its target epochs (None: no final step);
    ``best``: ``(macs, seconds per epoch)`` of the best trial so far, whose cheap children stay proposable.
    """
    pairs = [(m, s) for m, s in measured if _valid_cost(m, s)]
    if not pairs:
        return None
    seconds_per_mac = statistics.median(s / m for m, s in pairs)
    epoch_cap = max(search_seconds_left, 0.0) * max(workers, 1) / (COST_CAP_TRIALS * max(trial_epochs, 1))
    if final_epoch_seconds is not None:
        epoch_cap = min(epoch_cap, final_epoch_seconds)
    floor = COST_CAP_FLOOR * min(m for m, _ in pairs)
    if best is not None and _valid_cost(*best):
        best_macs, best_seconds = best
        child = COST_CAP_FLOOR * best_macs
        if final_epoch_seconds is not None:  # what the final step could retrain, at the best's own rate
            child = min(child, final_epoch_seconds * best_macs / best_seconds)
        floor = max(floor, child)
    return int(max(epoch_cap / seconds_per_mac, floor))


def _valid_cost(macs: int | None, seconds: float | None) -> bool:
    return bool(macs) and macs > 0 and seconds is not None and seconds > 0 and math.isfinite(seconds)


def final_epoch_limit(budget: float, *, final_time: float | None, final_epochs: int, train_images: int,
                      val_images: int) -> float | None:
    """The most seconds a trial's epoch (``train_images`` + a validation pass) may take for the final step to
    retrain the network on train+validation for its target epochs within its largest share; None without a
    final step."""
    if final_time == 0:
        return None
    share = float(final_time) if final_time is not None else FINAL_SHARE_MAX * budget
    epochs = final_epochs or FINAL_TARGET_EPOCHS
    return share / epochs * train_images / max(train_images + val_images, 1)
