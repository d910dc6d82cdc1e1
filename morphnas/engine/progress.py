"""What a search prints while it runs: plain lines always (unless quiet), live progress bars on a terminal.

- **Quiet** (``-q``): nothing.
- **Not a terminal** (a log file, a pipe, CI): plain lines as they happen — a trial starts, an epoch ends, a
  trial is observed — with no control characters, so log files stay readable.
- **A terminal**: the same lines, and below them live bars drawn with rich: the search (trials done of the
  budget, time used and left, best so far) and each running trial (epoch, batches, images/s, the epoch's
  ETA). The bars are redrawn 4 times a second from rich's own thread; set ``MORPHNAS_PROGRESS=0`` (or
  ``morphnas search --no-progress``) for plain lines on a terminal too, ``MORPHNAS_PROGRESS=1`` to force bars.

Within-epoch progress comes from ``Trainer.fit``'s per-batch hook (``on_batch``), which only counts: no host
sync, no ``.item()``, and at most one display update per 0.25 s (``UPDATE_EVERY``). It reaches the bars from
the thread executor, which runs the trial in the driver process; trials on worker processes or Ray actors
report per epoch only (their epoch records travel back to the driver), so their bars move once per epoch.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

UPDATE_EVERY = 0.25  # seconds between two updates of a trial's bar from the per-batch hook
ENV = "MORPHNAS_PROGRESS"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class _TrialBar:
    task: Any
    epochs: int
    steps: int = 0  # batches per epoch, once the per-batch hook told
    epoch: int = 0
    epoch_start: float = 0.0
    first_step: int = 0
    last: float = 0.0


class Progress:
    """Prints trials and epochs as they go (nothing in quiet mode), with live bars on a terminal.

    Called by the search: ``start_search`` at the start of ``Search.run``, ``self(trial_id, epoch_record)`` at
    each epoch end (from the executor's progress channel), ``on_batch`` from the trainer's per-batch hook (thread
    executor only), ``trial_done`` when a trial is observed, ``stop`` when the search closes; ``say`` prints a
    line. ``live=None`` decides from the stream (a TTY) and ``MORPHNAS_PROGRESS``.
    """

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.quiet = quiet
        self.stream = stream
        self.live = live
        self._bars: Any = None  # rich.progress.Progress while the display is on
        self._search_task: Any = None
        self._trials: dict[int, _TrialBar] = {}
        self._lock = threading.Lock()
        self._status: Callable[[], str] = lambda: ""
        self._max_epochs = 1
        self._epochs: dict[int, int] = {}  # a trial's own epochs where not max_epochs (multi-fidelity rungs)

    # ------------------------------------------------------------------ decisions
    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def wants_live(self) -> bool:
        """Bars only when not quiet and on a terminal (or forced by ``live`` / ``MORPHNAS_PROGRESS``)."""
        if self.quiet:
            return False
        if self.live is not None:
            return self.live
        env = os.environ.get(ENV, "").strip().lower()
        if env in ("0", "off", "false", "no"):
            return False
        if env in ("1", "on", "true", "yes"):
            return True
        out = self._out()
        try:
            return bool(out.isatty()) and os.environ.get("TERM", "") != "dumb"
        except (AttributeError, ValueError):
            return False

    # ------------------------------------------------------------------ search-level
    def start_search(self, max_trials: int | None, time_budget: float | None, max_epochs: int,
                     done: int, elapsed: Callable[[], float], best: tuple[int, float] | None = None) -> None:
        """Start the live display (if wanted): ``done`` trials finished so far, ``elapsed()`` the search's seconds."""
        self._max_epochs = max(1, max_epochs)
        self._done, self._best, self._elapsed = done, best, elapsed
        self._max_trials, self._time_budget = max_trials, time_budget
        if self._bars is not None or not self.wants_live():
            return
        from rich.console import Console
        from rich.progress import BarColumn, ProgressColumn, TextColumn
        from rich.progress import Progress as Bars
        from rich.text import Text

        class Info(ProgressColumn):  # a task's "info" field, called at each redraw when it is a function
            def render(self, task: Any) -> Text:
                info = task.fields.get("info", "")
                return Text(info() if callable(info) else str(info))

        console = Console(file=self._out(), force_terminal=True, highlight=False)
        self._bars = Bars(TextColumn("{task.description}"), BarColumn(bar_width=28), Info(), console=console,
                          refresh_per_second=4, transient=True, redirect_stdout=False, redirect_stderr=False)
        self._search_task = self._bars.add_task("search ", total=max_trials, completed=done,
                                                info=self.search_status)
        self._bars.start()

    def search_status(self) -> str:
        """``3/10 trials · 4m12s used, 1h55m left · best 91.20% (trial 2)``."""
        parts = [f"{self._done}/{self._max_trials} trials" if self._max_trials else f"{self._done} trials"]
        used = self._elapsed()
        if self._time_budget:
            parts.append(f"{_duration(used)} used, {_duration(self._time_budget - used)} left")
        else:
            parts.append(f"{_duration(used)} used")
        if self._best is not None:
            parts.append(f"best {self._best[1]:.2%} (trial {self._best[0]})")
        return " · ".join(parts)

    def trial_done(self, trial_id: int, done: int, best: tuple[int, float] | None) -> None:
        """A trial was observed: its bar goes, the search line counts it."""
        self._done, self._best = done, best
        with self._lock:
            bar = self._trials.pop(trial_id, None)
        if self._bars is not None:
            if bar is not None:
                self._bars.remove_task(bar.task)
            self._bars.update(self._search_task, completed=done)

    def stop(self) -> None:
        """End the live display (the bars vanish; the printed lines stay)."""
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._trials.clear()

    # ------------------------------------------------------------------ trial-level
    def expect(self, trial_id: int, epochs: int) -> None:
        """Trial ``trial_id`` trains ``epochs`` epochs (not the search's ``max_epochs``): its bar's length."""
        with self._lock:
            self._epochs[trial_id] = max(1, int(epochs))

    def _bar(self, trial_id: int) -> _TrialBar:
        with self._lock:
            bar = self._trials.get(trial_id)
            if bar is None:
                epochs = self._epochs.pop(trial_id, self._max_epochs)
                task = self._bars.add_task(f"trial {trial_id}", total=epochs, info="")
                bar = self._trials[trial_id] = _TrialBar(task, epochs)
            return bar

    def on_batch(self, trial_id: int, epoch: int, step: int, steps: int, batch_size: int) -> None:
        """The per-batch hook: counts only; updates the bar at most every ``UPDATE_EVERY`` s and at epoch ends."""
        if self._bars is None:
            return
        now = time.monotonic()
        bar = self._trials.get(trial_id)
        if bar is not None and bar.epoch == epoch and now - bar.last < UPDATE_EVERY:
            return
        try:
            bar = bar or self._bar(trial_id)
            if bar.epoch != epoch:
                bar.epoch, bar.epoch_start, bar.first_step = epoch, now, step
            bar.last, bar.steps = now, steps
            seconds = now - bar.epoch_start
            done = step - bar.first_step
            rate = done * batch_size / seconds if seconds > 0 and done > 0 else None
            eta = (steps - step) * seconds / done if done > 0 else None
            info = (f"epoch {epoch}/{bar.epochs} · batch {step}/{steps}"
                    + (f" · {rate:,.0f} img/s" if rate else "") + (f" · epoch ETA {_duration(eta)}" if eta else ""))
            self._bars.update(bar.task, total=bar.epochs * steps, completed=(epoch - 1) * steps + step, info=info)
        except Exception:  # a display problem must never stop a trial
            return

    def __call__(self, trial_id: int, record: Any) -> None:
        self.say(f"  trial {trial_id} epoch {record.epoch}: train loss {record.train_loss:.3f} "
                 f"acc {record.train_accuracy:.1%} | val loss {record.val_loss:.3f} acc {record.val_accuracy:.1%}"
                 f" ({record.seconds:.1f} s)")
        if self._bars is not None:
            bar = self._bar(trial_id)
            unit = bar.steps or 1
            self._bars.update(bar.task, total=bar.epochs * unit, completed=record.epoch * unit,
                              info=f"epoch {record.epoch}/{bar.epochs} done · val {record.val_accuracy:.1%}")

    def say(self, text: str) -> None:
        if self.quiet:
            return
        if self._bars is not None:
            self._bars.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self._out(), flush=True)
