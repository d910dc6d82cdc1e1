"""The search engine: configuration, the search loop, trial execution, results, export and the Python API.

It wires the four parts together (graph, searcher, trainer, storage) and is the only package that imports
all of them, so the parts themselves keep one-way dependencies.
"""

from morphnas.engine.api import ImageClassifier, Run, compare, resume, search, train
from morphnas.engine.config import SearchConfig

__all__ = ["ImageClassifier", "Run", "SearchConfig", "compare", "resume", "search", "train"]
