"""morphnas: neural architecture search by network morphism guided by Bayesian optimization.

The public API is re-exported here; the four parts live in `morphnas.graph` (architectures and
morphisms), `morphnas.searcher` (distances, kernels, GP, acquisitions, strategies), `morphnas.trainer`
(datasets and training) and `morphnas.storage` (run directories).
"""

__version__ = "0.1.0"
