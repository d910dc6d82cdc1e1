"""TensorBoard logging of a search: per-trial epoch curves, search trajectory, hparams rows, architectures.

Layout under ``run/tb/``: the search-level scalars and texts in ``tb/`` itself (tags ``search/...``), and one
sub-run per trial, ``tb/trial-0007/``, holding its epoch curves (tags ``epoch/...``, overlaid across trials
in TensorBoard's charts) and its hparams row. Point ``tensorboard --logdir`` at a folder holding several run
directories to compare searches side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

# Tags, so tests and users can rely on them.
EPOCH_TAGS = ("epoch/train_loss", "epoch/train_accuracy", "epoch/val_loss", "epoch/val_accuracy")
BEST_BY_TRIAL = "search/best_metric"
BEST_BY_SECOND = "search/best_metric_by_second"
TRIAL_METRIC = "search/trial_metric"
HPARAM_METRIC = "hparams/metric"
ARCHITECTURE_IMAGE = "architecture"  # per trial sub-run: the architecture drawn, new layers since the parent marked


def trial_dir(tb_dir: str | Path, trial_id: int) -> Path:
    """The TensorBoard sub-run of one trial."""
    return Path(tb_dir) / f"trial-{trial_id:04d}"


class TrialLogger:
    """Epoch curves of one trial, written by the driver from the history the trial's outcome carries."""

    def __init__(self, tb_dir: str | Path, trial_id: int) -> None:
        # purge_step=1: a trial re-run after a resume replaces the curves of its interrupted attempt
        self._writer = SummaryWriter(str(trial_dir(tb_dir, trial_id)), purge_step=1)

    def epoch(self, epoch: int, train_loss: float, train_accuracy: float, val_loss: float,
              val_accuracy: float) -> None:
        values = (train_loss, train_accuracy, val_loss, val_accuracy)
        for tag, value in zip(EPOCH_TAGS, values, strict=True):
            self._writer.add_scalar(tag, value, epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class SearchLogger:
    """Search-level events of one run (the driver's): trajectory, hparams rows, architectures."""

    def __init__(self, tb_dir: str | Path) -> None:
        self.directory = Path(tb_dir)
        self._search = SummaryWriter(str(self.directory))

    def trial(self, trial_id: int, hparams: dict[str, Any], metric: float | None, best_so_far: float | None,
              elapsed: float, architecture: str, image: np.ndarray | None = None) -> None:
        """A finished trial: its hparams row, the search trajectory point and the architecture as text (and as a
        picture, ``image`` H x W x 3 uint8, when given)."""
        clean = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in hparams.items()}
        value = float("nan") if metric is None else float(metric)
        with SummaryWriter(str(trial_dir(self.directory, trial_id))) as w:
            w.add_hparams(clean, {HPARAM_METRIC: value}, run_name=".")
            w.add_text("architecture", f"```\n{architecture}\n```", 0)
            if image is not None:
                w.add_image(ARCHITECTURE_IMAGE, image, 0, dataformats="HWC")
        if metric is not None:
            self._search.add_scalar(TRIAL_METRIC, value, trial_id)
        if best_so_far is not None:
            self._search.add_scalar(BEST_BY_TRIAL, best_so_far, trial_id)
            self._search.add_scalar(BEST_BY_SECOND, best_so_far, round(elapsed))
        self._search.add_text("architectures", f"trial {trial_id}:\n```\n{architecture}\n```", trial_id)
        self._search.flush()

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._search.add_text(tag, text, step)
        self._search.flush()

    def close(self) -> None:
        self._search.close()
