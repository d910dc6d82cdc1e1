"""Architectures as graphs: the IR, layer specs, generators, function-preserving morphisms, compilation to
PyTorch and (de)serialization. Never imports optimisers or data code."""

from morphnas.graph.graph import Graph, GraphError
from morphnas.graph.layers import (
    Add,
    AvgPool,
    BatchNorm,
    Concat,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    MaxPool,
    ReLU,
    ShapeError,
)

__all__ = [
    "Add",
    "AvgPool",
    "BatchNorm",
    "Concat",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Graph",
    "GraphError",
    "Layer",
    "MaxPool",
    "ReLU",
    "ShapeError",
]
