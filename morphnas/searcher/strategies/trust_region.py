"""``bayesian``, the default strategy: Bayesian optimization inside a trust region of morphism steps around
the best models.

Why: on NAS landscapes, local search is hard to beat (White et al., UAI 2021), and BO wins when its candidates
stay near the incumbent while the model still ranks them (BANANAS: mutations of the best as the acquisition
pool; NAS-BOWL: half the pool from mutations of the top models; TuRBO: a trust region whose size adapts).
Our own diagnosis of the paper's configuration (``autokeras``) agreed: the GP ranked architectures well, but
UCB over a tree annealing spread the budget over the least-known regions, and a fixed cap of 3 morphisms per
proposal made it walk too slowly away from a small start.

How: each suggestion draws a pool of unseen candidates, each ``L`` random morphisms of the best trained model (of the
current climb, after a ``reclimb``) (``L`` uniform in ``1..radius``; with ``p_best`` below 1, the parent is the best
with that probability and else one of the next ``top_k - 1`` models); the GP (with a
fantasy for every pending trial, so trials in flight together differ) scores the pool by the acquisition (EI by
default) and the best is suggested. The radius, in morphism steps, adapts like TuRBO's: after
``success_tolerance`` observations in a row that improve the best, it doubles (up to ``max_radius``); after
``failure_tolerance`` in a row that do not, it halves (down to 1). Far moves early while far moves pay, fine
moves near the top.

The GP's kernel is ``additive`` by default: a learned mix of the edit distance's ``bourgain`` kernel and an ARD
RBF on architecture descriptors (parameters, MACs, depth, skips of each kind, widths, each kind's skip span;
``kernels/descriptors.py``). Why, measured: with the edit-distance kernel alone, EI's pick among the best model's
children was no better than a random child's on stats-target and worse on skip-pattern (which skip pays depends
on its kind and span, which the edit distance barely weighs) (``bench_local_choice``), and replacing the
acquisition by random scores over the same pool did not lose (issue 11's first ablation). With the descriptors
beside it the model ranks the pool: on held-out seeds the random-scores control loses on every objective's
median at 50 evaluations and on most seeds of each (docs/benchmarks.md, fourth round).

EI asks for an improvement larger than the noise (``noise_margin``, on by default): the incumbent it must beat is
the best observed metric plus the GP's fitted noise, as a standard deviation in metric units. Why, measured: with
the plain incumbent, a search whose first skips all cost something learned "skips are bad" and then spent the rest
of its budget on widenings and deepenings predicted a hair above the best: on a plateau, noise-sized "improvements"
with a tiny spread win EI, so the model never looked elsewhere (skip-pattern, tuning seed 8, stuck at 0.600 from its
second evaluation to its fiftieth). With the margin those candidates score near zero, and EI goes where the
posterior's spread could still pay (the same seed reaches 0.93). The margin follows the fitted noise, so it is as
large as the metric's noise on any task, with no constant to tune (a fixed margin of 0.005 did as well on the
synthetic objectives, whose noise is 0.005, and would be wrong on any other). It is read from the GP as conditioned
on the pending trials' fantasies (their values enter the metric's spread), adds to any ``xi`` the acquisition has,
and is 0 while every metric observed is equal. Fifth round of issue 11, docs/benchmarks.md. The fitted noise is
itself an estimate: on a start whose neighbourhood is flat within the noise it came out at a quarter of the true
noise (the GP read noise as signal), so there the margin is small (sixth round).

The region's size is a trade, measured (sixth round): a larger first region (``radius`` 3 or 4) gains early where
far moves pay (far-optimum and stats-target at 10 evaluations; real training at 12 trials, where it closed most of
the gap to ``autokeras``), and loses skip-pattern late, because an early chain of random morphisms adds a skip that
costs and that no morphism can remove. Radius 3 was put to two rules fixed before their runs and failed both on
skip-pattern at 50 evaluations, so radius 2 stays the default. What radius 3 loses there was measured in the
seventh round (``benchmarks/skip_pattern_anatomy.py``): a costly skip locked in on more seeds, and a best model
larger than the hidden size (morphisms only add parameters too). ``chain_skips=0`` (a proposal of several morphisms
only deepens and widens, so a skip is proposed alone and enters the best model only if it pays alone) removed most
of the costly skips but not the overshoot, and gathered the paying skips more slowly; with radius 3 it failed its
rule on skip-pattern at 50 with 4 pending, as radius 3 had, so it is off by default (``chain_skips=None``: no cap).

Every candidate is a child of the best model (``p_best`` 1, as BANANAS's pool is mutations of the best), because on
real training a model is more than its architecture: a child starts from its parent's trained weights and trains on,
so it gains about as much over whichever parent it has (a median +0.015 at 3 epochs on Fashion-MNIST), and the best
model's generation ranks with its accuracy (Spearman 0.42 over 65 real searches; ``benchmarks/lineage_anatomy.py``).
The GP sees architectures only, so a child of the third model looked as promising as a child of the best; with half
of the pool from the second and third models (``p_best`` 0.5, the default until issue 11's eighth round) only 75 % of
the proposals descended from the best, and the strategy lost to hill climbing on real training (0.842 against
0.847, seeds 0–9). With children of the best only it reached 0.850 and beat the old default on 9 seeds of 10; on
the synthetic objectives, which score architectures alone, the two pools are level (60 held-out seeds; every
criterion the old pool met is kept, and skip-pattern with 4 pending is gained; docs/benchmarks.md, eighth round).

After a stall the strategy starts a new climb (``reclimb``, 6 by default): after that many observations in a row that
do not improve the climb's best, the parents are the first model and the new climb's own trials, EI's incumbent is
the new climb's best, and its trust region starts afresh; the GP keeps every observation, so the new climb is
steered by all that was learned, and the search's best stays its answer. Why: morphisms only add, so no sequence of
them removes a layer, a 5x5 convolution or a skip, and a best model that overshot one of those is a dead end: all
of its descendants are worse (the sixth round traced them). Its children miss, the region collapses, and without a
new climb the rest of the budget went on near-copies of it (stats-target tuning seed 9: stuck at 0.726 for the last
35 evaluations). TuRBO restarts a collapsed trust region the same way. The first model is the first one trained (its
promotions in a multi-fidelity search join the climb); a climb that stalls again starts over from it; a trial of an
abandoned climb still pending when the new one starts does not join it, even if it turns out the search's best (it
stays the search's answer, not a parent: a choice measured as such, ninth round). Measured (docs/benchmarks.md): with
8 (ninth round) it beat the previous strategy on the tuning seeds on skip-pattern (12-3) and stats-target (12-2) at
50 evaluations, and met the criterion on 60 held-out seeds with 1 pending on far-optimum and skip-pattern; with 6
(tenth round) the new climbs start sooner, with more of the budget left to pay, and with 1 pending it meets the
criterion on all three objectives (stats-target 0.855 against hill climbing's 0.847). The cost is with 4 pending:
the trials proposed before an improvement was known come back as misses, so new climbs start while the old one still
pays, and it loses to 8 there on far-optimum (5-22 seeds) and stats-target (2-34), while still meeting the criterion.
``reclimb_per_pending`` (off) adds one to the limit per trial in flight beyond the first: it recovered those losses
but failed its rule by a hair on skip-pattern with 4 pending (tenth round). On real training a child starts from its
parent's weights and usually gains on it, so within a short search 6 misses in a row are rare (one cell of ten, at
its last trial).

When the region has collapsed to one morphism, ``climb_collapsed`` (off by default; it was the default while the
kernel could not rank) proposes hill-climbing moves, a random unseen one-morphism child of the best, until
successes grow the region again; each climb draws its morphism's kind (deeper, wider, add or concat skip) by
Thompson sampling on each kind's record of improving the best over every one-morphism child observed
(``climb_kinds``: adaptive operator selection, as evolutionary algorithms do). The default region is small
(``radius`` 2, at most 4, halved after every miss): chains of many random morphisms carry parts that do not pay
and that no morphism can remove.

Options measured and left off (docs/benchmarks.md): ``restart`` (a region collapsed to one morphism that still
fails jumps back to ``max_radius``, as TuRBO restarts its region); ``local_share`` (that share of the pool one
morphism from the best); ``portfolio`` (each proposal is the acquisition's pick or a uniform pick among the best
model's children in the pool, by Thompson sampling on each arm's record of improving the best, as GP-Hedge keeps
a portfolio of acquisitions); ``climb_share`` (that share of all proposals a hill-climbing move); ``local_fit``
(fit the GP on only that many observations, those nearest the best in edit distance, as TuRBO fits its model
inside the region); ``min_improvers`` (a hill-climbing move when the model expects fewer than that many improvements
in its pool, the sum of each candidate's probability of beating EI's incumbent: the model's pick is then decided by
its tails); ``reclimb_radius`` and ``reclimb_max_radius`` (a new climb's first and largest radius: capped at one
morphism a new climb, 20-30 evaluations behind the old best, cannot catch up) and ``climb_incumbent=False`` (EI's
incumbent in a new climb is the search's best: the acquisition is then all tails; tenth round).
``control="random-scores"`` replaces the acquisition by random numbers over the same pool:
the ablation that shows whether the model, not the pool, is what wins.

Trials in flight together must differ, and not trivially: with four pending, the fantasies alone still let EI
pick "wider" on the best model four times over (different layers, all close in the kernel; NNI's parallel
tuner had the same fault, #2449). So a candidate's acquisition is multiplied by ``diversity`` (0.5) for every
pending trial that made the same move — the same parent and the same kinds of morphism.

In a multi-fidelity search the parents are the top ``top_k`` of ``ranked_models`` (the highest rung first, each
lineage's longest-trained model), the GP models first-rung metrics (``bayesian.py``), and the trust region
counts only first-rung observations as its successes and failures: those are the outcomes of its own moves,
while a promotion's metric is another fidelity's (it would read as an improvement every time).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import RANDOM_OP_NAMES, Op
from morphnas.searcher.acquisition import PI
from morphnas.searcher.strategies.base import Observation, Suggestion
from morphnas.searcher.strategies.bayesian import GPStrategy

CONTROLS = (None, "random-scores")
ARMS = ("model", "random")  # the portfolio's two ways to pick from the pool
SKIP_OP_NAMES = ("add_skip", "concat_skip")
SIZE_OP_NAMES = tuple(k for k in RANDOM_OP_NAMES if k not in SKIP_OP_NAMES)  # what a chain adds past ``chain_skips``


class BayesianSearch(GPStrategy):
    """GP + EI over a pool of candidates within an adaptive number of morphisms of the best model.

    ``pool_size``: candidates scored per suggestion; ``p_best``, ``top_k``: the best model is the parent with
    probability ``p_best`` (default 1: always; module doc), else one of the next ``top_k - 1``;
    ``radius`` (initial), ``max_radius``, ``success_tolerance``, ``failure_tolerance``, ``min_improvement``:
    the trust region in morphism steps (module doc); ``restart``, ``local_share``, ``portfolio``, ``climb_share``,
    ``local_fit``, ``climb_collapsed``, ``climb_kinds``: see the module doc;
    ``noise_margin``: EI's incumbent is the best metric plus the GP's fitted noise (default on; module doc);
    ``chain_skips``: at most that many skip morphisms in a proposal of several (None: no cap; module doc);
    ``reclimb``: after that many misses in a row, a new climb from the first model (0: never; module doc);
    ``reclimb_per_pending``: that many plus one for each trial in flight beyond the first (module doc);
    ``reclimb_radius``, ``reclimb_max_radius``: a new climb's first and largest radius (None: ``radius`` and
    ``max_radius``; module doc);
    ``climb_incumbent``: a new climb's EI incumbent is its own best (default) or, False, the search's (module doc);
    ``min_improvers``: a hill-climbing move when the model expects fewer improvements in its pool (module doc);
    ``diversity``: the factor per pending trial with the same move; ``control``: None, or ``"random-scores"``
    (ablation); ``kernel``: ``"additive"`` (edit distance + descriptors; ``"bourgain"`` is the
    paper's). Other options (fantasy, refit...) as ``GPStrategy``.
    """

    name = "bayesian"

    def __init__(self, initial: Sequence[Graph], seed: int = 0, acquisition: str = "ei", pool_size: int = 64,
                 top_k: int = 3, p_best: float = 1.0, radius: int = 2, max_radius: int = 4,
                 success_tolerance: int = 2, failure_tolerance: int = 1, min_improvement: float = 1e-3,
                 control: str | None = None, diversity: float = 0.5, local_share: float = 0.0,
                 restart: bool = False, portfolio: bool = False, climb_share: float = 0.0,
                 local_fit: int = 0, climb_collapsed: bool = False, climb_kinds: bool = True,
                 noise_margin: bool = True, chain_skips: int | None = None, min_improvers: float = 0.0,
                 reclimb: int = 6, reclimb_per_pending: bool = False, climb_incumbent: bool = True,
                 reclimb_radius: int | None = None, reclimb_max_radius: int | None = None, kernel: str = "additive",
                 **options: Any) -> None:
        if control not in CONTROLS:
            raise ValueError(f"unknown control {control!r}; valid: {', '.join(str(c) for c in CONTROLS)}")
        if not (pool_size >= 1 and top_k >= 1 and 1 <= radius <= max_radius and 0.0 <= p_best <= 1.0
                and success_tolerance >= 1 and failure_tolerance >= 1):
            raise ValueError("bayesian needs pool_size >= 1, top_k >= 1, 1 <= radius <= max_radius, "
                             "0 <= p_best <= 1 and tolerances >= 1")
        self.pool_size, self.top_k, self.p_best = int(pool_size), int(top_k), float(p_best)
        self.initial_radius, self.max_radius = int(radius), int(max_radius)
        self.success_tolerance, self.failure_tolerance = int(success_tolerance), int(failure_tolerance)
        self.min_improvement = float(min_improvement)
        self.control = control
        if not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {diversity!r}")
        self.diversity = float(diversity)
        if not 0.0 <= local_share <= 1.0:
            raise ValueError(f"local_share must be in [0, 1], got {local_share!r}")
        self.local_share = float(local_share)
        self.restart = bool(restart)
        self.portfolio = bool(portfolio)
        if not 0.0 <= climb_share <= 1.0:
            raise ValueError(f"climb_share must be in [0, 1], got {climb_share!r}")
        self.climb_share = float(climb_share)
        if local_fit < 0:
            raise ValueError(f"local_fit must be >= 0 (0: fit on every observation), got {local_fit!r}")
        self.local_fit = int(local_fit)
        self.climb_collapsed = bool(climb_collapsed)
        self.climb_kinds = bool(climb_kinds)
        self.noise_margin = bool(noise_margin)
        if chain_skips is not None and int(chain_skips) < 0:
            raise ValueError(f"chain_skips must be None (no limit) or >= 0, got {chain_skips!r}")
        self.chain_skips = None if chain_skips is None else int(chain_skips)
        if not min_improvers >= 0.0:
            raise ValueError(f"min_improvers must be >= 0 (0: always follow the model), got {min_improvers!r}")
        self.min_improvers = float(min_improvers)
        if reclimb < 0:
            raise ValueError(f"reclimb must be >= 0 (0: never start a new climb), got {reclimb!r}")
        self.reclimb = int(reclimb)
        self.reclimb_per_pending = bool(reclimb_per_pending)
        self.climb_incumbent = bool(climb_incumbent)
        for option, value in (("reclimb_radius", reclimb_radius), ("reclimb_max_radius", reclimb_max_radius)):
            if value is not None and not 1 <= int(value) <= max_radius:
                raise ValueError(f"{option} must be None or in 1..max_radius ({max_radius}), got {value!r}")
        self.reclimb_radius = None if reclimb_radius is None else int(reclimb_radius)
        self.reclimb_max_radius = None if reclimb_max_radius is None else int(reclimb_max_radius)
        super().__init__(initial, seed, acquisition=acquisition, kernel=kernel, **options)

    def _reset(self) -> None:
        super()._reset()
        self.radius = self.initial_radius
        self.successes = self.failures = 0
        self._best_seen: float | None = None
        self.arms = {arm: [0, 0] for arm in ARMS}  # the portfolio: [improved the best, did not] per arm
        self._arm_of: dict[int, str] = {}  # pending trial -> the arm that proposed it
        self.kinds = {kind: [0, 0] for kind in RANDOM_OP_NAMES}  # one-morphism children: [improved, not] per kind
        self._kind_of: dict[int, str] = {}  # pending one-morphism child -> its morphism's kind
        self.stalled = 0  # observations in a row that did not improve the climb's best (``reclimb``)
        self.branch: set[int] | None = None  # after a reclimb: the new climb's trials (None: every trial)

    # ------------------------------------------------------------------ the trust region
    def on_observe(self, observation: Observation) -> None:
        """Grow the region after a run of improvements, shrink it after a run of misses."""
        super().on_observe(observation)
        arm = self._arm_of.pop(observation.trial_id, None)
        kind = self._kind_of.pop(observation.trial_id, None)
        if self.branch is not None and observation.continues in self.branch:
            self.branch.add(observation.trial_id)  # a promotion of the new climb's model stays in the climb
        if not observation.ok or observation.rung > 0:  # a promotion is not this strategy's move
            return
        if self.branch is not None and observation.trial_id not in self.branch:
            return  # a trial of an abandoned climb, observed late: not this climb's success or failure (module doc)
        value = float(observation.metric)
        if self._best_seen is None:
            self._best_seen = value
            return
        improved = value > self._best_seen + self.min_improvement * max(1.0, abs(self._best_seen))
        if improved:
            self.successes, self.failures, self.stalled = self.successes + 1, 0, 0
        else:
            self.successes, self.failures, self.stalled = 0, self.failures + 1, self.stalled + 1
        if arm is not None:
            self.arms[arm][0 if improved else 1] += 1
        if kind is not None:
            self.kinds[kind][0 if improved else 1] += 1
        self._best_seen = max(self._best_seen, value)
        if self.successes >= self.success_tolerance:
            self.radius, self.successes = min(2 * self.radius, self.region_cap()), 0
        elif self.failures >= self.failure_tolerance:
            collapsed = self.radius == 1 and self.restart  # the model expects nothing more nearby: jump
            self.radius, self.failures = (self.region_cap() if collapsed else max(self.radius // 2, 1)), 0
        if self.reclimb and self.stalled >= self.stall_limit():
            self._start_climb()

    def stall_limit(self) -> int:
        """The misses in a row that start a new climb: ``reclimb``, plus with ``reclimb_per_pending`` one for each
        trial in flight beyond the first (they were proposed before the latest outcomes were known; module doc)."""
        return self.reclimb + (max(0, len(self.pending) - 1) if self.reclimb_per_pending else 0)

    def _start_climb(self) -> None:
        """Begin a new climb from the first trained model (``reclimb``): morphisms only add, so a best model whose
        children stopped improving may sit where no sequence of them leads further; the new climb keeps the GP (every
        observation) but has its own parents, incumbent and trust region."""
        trained = self.trained
        if not trained:  # nothing to climb from (observations fed to ``on_observe`` alone)
            return
        root = trained[0]  # the first model, as first trained (its promotions, if any, join the climb)
        self.branch = {root.trial_id}
        for o in trained:  # by trial id, so a promotion of a promotion follows its own
            if o.continues in self.branch:
                self.branch.add(o.trial_id)
        self._best_seen = float(root.metric)
        self.successes, self.failures, self.stalled = 0, 0, 0
        start = self.initial_radius if self.reclimb_radius is None else self.reclimb_radius
        self.radius = min(start, self.region_cap())

    def region_cap(self) -> int:
        """The trust region's largest radius: ``max_radius``, or in a new climb ``reclimb_max_radius`` when set."""
        if self.branch is not None and self.reclimb_max_radius is not None:
            return self.reclimb_max_radius
        return self.max_radius

    def modelled(self) -> list[Observation]:
        """With ``local_fit``, only the ``local_fit`` modelled observations nearest the best one in edit distance
        (TuRBO's local model), by trial id; else every modelled observation."""
        modelled = super().modelled()
        if not self.local_fit or len(modelled) <= self.local_fit:
            return modelled
        best = max(modelled, key=lambda o: (o.metric, -o.trial_id))
        d = self.cache.distances([self._index[best.trial_id]], [self._index[o.trial_id] for o in modelled])[0]
        keep = set(np.argsort(d, kind="stable")[: self.local_fit].tolist())
        return [o for i, o in enumerate(modelled) if i in keep]

    def _parents(self) -> list[Observation]:
        ranked = self.ranked_models()
        if self.branch is not None:  # the current climb's models only
            ranked = [o for o in ranked if o.trial_id in self.branch] or ranked
        return ranked[: self.top_k]

    def candidate_pool(self, rng: np.random.Generator) -> list[tuple[Observation, tuple[Op, ...], Graph]]:
        """Up to ``pool_size`` unseen, distinct children: ``local_share`` of them one morphism from the best
        model, the rest within ``radius`` morphisms of the top models."""
        parents = self._parents()
        pool: list[tuple[Observation, tuple[Op, ...], Graph]] = []
        keys: set[str] = set()

        def draw(count: int, local: bool) -> None:
            goal = len(pool) + count
            for _ in range(4 * count):
                if len(pool) >= goal:
                    return
                use_best = local or len(parents) == 1 or rng.random() < self.p_best
                parent = parents[0] if use_best else parents[int(rng.integers(1, len(parents)))]
                length = 1 if local else int(rng.integers(1, self.radius + 1))
                chain = self._chain(parent.architecture, length, rng)
                if chain is None:
                    continue
                graph, ops = chain
                key = graph.canonical_hash()
                if key in keys or self.is_seen(key):
                    continue
                keys.add(key)
                pool.append((parent, ops, graph))

        draw(round(self.local_share * self.pool_size), local=True)
        draw(self.pool_size - len(pool), local=False)
        return pool

    def _chain(self, graph: Graph, length: int, rng: np.random.Generator) -> tuple[Graph, tuple[Op, ...]] | None:
        """``length`` random morphisms of ``graph``; with ``chain_skips``, a chain of several adds at most that many
        skips (then only deeper and wider), while a single morphism may be any kind."""
        if self.chain_skips is None or length == 1:
            return self.morph_chain(graph, length, rng)
        ops: tuple[Op, ...] = ()
        for _ in range(length):
            skips = sum(op.name in SKIP_OP_NAMES for op in ops)
            step = self.morph_chain(graph, 1, rng, RANDOM_OP_NAMES if skips < self.chain_skips else SIZE_OP_NAMES)
            if step is None:
                return None
            graph, ops = step[0], ops + step[1]
        return graph, ops

    def propose(self, trial_id: int) -> Suggestion | None:
        trained = self.trained
        if not trained:
            return None
        climb = self.climb_collapsed and self.radius == 1  # the model failed at every radius: climb instead
        if climb or (self.climb_share and self.rng.random() < self.climb_share):  # a hill-climbing move, no model
            rng = np.random.default_rng(int(self.rng.integers(2**63 - 1)))
            why = "climb: a random one-morphism child of the best" + (" (region collapsed)" if climb else "")
            found = self._climb(rng, why)
            if found is not None:
                return found
        rng, gp, best, info = self.begin_proposal()
        if self.branch is not None and self.climb_incumbent:  # EI's incumbent is this climb's best
            best = max((o.metric for o in GPStrategy.modelled(self) if o.trial_id in self.branch), default=best)
        if self.noise_margin:  # an improvement smaller than the noise is not one
            best += gp.noise_std
        pool = self.candidate_pool(rng)
        info.update(radius=self.radius, pool=len(pool))
        if not pool:
            return self.fallback(rng, self.finish_info(info), "no unseen candidate within the trust region")
        idx = self.cache.set_scratch([g for _, _, g in pool])
        try:
            values, post = self.scorer(gp, best, rng)(idx)
        finally:
            self.cache.clear_scratch()
        arm = self._choose_arm(rng)
        more: dict[str, Any] = {}
        if self.min_improvers and self.control is None and arm == "model":
            improvers = float(PI()(post, best, rng).sum())  # the pool's expected number of improvements
            if improvers < self.min_improvers:  # the model expects no improvement here: its pick is its tails'
                why = f"climb: the model expects {improvers:.2g} of {len(pool)} candidates to improve"
                found = self._climb(rng, why)
                if found is not None:
                    return Suggestion(found.architecture, found.parent, found.ops, found.inherit_weights,
                                      {**found.info, "improvers": improvers})
            more["improvers"] = improvers
        if self.control == "random-scores":
            values = rng.random(len(pool))
        elif arm == "random":  # a uniform pick among the best model's children in the pool
            best_id = self._parents()[0].trial_id  # a non-empty pool has parents
            values = rng.random(len(pool)) * np.array([p.trial_id == best_id for p, _, _ in pool], dtype=float)
            values = values if values.max() > 0 else rng.random(len(pool))
        elif self.pending and self.diversity < 1.0:
            values = values * self.diversity ** np.array([self._repeats(p.trial_id, o) for p, o, _ in pool])
        k = int(np.argmax(values))
        parent, ops, graph = pool[k]
        info = self.finish_info(info, reason="acquisition" if arm == "model" else "portfolio: random child",
                                incumbent=best, acquisition=float(values[k]), mean=float(post.mean[k]),
                                std=float(post.std[k]), ops=len(ops), arm=arm, **more)
        return Suggestion(graph, parent.trial_id, ops, self.inherit_weights, info)

    def _kind_climb(self, rng: np.random.Generator, why: str) -> Suggestion | None:
        """A random unseen one-morphism child of the best whose morphism is of a kind drawn by Thompson sampling on
        each kind's record of improving the best (``climb_kinds``), or None when none of that kind was found."""
        draws = {kind: rng.beta(1 + won, 1 + lost) for kind, (won, lost) in self.kinds.items()}
        kind = max(RANDOM_OP_NAMES, key=lambda k: draws[k])
        best = self._parents()[0]
        for _ in range(64):
            chain = self.morph_chain(best.architecture, 1, rng)
            if chain is not None and chain[1][0].name == kind and not self.is_seen(chain[0]):
                return Suggestion(chain[0], best.trial_id, chain[1], self.inherit_weights,
                                  {"strategy": self.name, "reason": f"{why}, kind {kind}"})
        return None

    def _climb(self, rng: np.random.Generator, why: str) -> Suggestion | None:
        """A hill-climbing move within the current climb: an unseen one-morphism child of its best model, the
        morphism's kind drawn by ``climb_kinds`` when on (any kind when none of that kind is found)."""
        kind = self._kind_climb(rng, why) if self.climb_kinds else None
        return kind or self.child_of_best(rng, 1, why, self._parents())

    def fallback_parent(self) -> Observation:
        """The current climb's best model (module doc: ``reclimb``)."""
        return self._parents()[0]

    def _choose_arm(self, rng: np.random.Generator) -> str:
        """``model`` (the acquisition's pick) or, with ``portfolio``, ``random`` (a uniform child of the best):
        Thompson sampling on each arm's record of improving the best (module doc)."""
        if not self.portfolio:
            return "model"
        draws = {arm: rng.beta(1 + won, 1 + lost) for arm, (won, lost) in self.arms.items()}
        return max(ARMS, key=lambda arm: draws[arm])

    def on_suggest(self, trial_id: int, suggestion: Suggestion) -> None:
        """Remember which arm proposed the trial (the portfolio's record is kept when it is observed)."""
        super().on_suggest(trial_id, suggestion)
        arm = suggestion.info.get("arm")
        if arm in ARMS:
            self._arm_of[trial_id] = arm
        if len(suggestion.ops) == 1 and suggestion.ops[0].name in self.kinds:
            self._kind_of[trial_id] = suggestion.ops[0].name
        if self.branch is not None and suggestion.parent in self.branch:
            self.branch.add(trial_id)

    def on_cancel(self, trial_id: int, suggestion: Suggestion) -> None:
        super().on_cancel(trial_id, suggestion)
        self._arm_of.pop(trial_id, None)
        self._kind_of.pop(trial_id, None)
        if self.branch is not None:
            self.branch.discard(trial_id)

    @staticmethod
    def move(parent: int | None, ops: Sequence[Op]) -> tuple[int | None, tuple[str, ...]]:
        """What a suggestion does, coarsely: its parent and the sorted kinds of its morphisms."""
        return parent, tuple(sorted(op.name for op in ops))

    def _repeats(self, parent: int, ops: Sequence[Op]) -> int:
        """How many pending trials made the same move."""
        mine = self.move(parent, ops)
        return sum(self.move(s.parent, s.ops) == mine for s in self.pending.values())

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "radius": self.radius, "successes": self.successes,
                "failures": self.failures, "best_seen": self._best_seen, "arms": self.arms,
                "kinds": self.kinds, "noise_margin": self.noise_margin, "chain_skips": self.chain_skips,
                "p_best": self.p_best, "reclimb": self.reclimb, "stalled": self.stalled,
                "reclimb_per_pending": self.reclimb_per_pending,
                "min_improvers": self.min_improvers, "reclimb_radius": self.reclimb_radius,
                "reclimb_max_radius": self.reclimb_max_radius, "climb_incumbent": self.climb_incumbent,
                "branch": None if self.branch is None else sorted(self.branch)}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        super().load_extra_state(extra)
        self.radius = int(extra.get("radius", self.initial_radius))
        self.successes, self.failures = int(extra.get("successes", 0)), int(extra.get("failures", 0))
        self._best_seen = extra.get("best_seen")
        self.arms = {arm: [int(v) for v in extra.get("arms", {}).get(arm, [0, 0])] for arm in ARMS}
        self.kinds = {kind: [int(v) for v in extra.get("kinds", {}).get(kind, [0, 0])] for kind in RANDOM_OP_NAMES}
        self.stalled = int(extra.get("stalled", 0))
        branch = extra.get("branch")
        self.branch = None if branch is None else {int(t) for t in branch}
        # a search continues as it started: a state saved before an option existed ran with that option's old
        # default (no margin, no skip cap, half of the pool from the second and third models, no new climb),
        # whatever this strategy was built with
        self.noise_margin = self._recorded("noise_margin", bool(extra.get("noise_margin", False)))
        cap = extra.get("chain_skips")
        self.chain_skips = self._recorded("chain_skips", None if cap is None else int(cap))
        self.p_best = self._recorded("p_best", float(extra.get("p_best", 0.5)))
        self.reclimb = self._recorded("reclimb", int(extra.get("reclimb", 0)))
        self.reclimb_per_pending = self._recorded("reclimb_per_pending", bool(extra.get("reclimb_per_pending", False)))
        # min_improvers existed before it was recorded: an old state keeps the value this strategy was built with;
        # the new climb's options did not, so a state without them ran with them off
        self.min_improvers = self._recorded("min_improvers", float(extra.get("min_improvers", self.min_improvers)))
        for option in ("reclimb_radius", "reclimb_max_radius"):
            value = extra.get(option)
            setattr(self, option, self._recorded(option, None if value is None else int(value)))
        self.climb_incumbent = self._recorded("climb_incumbent", bool(extra.get("climb_incumbent", True)))

    def _recorded(self, option: str, recorded: Any) -> Any:
        """The value a saved search ran ``option`` with; a warning when this strategy was built with another."""
        built = getattr(self, option)
        if recorded != built:
            warnings.warn(f"bayesian: the saved search ran with {option}={recorded}; it continues so (this strategy "
                          f"was built with {option}={built})", UserWarning, stacklevel=3)
        return recorded
