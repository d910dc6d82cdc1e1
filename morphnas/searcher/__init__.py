"""The searcher: edit distance, kernels, GP, acquisitions, the acquisition optimizer and search strategies.

Architectures reach the GP as indices into an ``ArchitectureCache`` (descriptors and an incrementally grown
edit-distance matrix, its layer term from ``levenshtein`` and its skip term from ``skipmatch``). Kernels,
acquisitions and strategies are chosen by name from registries that users extend with ``register_kernel`` /
``register_acquisition`` / ``register_strategy``. A strategy's ``suggest`` returns None only while waiting on a
pending trial can help, and raises ``StrategyExhausted`` when nothing can be proposed any more.
"""

from morphnas.searcher.acquisition import (
    ACQUISITIONS,
    EI,
    PI,
    UCB,
    Acquisition,
    Thompson,
    make_acquisition,
    register_acquisition,
)
from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.distance import (
    SEQUENCE_KINDS,
    SIZE_ATTRIBUTES,
    Descriptor,
    describe,
    edit_distance,
    layer_cost,
    layers_distance,
    main_chain,
    skip_cost,
    skips_distance,
)
from morphnas.searcher.gp import ArchitectureGP, GPError, Posterior
from morphnas.searcher.kernels import (
    KERNELS,
    ArchitectureKernel,
    BourgainKernel,
    ExpDistanceKernel,
    WLKernel,
    make_kernel,
    register_kernel,
)
from morphnas.searcher.levenshtein import TokenVocabulary, levenshtein_batch
from morphnas.searcher.optimizer import Proposal, Root, TreeAnnealer
from morphnas.searcher.registry import Registry
from morphnas.searcher.skipmatch import SkipSetMatcher
from morphnas.searcher.strategies import (
    STRATEGIES,
    AgingEvolution,
    ArchitectureSampler,
    AutoKerasSearch,
    BayesianSearch,
    BOScratch,
    BreadthFirst,
    HillClimbing,
    Observation,
    RandomSearch,
    RandomWalk,
    Strategy,
    StrategyExhausted,
    Suggestion,
    make_strategy,
    register_strategy,
)

__all__ = [
    "ACQUISITIONS",
    "EI",
    "KERNELS",
    "PI",
    "SEQUENCE_KINDS",
    "SIZE_ATTRIBUTES",
    "STRATEGIES",
    "UCB",
    "Acquisition",
    "AgingEvolution",
    "ArchitectureCache",
    "ArchitectureGP",
    "ArchitectureKernel",
    "ArchitectureSampler",
    "AutoKerasSearch",
    "BOScratch",
    "BayesianSearch",
    "BourgainKernel",
    "BreadthFirst",
    "Descriptor",
    "ExpDistanceKernel",
    "GPError",
    "HillClimbing",
    "Observation",
    "Posterior",
    "Proposal",
    "RandomSearch",
    "RandomWalk",
    "Registry",
    "Root",
    "SkipSetMatcher",
    "Strategy",
    "StrategyExhausted",
    "Suggestion",
    "Thompson",
    "TokenVocabulary",
    "TreeAnnealer",
    "WLKernel",
    "describe",
    "edit_distance",
    "layer_cost",
    "layers_distance",
    "levenshtein_batch",
    "main_chain",
    "make_acquisition",
    "make_kernel",
    "make_strategy",
    "register_acquisition",
    "register_kernel",
    "register_strategy",
    "skip_cost",
    "skips_distance",
]
