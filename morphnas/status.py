"""The status of a trial: one enum shared by the searcher (observations), storage (trial rows) and the engine.

It lives at the top of the package, importing nothing, so that every part can use it without breaking the
one-way dependencies (graph <- searcher, graph <- trainer, storage knows graph, engine wires them).
``TrialStatus`` is a ``str`` enum: it compares equal to, and is stored in SQLite and JSON as, its plain value,
so run directories written before it existed read back unchanged.
"""

from __future__ import annotations

from enum import Enum


class TrialStatus(str, Enum):
    """Where a trial stands.

    - ``pending``: suggested and recorded, not finished (``resume`` re-runs it with the same seeds);
    - ``ok``: trained; its metric is the best epoch's validation metric;
    - ``failed``: the architecture's fault (exception, NaN loss, out of memory); never retried;
    - ``cut``: stopped by a deadline; its best epoch so far is kept and observed like an ``ok`` trial;
    - ``lost``: its worker died; the trial is retried once on another worker, then recorded as failed.
    """

    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    CUT = "cut"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """Whether the trial will not run again (``ok``, ``failed`` or ``cut``)."""
        return self in (TrialStatus.OK, TrialStatus.FAILED, TrialStatus.CUT)

    @property
    def has_metric(self) -> bool:
        """Whether the trial produced a trained model and a metric that a strategy may observe."""
        return self in (TrialStatus.OK, TrialStatus.CUT)

    @classmethod
    def parse(cls, value: str | TrialStatus) -> TrialStatus:
        """The status named ``value``; ValueError listing the valid names otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown trial status {value!r}; valid statuses: "
                             f"{', '.join(s.value for s in cls)}") from None
