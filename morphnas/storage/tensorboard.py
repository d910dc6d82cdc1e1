"""TensorBoard logging of a search: per-trial epoch curves, search trajectory, hparams rows, architectures.

Layout under ``run/tb/``: the search-level scalars and texts in ``tb/`` itself (tags ``search/...``), and one
sub-run per trial, ``tb/trial-0007/``, holding its epoch curves (tags ``epoch/...``, overlaid across trials
in TensorBoard's charts) and its hparams row. Point ``tensorboard --logdir`` at a folder holding several run
directories to compare searches side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

# Tags, so tests and users can rely on them.
EPOCH_TAGS = ("epoch/train_loss", "epoch/train_accuracy", "epoch/val_loss", "epoch/val_accuracy")
BEST_BY_TRIAL = "search/best_metric"
BEST_BY_SECOND = "search/best_metric_by_second"
TRIAL_METRIC = "search/trial_metric"
HPARAM_METRIC = "hparams/metric"


class SearchLogger:
    """Writes one search's TensorBoard events into ``directory`` (the run's ``tb/``)."""

    def __init__(self, directory: str | Path, run_name: str = "") -> None:
        self.directory = Path(directory)
        self.run_name = run_name
        self._search = SummaryWriter(str(self.directory))
        self._trials: dict[int, SummaryWriter] = {}

    def _trial_writer(self, trial_id: int) -> SummaryWriter:
        if trial_id not in self._trials:
            # purge_step=1: a trial re-run after a resume replaces the curves of its interrupted attempt
            self._trials[trial_id] = SummaryWriter(str(self.directory / f"trial-{trial_id:04d}"), purge_step=1)
        return self._trials[trial_id]

    def epoch(self, trial_id: int, epoch: int, train_loss: float, train_accuracy: float, val_loss: float,
              val_accuracy: float) -> None:
        """One epoch of one trial."""
        w = self._trial_writer(trial_id)
        values = (train_loss, train_accuracy, val_loss, val_accuracy)
        for tag, value in zip(EPOCH_TAGS, values, strict=True):
            w.add_scalar(tag, value, epoch)
        w.flush()

    def trial(self, trial_id: int, hparams: dict[str, Any], metric: float | None, best_so_far: float | None,
              elapsed: float, architecture: str) -> None:
        """A finished trial: its hparams row, the search trajectory point and the architecture as text."""
        w = self._trial_writer(trial_id)
        clean = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in hparams.items()}
        value = float("nan") if metric is None else float(metric)
        w.add_hparams(clean, {HPARAM_METRIC: value}, run_name=".")
        w.add_text("architecture", f"```\n{architecture}\n```", 0)
        w.flush()
        if metric is not None:
            self._search.add_scalar(TRIAL_METRIC, value, trial_id)
        if best_so_far is not None:
            self._search.add_scalar(BEST_BY_TRIAL, best_so_far, trial_id)
            self._search.add_scalar(BEST_BY_SECOND, best_so_far, round(elapsed))
        self._search.add_text("architectures", f"trial {trial_id}:\n```\n{architecture}\n```", trial_id)
        self._search.flush()
        self._close_trial(trial_id)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._search.add_text(tag, text, step)
        self._search.flush()

    def _close_trial(self, trial_id: int) -> None:
        writer = self._trials.pop(trial_id, None)
        if writer is not None:
            writer.close()

    def close(self) -> None:
        for trial_id in list(self._trials):
            self._close_trial(trial_id)
        self._search.close()
