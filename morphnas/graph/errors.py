"""The graph package's error type, in a module of its own so that every module of the package can raise it
without importing ``graph.py`` (which imports them: no import cycles)."""


class GraphError(ValueError):
    """The architecture is invalid, or an operation on it names something that is not there."""
