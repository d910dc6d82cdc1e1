"""The strategy interface every search method implements: ``suggest`` / ``observe`` / ``cancel``, and state.

A search loop drives a strategy like this::

    try:
        s = strategy.suggest(trial_id)        # a Suggestion, or None: wait for a pending trial's result first
    except StrategyExhausted:                 # nothing left to propose, and waiting cannot change that
        stop
    ... train s.architecture (replay s.ops on trial s.parent's weights if s.inherit_weights) ...
    strategy.observe(Observation(trial_id, graph, metric, TrialStatus.OK))   # or FAILED with metric=None
    strategy.cancel(trial_id)                 # or: withdraw the suggestion without a result

The contract of ``suggest``:

- it returns a ``Suggestion`` (the trial is then *pending*), or
- ``None`` only while some trial is pending: the strategy has nothing to propose now, but a result might
  change that (a morphism strategy with no successful trial yet, a breadth-first queue waiting to grow), or
- it raises ``StrategyExhausted``, saying why, when it can propose nothing and waiting cannot help: no trial is
  pending and no trial succeeded (a morphism strategy has no parent), or its space is exhausted.

The first suggestions are the initial architectures, from scratch. A pending trial's architecture is never
suggested again, and model-based strategies account for it (the GP with a fantasy value); ``cancel`` withdraws
a pending suggestion, after which its architecture may be suggested again. ``state_dict()`` is plain JSON
(observations with their architectures, pending suggestions, the generator state, strategy-specific fields);
``load_state_dict`` on a strategy built with the same arguments restores it exactly, so a resumed search
makes the same choices as an uninterrupted one.

A subclass implements ``propose`` and may override the documented hooks ``on_observe``, ``on_suggest``,
``on_cancel``, ``extra_state`` and ``load_extra_state``; ``mutate``, ``trained``, ``trained_models``,
``ranked_models``, ``best`` and ``is_seen`` are helpers for it.

**Fidelity.** In a multi-fidelity search (successive halving, ``engine/fidelity.py``) an observation carries its
``rung`` (0 = the first, shortest training; higher = trained longer), its ``fidelity`` (the epochs of training
that rung stands for; information only) and, for a promotion, ``continues``: the trial whose trained model it
trained further (same architecture). The loop, not the strategy, decides promotions: a strategy observes them
(it never suggested them) and must not compare metrics of different rungs naively. The rules here:

- metrics are comparable only within a rung; *better* means a higher rung, then a higher metric
  (``rank_key``): a model that survived more halvings and trained longer beats one that trained briefly;
- a trial continued by a successful promotion is superseded by it: ``trained_models`` (the parents a child can
  start from, and what ``best`` and ``ranked_models`` rank) holds only the latest model of each lineage, so a
  child inherits the longest-trained weights of its parent architecture;
- ``trained`` still lists every successful observation; model-based strategies choose which to model
  (``GPStrategy``: the lowest rung only).

Observations made without these fields are rung 0 with no lineage: a single-fidelity search (and every state
saved before fidelities existed) behaves exactly as before.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import DEFAULT_NOISE, RANDOM_OP_NAMES, Limits, MorphismError, Op, random_morph, replay
from morphnas.status import TrialStatus

STATE_VERSION = 1
_NO_LIMITS = Limits(max_layers=2**62, max_params=2**62, max_width=2**62)  # replaying recorded ops never refuses


class StrategyExhausted(Exception):
    """Raised by ``Strategy.suggest`` when it can propose nothing and no pending result could change that."""


@dataclass(frozen=True)
class Observation:
    """The outcome of a finished trial: its id, architecture, metric (higher is better) and ``TrialStatus``, and
    its fidelity: ``rung``, ``fidelity`` (epochs) and, for a promotion, the trial it ``continues`` (module doc).

    ``ok`` and ``cut`` (stopped by a deadline, its best epoch kept) need a finite metric and enter the model;
    ``failed`` has none. ``pending`` and ``lost`` trials are not finished and cannot be observed. A status
    given as a string is parsed (``"ok"``), so states saved with plain strings load unchanged.
    """

    trial_id: int
    architecture: Graph
    metric: float | None = None
    status: TrialStatus = TrialStatus.OK
    rung: int = 0  # multi-fidelity rung: metrics compare only within one (module doc)
    fidelity: float | None = None  # epochs of training the rung stands for (information; None: not recorded)
    continues: int | None = None  # a promotion: the observed trial whose model this one trained further

    def __post_init__(self) -> None:
        status = TrialStatus.parse(self.status)
        object.__setattr__(self, "status", status)
        if isinstance(self.rung, bool) or not isinstance(self.rung, int | np.integer) or self.rung < 0:
            raise ValueError(f"trial {self.trial_id}: rung must be a non-negative integer, got {self.rung!r}")
        object.__setattr__(self, "rung", int(self.rung))
        if self.fidelity is not None:
            if not (isinstance(self.fidelity, int | float) and math.isfinite(self.fidelity) and self.fidelity > 0):
                raise ValueError(f"trial {self.trial_id}: fidelity must be a positive number (or None), "
                                 f"got {self.fidelity!r}")
            object.__setattr__(self, "fidelity", float(self.fidelity))
        if self.continues is not None:
            object.__setattr__(self, "continues", int(self.continues))
        if not status.finished:
            raise ValueError(f"trial {self.trial_id} is {status.value!r}, not finished: only ok, cut and failed "
                             "trials can be observed")
        if status.has_metric and (self.metric is None or not math.isfinite(self.metric)):
            raise ValueError(f"trial {self.trial_id} is {status.value!r} but its metric is {self.metric!r}: report "
                             "a NaN or missing metric as status='failed'")

    @property
    def ok(self) -> bool:
        """Whether the trial produced a metric (status ``ok`` or ``cut``)."""
        return self.status.has_metric

    def fidelity_fields(self) -> dict[str, Any]:
        """``rung``, ``fidelity`` and ``continues`` where they differ from the defaults (compact JSON)."""
        out: dict[str, Any] = {}
        if self.rung:
            out["rung"] = self.rung
        if self.fidelity is not None:
            out["fidelity"] = self.fidelity
        if self.continues is not None:
            out["continues"] = self.continues
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, the architecture in full."""
        return {"trial_id": int(self.trial_id), "architecture": self.architecture.to_dict(),
                "metric": None if self.metric is None else float(self.metric), "status": self.status.value,
                **self.fidelity_fields()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        """Inverse of ``to_dict`` (a dict without fidelity fields is rung 0)."""
        return cls(int(data["trial_id"]), Graph.from_dict(data["architecture"]), data.get("metric"),
                   data.get("status", TrialStatus.OK), int(data.get("rung", 0)), data.get("fidelity"),
                   data.get("continues"))


def rank_key(observation: Observation) -> tuple[int, float, int]:
    """Sort key of successful observations, larger is better: the higher rung, then the higher metric, then the
    earlier trial (the one rule for "best" across fidelities)."""
    return observation.rung, float(observation.metric), -observation.trial_id


@dataclass(frozen=True)
class Suggestion:
    """What to train next: ``architecture``, obtained by applying ``ops`` to trial ``parent`` (None: from
    scratch); ``inherit_weights`` says whether to start from the parent's trained weights."""

    architecture: Graph
    parent: int | None = None
    ops: tuple[Op, ...] = ()
    inherit_weights: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parent is None and (self.ops or self.inherit_weights):
            raise ValueError("a suggestion with ops or inherited weights needs a parent trial")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, the architecture in full."""
        return {"architecture": self.architecture.to_dict(), "parent": self.parent,
                "ops": [op.to_dict() for op in self.ops], "inherit_weights": bool(self.inherit_weights),
                "info": dict(self.info)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Suggestion:
        """Inverse of ``to_dict``."""
        return cls(Graph.from_dict(data["architecture"]), data.get("parent"),
                   tuple(Op.from_dict(o) for o in data.get("ops", [])), bool(data.get("inherit_weights", False)),
                   dict(data.get("info", {})))


class Strategy(ABC):
    """Base of all search strategies: initial architectures, pending/seen bookkeeping, state (see module doc).

    ``initial``: the architectures to evaluate first (from scratch); ``seed``: of the strategy's local
    ``numpy.random.Generator`` (its only source of randomness); ``limits``: size limits for morphisms and
    samples (settable, e.g. after an out-of-memory); ``noise``: symmetry-breaking noise of the morphisms.
    """

    name: ClassVar[str] = ""

    def __init__(self, initial: Sequence[Graph], seed: int = 0, limits: Limits | None = None,
                 noise: float = DEFAULT_NOISE) -> None:
        if not initial:
            raise ValueError(f"strategy {self.name!r} needs at least one initial architecture")
        self.initial = [g.without_weights() for g in initial]
        self.seed = int(seed)
        self.limits = limits
        self.noise = float(noise)
        self._reset()

    def _reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._next_initial = 0
        self.observations: dict[int, Observation] = {}
        self.pending: dict[int, Suggestion] = {}
        self._seen: set[str] = set()
        self._origin: dict[int, dict[str, Any]] = {}  # trial id -> how to rebuild its architecture (state)

    # ------------------------------------------------------------------ the interface
    def suggest(self, trial_id: int) -> Suggestion | None:
        """The architecture trial ``trial_id`` should train; None when only a pending trial's result could give
        one; StrategyExhausted when nothing is pending and nothing can be proposed (see the module doc)."""
        trial_id = int(trial_id)
        if trial_id in self.pending or trial_id in self.observations:
            raise ValueError(f"trial id {trial_id} was already suggested")
        suggestion = None
        while self._next_initial < len(self.initial) and suggestion is None:
            graph = self.initial[self._next_initial]
            self._next_initial += 1
            if graph.canonical_hash() not in self._seen:
                suggestion = Suggestion(graph, info={"strategy": self.name, "reason": "initial",
                                                     "initial": self._next_initial - 1})
        if suggestion is None:
            suggestion = self.propose(trial_id)
        if suggestion is None:
            if self.pending:
                return None
            why = ("no trial has succeeded, so there is no model to build on" if not self.trained else
                   "every candidate it can reach was already suggested")
            raise StrategyExhausted(f"the {self.name} strategy has nothing left to propose and no trial is "
                                    f"pending: {why}")
        self._register_pending(trial_id, suggestion)
        return suggestion

    def observe(self, observation: Observation) -> None:
        """Record the outcome of a trial (suggested by this strategy or not)."""
        if not isinstance(observation, Observation):
            raise TypeError(f"observe() takes an Observation, got {type(observation).__name__}")
        if observation.trial_id in self.observations:
            raise ValueError(f"trial {observation.trial_id} was already observed")
        obs = observation
        if obs.architecture.weights is not None:
            obs = replace(obs, architecture=obs.architecture.without_weights())
        if obs.continues is not None and obs.trial_id in self.pending:
            raise ValueError(f"trial {obs.trial_id} was suggested by this strategy, so it cannot continue trial "
                             f"{obs.continues}: a promotion is the loop's, never a suggestion")
        suggested = self.pending.pop(obs.trial_id, None)
        key = obs.architecture.canonical_hash()
        source = self.observations.get(obs.continues) if obs.continues is not None else None
        if obs.continues is not None and (source is None or source.architecture.canonical_hash() != key):
            raise ValueError(f"trial {obs.trial_id} continues trial {obs.continues}, which is not an observed trial "
                             "of the same architecture")
        if source is not None:
            self._origin[obs.trial_id] = {"as": int(obs.continues)}  # the same architecture as its source
        elif suggested is None or suggested.architecture.canonical_hash() != key:
            self._origin[obs.trial_id] = {"graph": obs.architecture.to_dict()}
        self.observations[obs.trial_id] = obs
        self._seen.add(key)
        self.on_observe(obs)

    def cancel(self, trial_id: int) -> Suggestion:
        """Withdraw pending trial ``trial_id`` (it will not be observed) and return its suggestion; its
        architecture may be suggested again. KeyError if the trial is not pending."""
        trial_id = int(trial_id)
        if trial_id not in self.pending:
            state = "already observed" if trial_id in self.observations else "never suggested"
            raise KeyError(f"trial {trial_id} is not pending ({state}): only a pending suggestion can be cancelled")
        suggestion = self.pending.pop(trial_id)
        origin = self._origin.pop(trial_id)
        key = suggestion.architecture.canonical_hash()
        if all(o.architecture.canonical_hash() != key for o in self.observations.values()):
            self._seen.discard(key)
        if "initial" in origin:  # an initial architecture comes back before any proposal
            self._next_initial = min(self._next_initial, int(origin["initial"]))
        self.on_cancel(trial_id, suggestion)
        return suggestion

    def _register_pending(self, trial_id: int, suggestion: Suggestion) -> None:
        if suggestion.parent is not None and suggestion.ops and suggestion.parent in self.observations:
            self._origin[trial_id] = {"parent": suggestion.parent, "ops": [op.to_dict() for op in suggestion.ops]}
        elif suggestion.info.get("reason") == "initial" and "initial" in suggestion.info:
            self._origin[trial_id] = {"initial": int(suggestion.info["initial"])}
        else:
            self._origin[trial_id] = {"graph": suggestion.architecture.to_dict()}
        self.pending[trial_id] = suggestion
        self._seen.add(suggestion.architecture.canonical_hash())
        self.on_suggest(trial_id, suggestion)

    @abstractmethod
    def propose(self, trial_id: int) -> Suggestion | None:
        """The strategy's own choice once the initial architectures are out: an unseen architecture, or None
        when it has none (``suggest`` then waits or raises StrategyExhausted); it may raise StrategyExhausted
        itself with a more precise reason."""

    def on_observe(self, observation: Observation) -> None:
        """Hook: a trial was observed (also called for each observation that ``load_state_dict`` replays)."""
        return

    def on_suggest(self, trial_id: int, suggestion: Suggestion) -> None:
        """Hook: a suggestion became pending (also called for each pending trial that ``load_state_dict``
        replays)."""
        return

    def on_cancel(self, trial_id: int, suggestion: Suggestion) -> None:
        """Hook: pending trial ``trial_id`` was withdrawn by ``cancel``."""
        return

    # ------------------------------------------------------------------ helpers for subclasses
    @property
    def trained(self) -> list[Observation]:
        """Successful observations, by trial id."""
        return [self.observations[t] for t in sorted(self.observations) if self.observations[t].ok]

    @property
    def trained_models(self) -> list[Observation]:
        """Successful observations a child can start from, by trial id: ``trained`` less every trial that a
        successful promotion continued (the promotion holds the same architecture, trained longer)."""
        trained = self.trained
        superseded = {o.continues for o in trained if o.continues is not None}
        return [o for o in trained if o.trial_id not in superseded] if superseded else trained

    def ranked_models(self) -> list[Observation]:
        """``trained_models`` best first (``rank_key``: the higher rung, then the higher metric)."""
        return sorted(self.trained_models, key=rank_key, reverse=True)

    def best(self) -> Observation | None:
        """The best trained model: the highest rung, then the highest metric (the earliest trial on ties); with
        one fidelity, simply the highest metric."""
        models = self.trained_models
        return max(models, key=rank_key) if models else None

    def is_seen(self, graph: Graph | str) -> bool:
        """Whether an architecture (or canonical hash) was observed or is pending."""
        return (graph if isinstance(graph, str) else graph.canonical_hash()) in self._seen

    def mutate(self, parent: Observation, rng: np.random.Generator, n_ops: int = 1, tries: int = 32,
                reason: str = "mutation") -> Suggestion | None:
        """A child of ``parent`` by ``n_ops`` random morphisms that is not seen yet (longer chains if needed)."""
        for length in (n_ops, n_ops + 1, n_ops + 2):
            for _ in range(tries):
                chain = self.morph_chain(parent.architecture, length, rng)
                if chain is not None and not self.is_seen(chain[0]):
                    return Suggestion(chain[0], parent.trial_id, chain[1], True,
                                      {"strategy": self.name, "reason": reason})
        return None

    def child_of_best(self, rng: np.random.Generator, n_ops: int = 1, reason: str = "child of the best",
                      parents: Sequence[Observation] | None = None) -> Suggestion | None:
        """An unseen ``n_ops``-morphism child of the best model, falling back to the next best (hill climbing's
        move); ``parents``: the models to try, best first (default: every trained model, ranked)."""
        for parent in self.ranked_models() if parents is None else parents:
            suggestion = self.mutate(parent, rng, n_ops, reason=reason)
            if suggestion is not None:
                return suggestion
        return None

    def morph_chain(self, graph: Graph, length: int, rng: np.random.Generator,
                    kinds: Sequence[str] = RANDOM_OP_NAMES) -> tuple[Graph, tuple[Op, ...]] | None:
        """``graph`` after ``length`` random morphisms of ``kinds`` (this strategy's noise and limits) and the ops,
        or None when a morphism was refused (e.g. by the size limits)."""
        ops = []
        try:
            for _ in range(length):
                graph, op = random_morph(graph, rng, noise=self.noise, limits=self.limits, kinds=kinds)
                ops.append(op)
        except MorphismError:
            return None
        return graph, tuple(ops)

    # ------------------------------------------------------------------ state
    def _rebuild(self, origin: dict[str, Any]) -> Graph:
        """The architecture an origin record describes (see ``state_dict``)."""
        if "initial" in origin:
            return self.initial[int(origin["initial"])]
        if "as" in origin:
            return self.observations[int(origin["as"])].architecture
        if "parent" in origin:
            parent = self.observations[int(origin["parent"])].architecture
            return replay(parent, origin["ops"], limits=_NO_LIMITS)
        return Graph.from_dict(origin["graph"])

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: enough for ``load_state_dict`` to continue exactly where this strategy is.

        Architectures are stored compactly: an initial one by its position, a morphed one as its parent trial
        and ops (replayed on load, which rebuilds it exactly), a promotion as the trial it continues, anything
        else as its full JSON. An observation's fidelity fields are stored only when set (``rung`` > 0...), so
        a single-fidelity state is what it was before they existed, and such old states load as rung 0.
        """
        return {
            "strategy": self.name,
            "version": STATE_VERSION,
            "seed": self.seed,
            "initial": [g.canonical_hash() for g in self.initial],
            "next_initial": self._next_initial,
            "rng": self.rng.bit_generator.state,
            "limits": None if self.limits is None else asdict(self.limits),
            "observations": [{"trial_id": o.trial_id, "metric": o.metric, "status": o.status.value,
                              "architecture": self._origin[o.trial_id], **o.fidelity_fields()}
                             for o in self.observations.values()],
            "pending": [{"trial_id": t, "parent": s.parent, "ops": [op.to_dict() for op in s.ops],
                         "inherit_weights": s.inherit_weights, "info": s.info, "architecture": self._origin[t]}
                        for t, s in self.pending.items()],
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output into a strategy built with the same arguments."""
        if state.get("strategy") != self.name:
            raise ValueError(f"state of strategy {state.get('strategy')!r} cannot load into {self.name!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"strategy state version {state.get('version')!r} is not {STATE_VERSION}")
        if state.get("initial") != [g.canonical_hash() for g in self.initial]:
            raise ValueError("the state was saved with other initial architectures than this strategy's")
        self.seed = int(state["seed"])
        self._reset()
        self.limits = None if state.get("limits") is None else Limits(**state["limits"])
        self._next_initial = int(state["next_initial"])
        for entry in state["observations"]:
            tid = int(entry["trial_id"])
            origin = entry["architecture"]
            graph = self._rebuild(origin)
            self._origin[tid] = origin
            self.observations[tid] = Observation(tid, graph, entry["metric"], entry["status"],
                                                 int(entry.get("rung", 0)), entry.get("fidelity"),
                                                 entry.get("continues"))
            self._seen.add(graph.canonical_hash())
            self.on_observe(self.observations[tid])
        for entry in state["pending"]:
            suggestion = Suggestion(self._rebuild(entry["architecture"]), entry["parent"],
                                    tuple(Op.from_dict(o) for o in entry["ops"]), bool(entry["inherit_weights"]),
                                    dict(entry["info"]))
            self._register_pending(int(entry["trial_id"]), suggestion)
        self.load_extra_state(state.get("extra", {}))
        self.rng.bit_generator.state = state["rng"]

    def extra_state(self) -> dict[str, Any]:
        """Hook: strategy-specific JSON-able state (beyond what observations and pending trials determine)."""
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        """Hook: restore ``extra_state()`` output (called after observations and pending trials are replayed)."""
        return
