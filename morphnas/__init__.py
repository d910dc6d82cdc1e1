"""morphnas: neural architecture search by network morphism guided by Bayesian optimization.

The public API: ``search``, ``resume``, ``train``, ``Run``, ``compare``, ``ImageClassifier`` and ``SearchConfig``.
The four parts live in ``morphnas.graph`` (architectures and morphisms), ``morphnas.searcher`` (distances,
kernels, GP, acquisitions, strategies), ``morphnas.trainer`` (datasets and training) and
``morphnas.storage`` (run directories); ``morphnas.engine`` wires them into searches.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("ImageClassifier", "Run", "SearchConfig", "compare", "resume", "search", "train")


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import morphnas.graph` does not pull in the trainer, GPyTorch or TensorBoard.
    if name in _API:
        import morphnas.engine as engine

        return getattr(engine, name)
    raise AttributeError(f"module 'morphnas' has no attribute {name!r}")


__all__ = [*_API, "__version__"]
