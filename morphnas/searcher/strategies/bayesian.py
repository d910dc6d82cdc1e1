"""Bayesian optimization over network morphisms: a GP on the edit-distance kernel chooses which child of a
trained model to train next. Three strategies share the GP machinery (``GPStrategy``):

- ``autokeras``: the paper's method as published and as morphnas first implemented it: UCB (beta = 2.576) and
  the tree-structured simulated annealing over morphisms (``TreeAnnealer``, the paper's constants) as the
  acquisition optimizer. Kept under its own name for replication.
- ``bo-scratch``: the paper's ablation: ``autokeras``'s choices, each trained from scratch.
- ``bayesian`` (the default): BO confined to a trust region around the incumbents (``trust_region.py``):
  a pool of candidates a few morphisms from the best models, scored by EI under the GP; the region's radius
  (in morphism steps) doubles after successes and halves after failures. See that module for why.

Each suggestion fits the GP to the successful trials, conditions it on a fantasy value for every pending trial
(``believer``: the posterior mean, the kriging believer; ``liar-min`` / ``liar-mean`` / ``liar-max``: a
constant liar), so trials in flight together differ, then optimizes the acquisition. The winner is returned as
(trained parent, ops), to be trained from the parent's weights.

``refit`` says when the GP's hyperparameters are fitted from their defaults (cold) rather than from the
previous fit's optimum (warm, a few L-BFGS steps): ``doubling`` (default) fits cold while the data is small
(``cold_fits_until`` observations) and again whenever it has doubled since the last cold fit, so the cost stays
bounded at hundreds of observations; ``cold`` always; ``warm`` only the first time. The warm start and the last
cold size are in the state, so a resumed search fits exactly as an uninterrupted one.

**Fidelities** (a multi-fidelity search, ``engine/fidelity.py``): the GP models only comparable metrics —
those of the lowest rung observed, which in the search loop is every architecture's first-rung metric, since
every new architecture is trained first at rung 0. Promotions (the same architecture trained longer) are
observed but do not enter the GP; they make better *parents*: proposals start from ``trained_models`` (each
lineage's longest-trained model) ranked by rung, then metric. Why not fidelity as a GP input: a product kernel
over (architecture, rung) has to learn the correlation between rungs from the few promoted pairs a search has
(a handful per dozen trials), and extrapolating a candidate to a rung it has never been trained at is what
successive halving exists to avoid; the first rung is where every candidate enters, so EI compares each
candidate with the incumbent at exactly the fidelity it will be trained at. Successive halving itself assumes
that rankings carry over between rungs, which is what using first-rung metrics for the search relies on. With
one fidelity every observation is rung 0 and nothing changes.

Failed trials are never re-suggested and never enter the GP. When the optimizer finds no unseen child (a
tiny space, or all children pending), a random unseen mutation of the best model is suggested instead and
the suggestion's ``info`` says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import DEFAULT_NOISE, Limits
from morphnas.searcher.acquisition import make_acquisition
from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.gp import ArchitectureGP, Posterior
from morphnas.searcher.optimizer import Root, TreeAnnealer
from morphnas.searcher.strategies.base import Observation, Strategy, Suggestion

FANTASIES = ("believer", "liar-min", "liar-mean", "liar-max")
REFITS = ("doubling", "cold", "warm")


class GPStrategy(Strategy):
    """The GP machinery of the Bayesian strategies: cache, fit with fantasies, refit policy, state.

    ``kernel`` / ``acquisition``: registered names (options in the ``*_options`` dicts); ``lam``: weight of
    the skip term of the edit distance; ``fantasy``: how pending trials enter the GP; ``refit`` and
    ``cold_fits_until``: when hyperparameters are fitted cold (module doc; both settable between suggestions).
    Subclasses implement ``propose`` with ``fit_gp`` and ``scorer``.
    """

    inherit_weights = True

    def __init__(self, initial: Sequence[Graph], seed: int = 0, limits: Limits | None = None,
                 noise: float = DEFAULT_NOISE, kernel: str = "bourgain", kernel_options: dict[str, Any] | None = None,
                 acquisition: str = "ucb", acquisition_options: dict[str, Any] | None = None, lam: float = 1.0,
                 fantasy: str = "believer", fit_steps: int = 30, refit: str = "doubling",
                 cold_fits_until: int = 64) -> None:
        if fantasy not in FANTASIES:
            raise ValueError(f"unknown fantasy {fantasy!r}; valid names: {', '.join(FANTASIES)}")
        self.refit = refit
        self.cold_fits_until = int(cold_fits_until)
        self.kernel_name = kernel
        from morphnas.searcher.kernels import KERNELS

        self.kernel_options = dict(kernel_options or {})
        if "seed" not in self.kernel_options and KERNELS.accepts(kernel, "seed"):
            self.kernel_options["seed"] = seed  # every kernel that draws randomness is seeded by the search
        self.acquisition = make_acquisition(acquisition, **(acquisition_options or {}))
        self.lam = float(lam)
        self.fantasy = fantasy
        self.fit_steps = int(fit_steps)
        KERNELS.get(kernel)  # fail early on an unknown kernel name
        super().__init__(initial, seed, limits, noise)

    def _reset(self) -> None:
        super()._reset()
        self.cache = ArchitectureCache(lam=self.lam)
        self._warm: dict[str, list[float]] = {}  # the last fit's raw hyperparameters (a warm start)
        self._last_cold = 0  # training-set size at the last cold-started fit
        self._index: dict[int, int] = {}  # trial id -> cache index
        self.gp: ArchitectureGP | None = None
        self.last_stats: dict[str, Any] = {}

    @property
    def refit(self) -> str:
        """When the GP hyperparameters are fitted cold: ``doubling``, ``cold`` or ``warm`` (module doc)."""
        return self._refit

    @refit.setter
    def refit(self, value: str) -> None:
        if value not in REFITS:
            raise ValueError(f"unknown refit policy {value!r}; valid names: {', '.join(REFITS)}")
        self._refit = value

    def cache_index(self, trial_id: int) -> int:
        """The index of trial ``trial_id``'s architecture in ``self.cache`` (observed or pending trials)."""
        try:
            return self._index[int(trial_id)]
        except KeyError:
            raise KeyError(f"trial {trial_id} is neither observed nor pending") from None

    def on_observe(self, observation: Observation) -> None:
        """Add the architecture to the cache."""
        self._index[observation.trial_id] = self.cache.add(observation.architecture)

    def on_suggest(self, trial_id: int, suggestion: Suggestion) -> None:
        """Add the architecture to the cache (the GP gets a fantasy value for it while it is pending)."""
        self._index[trial_id] = self.cache.add(suggestion.architecture)

    def on_cancel(self, trial_id: int, suggestion: Suggestion) -> None:
        """Drop the trial, and with it its fantasy (its architecture stays in the cache, unused)."""
        del self._index[trial_id]

    def _cold_fit(self, n: int) -> bool:
        """Whether a fit on ``n`` observations starts from the default hyperparameters (the refit policy)."""
        if self._refit == "cold" or not self._warm:
            return True
        if self._refit == "warm":
            return False
        return n <= self.cold_fits_until or n >= 2 * self._last_cold

    def modelled(self) -> list[Observation]:
        """The observations the GP is fitted on: the successful ones at the lowest rung observed (module doc);
        with one fidelity, every successful observation."""
        trained = self.trained
        if not trained:
            return trained
        low = min(o.rung for o in trained)
        return [o for o in trained if o.rung == low]

    def fit_gp(self) -> tuple[ArchitectureGP, float, bool]:
        """The GP on the modelled observations (``modelled``) plus a fantasy per pending trial, the best modelled
        metric, and whether the hyperparameters were fitted cold."""
        trained = self.modelled()
        idx = np.array([self._index[o.trial_id] for o in trained], dtype=np.int64)
        y = np.array([o.metric for o in trained], dtype=np.float64)
        gp = ArchitectureGP(self.cache, self.kernel_name, self.kernel_options, fit_steps=self.fit_steps)
        cold = self._cold_fit(len(y))
        gp.fit(idx, y, init=None if cold else self._warm)
        if cold:
            self._last_cold = len(y)
        self._warm = gp.raw_hyperparameters()
        pending = [self._index[t] for t in sorted(self.pending)]
        if pending:
            if self.fantasy == "believer":
                fantasy = gp.predict(pending)[0]
            else:
                fantasy = np.full(len(pending), {"liar-min": y.min(), "liar-mean": y.mean(),
                                                 "liar-max": y.max()}[self.fantasy])
            gp.fit(np.concatenate([idx, pending]), np.concatenate([y, fantasy]), optimize=False)
        return gp, float(y.max()), cold

    def begin_proposal(self) -> tuple[np.random.Generator, ArchitectureGP, float, dict[str, Any]]:
        """What every proposal starts with: a generator drawn from the strategy's own (so the state stays exact), the
        GP fitted with fantasies (kept as ``self.gp``), the best metric, and the suggestion's ``info`` so far."""
        rng = np.random.default_rng(int(self.rng.integers(2**63 - 1)))
        start = time.perf_counter()
        gp, best, cold = self.fit_gp()
        self.gp = gp
        info: dict[str, Any] = {"strategy": self.name, "gp": dict(gp.hyperparameters), "cold_fit": cold,
                                "seconds": {"gp_fit": time.perf_counter() - start}, "started": start}
        return rng, gp, best, info

    @staticmethod
    def finish_info(info: dict[str, Any], **more: Any) -> dict[str, Any]:
        """``info`` with ``more`` and the proposal's total seconds (from ``begin_proposal``)."""
        start = info.pop("started")
        return {**info, **more, "seconds": {**info["seconds"], "total": time.perf_counter() - start}}

    def scorer(self, gp: ArchitectureGP, best: float, rng: np.random.Generator
               ) -> Callable[[np.ndarray], tuple[np.ndarray, Posterior]]:
        """``score(cache indices) -> (acquisition values, posterior)`` under ``gp`` with incumbent ``best``."""
        acquisition = self.acquisition

        def score(indices: np.ndarray) -> tuple[np.ndarray, Posterior]:
            post = gp.posterior(indices, full_cov=acquisition.needs_covariance)
            return np.asarray(acquisition(post, best, rng), dtype=np.float64), post

        return score

    def fallback_parent(self) -> Observation:
        """The model a fallback mutates: the best one."""
        return self.best() or self.trained[0]

    def fallback(self, rng: np.random.Generator, info: dict[str, Any], why: str) -> Suggestion | None:
        """A random unseen mutation of the best model, when the acquisition optimizer found nothing."""
        found = self.mutate(self.fallback_parent(), rng, reason=f"fallback: {why}")
        if found is None:
            return None
        return Suggestion(found.architecture, found.parent, found.ops, self.inherit_weights, {**info, **found.info})

    def extra_state(self) -> dict[str, Any]:
        return {"warm": self._warm, "last_cold": self._last_cold}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self._warm = {k: [float(v) for v in vals] for k, vals in extra.get("warm", {}).items()}
        self._last_cold = int(extra.get("last_cold", 0))


class AutoKerasSearch(GPStrategy):
    """The paper's configuration: UCB (beta = 2.576) optimized by the tree-structured annealing over morphisms.

    ``annealing``: options of ``TreeAnnealer`` (``t_start``, ``cooling``, ``t_min``, ``n_children``,
    ``n_attempts``, ``max_ops``, ``scale``, ``time_limit``); the defaults are the paper's constants.
    """

    name = "autokeras"

    def __init__(self, initial: Sequence[Graph], seed: int = 0, annealing: dict[str, Any] | None = None,
                 **options: Any) -> None:
        self.annealing = dict(annealing or {})
        TreeAnnealer(**self.annealing)  # fail early on bad options
        super().__init__(initial, seed, **options)

    def propose(self, trial_id: int) -> Suggestion | None:
        trained = self.trained
        if not trained:
            return None
        rng, gp, best, info = self.begin_proposal()
        roots = [Root(o.trial_id, o.architecture, self._index[o.trial_id]) for o in self.trained_models]
        annealer = TreeAnnealer(noise=self.noise, limits=self.limits, **self.annealing)
        proposal = annealer.optimize(self.cache, roots, self.scorer(gp, best, rng), rng)
        self.last_stats = {} if proposal is None else dict(proposal.stats)
        if proposal is None:
            return self.fallback(rng, self.finish_info(info), "annealing found no unseen child")
        info = self.finish_info(info, reason="acquisition", acquisition=proposal.score, mean=proposal.mean,
                                std=proposal.std, annealing=dict(proposal.stats))
        return Suggestion(proposal.graph, proposal.parent, proposal.ops, self.inherit_weights, info)


class BOScratch(AutoKerasSearch):
    """The paper's ablation: the same Bayesian choices, each architecture trained from scratch."""

    name = "bo-scratch"
    inherit_weights = False
