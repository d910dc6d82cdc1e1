"""Layer specifications: the edges of an architecture graph.

Each spec is a small frozen dataclass that knows its output shape for given input shapes, the shapes of
its parameters, how to initialise them, and which PyTorch module computes it. Shapes are per sample and
channels-first: ``(C, H, W)`` for images, ``(F,)`` for features.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A layer cannot take the shapes it is given (the graph would be invalid)."""


@dataclass(frozen=True)
class Layer:
    """Base of all layer specs; ``kind`` names the layer in JSON and in errors."""

    kind: ClassVar[str] = "layer"
    n_inputs: ClassVar[int] = 1  # 0 means "two or more"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        """Shape of the output for these input shapes; raises ShapeError when they do not fit."""
        raise ShapeError(f"{self.kind}: no shape rule")

    def param_shapes(self) -> dict[str, Shape]:
        """Shapes of the tensors this layer carries (parameters and buffers), by name."""
        return {}

    def init_weights(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Freshly initialised tensors (PyTorch's default schemes), drawn from ``generator``."""
        return {}

    def module(self) -> nn.Module | None:
        """The nn.Module that computes this layer, or None for a function (Add, Concat, Flatten...)."""
        return None

    def n_params(self) -> int:
        """Trainable parameter count, as PyTorch counts it for the compiled module."""
        return 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description: ``{"kind": ..., **attributes}``."""
        return {"kind": self.kind, **asdict(self)}

    def describe(self) -> str:
        """Short human-readable form, e.g. ``Conv2d(16->32, k3, s1)``."""
        args = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
        return f"{type(self).__name__}({args})"

    def _one(self, inputs: list[Shape]) -> Shape:
        if len(inputs) != 1:
            raise ShapeError(f"{self.kind} takes one input, got {len(inputs)}")
        return inputs[0]


def _positive(name: str, value: int, owner: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _kaiming_uniform(shape: Shape, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    # PyTorch's default for Conv/Linear: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D convolution with 'same' padding (kernel // 2) and a bias."""

    kind: ClassVar[str] = "conv2d"
    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "kernel_size", "stride"):
            _positive(name, getattr(self, name), "Conv2d")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"Conv2d: kernel_size must be odd (got {self.kernel_size}) for 'same' padding")

    @property
    def padding(self) -> int:
        return self.kernel_size // 2

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) != 3:
            raise ShapeError(f"conv2d needs a (C, H, W) input, got {shape}")
        c, h, w = shape
        if c != self.in_channels:
            raise ShapeError(f"conv2d expects {self.in_channels} input channels, got {c}")
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if ho < 1 or wo < 1:
            raise ShapeError(f"conv2d output would be empty for input {shape}")
        return (self.out_channels, ho, wo)

    def param_shapes(self) -> dict[str, Shape]:
        k = self.kernel_size
        return {"weight": (self.out_channels, self.in_channels, k, k), "bias": (self.out_channels,)}

    def init_weights(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        fan_in = self.in_channels * self.kernel_size**2
        shapes = self.param_shapes()
        return {name: _kaiming_uniform(shape, fan_in, generator) for name, shape in shapes.items()}

    def module(self) -> nn.Module:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding)

    def n_params(self) -> int:
        return self.out_channels * (self.in_channels * self.kernel_size**2 + 1)

    def describe(self) -> str:
        return f"Conv2d({self.in_channels}->{self.out_channels}, k{self.kernel_size}, s{self.stride})"


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer with a bias."""

    kind: ClassVar[str] = "dense"
    in_features: int
    out_features: int

    def __post_init__(self) -> None:
        _positive("in_features", self.in_features, "Dense")
        _positive("out_features", self.out_features, "Dense")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) != 1:
            raise ShapeError(f"dense needs a flat (F,) input, got {shape}")
        if shape[0] != self.in_features:
            raise ShapeError(f"dense expects {self.in_features} input features, got {shape[0]}")
        return (self.out_features,)

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def init_weights(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {n: _kaiming_uniform(s, self.in_features, generator) for n, s in self.param_shapes().items()}

    def module(self) -> nn.Module:
        return nn.Linear(self.in_features, self.out_features)

    def n_params(self) -> int:
        return self.out_features * (self.in_features + 1)

    def describe(self) -> str:
        return f"Dense({self.in_features}->{self.out_features})"


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over channels (2-D input) or features (1-D input)."""

    kind: ClassVar[str] = "batchnorm"
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    ndim: int = 3  # rank of the per-sample input: 3 -> BatchNorm2d, 1 -> BatchNorm1d

    def __post_init__(self) -> None:
        _positive("num_features", self.num_features, "BatchNorm")
        if self.ndim not in (1, 3):
            raise ValueError(f"BatchNorm: ndim must be 1 or 3, got {self.ndim}")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) != self.ndim:
            raise ShapeError(f"batchnorm built for rank-{self.ndim} inputs got {shape}")
        if shape[0] != self.num_features:
            raise ShapeError(f"batchnorm expects {self.num_features} channels, got {shape[0]}")
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        c = (self.num_features,)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c}

    def init_weights(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.num_features
        return {"weight": torch.ones(c), "bias": torch.zeros(c), "running_mean": torch.zeros(c),
                "running_var": torch.ones(c)}

    def module(self) -> nn.Module:
        cls = nn.BatchNorm2d if self.ndim == 3 else nn.BatchNorm1d
        return cls(self.num_features, eps=self.eps, momentum=self.momentum)

    def n_params(self) -> int:
        return 2 * self.num_features

    def describe(self) -> str:
        return f"BatchNorm({self.num_features})"


@dataclass(frozen=True)
class ReLU(Layer):
    """Rectified linear unit."""

    kind: ClassVar[str] = "relu"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return self._one(inputs)

    def module(self) -> nn.Module:
        return nn.ReLU()

    def describe(self) -> str:
        return "ReLU"


@dataclass(frozen=True)
class _Pool(Layer):
    kernel_size: int = 2
    stride: int = 2
    padding: int = 0

    def __post_init__(self) -> None:
        _positive("kernel_size", self.kernel_size, type(self).__name__)
        _positive("stride", self.stride, type(self).__name__)
        if not 0 <= self.padding <= self.kernel_size // 2:
            raise ValueError(f"{type(self).__name__}: padding must be in [0, kernel_size // 2], "
                             f"got {self.padding}")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) != 3:
            raise ShapeError(f"{self.kind} needs a (C, H, W) input, got {shape}")
        c, h, w = shape
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if ho < 1 or wo < 1:
            raise ShapeError(f"{self.kind} of {k}x{k} cannot pool a {h}x{w} input")
        return (c, ho, wo)

    def describe(self) -> str:
        pad = f", p{self.padding}" if self.padding else ""
        return f"{type(self).__name__}({self.kernel_size}, s{self.stride}{pad})"


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling (no learned parameters)."""

    kind: ClassVar[str] = "maxpool"

    def module(self) -> nn.Module:
        return nn.MaxPool2d(self.kernel_size, self.stride, self.padding)


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling (no learned parameters)."""

    kind: ClassVar[str] = "avgpool"

    def module(self) -> nn.Module:
        return nn.AvgPool2d(self.kernel_size, self.stride, self.padding)


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Mean over the spatial dimensions: (C, H, W) -> (C,)."""

    kind: ClassVar[str] = "globalavgpool"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) != 3:
            raise ShapeError(f"globalavgpool needs a (C, H, W) input, got {shape}")
        return (shape[0],)

    def describe(self) -> str:
        return "GlobalAvgPool"


@dataclass(frozen=True)
class Dropout(Layer):
    """Dropout with probability ``p`` (identity in eval mode)."""

    kind: ClassVar[str] = "dropout"
    p: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {self.p}")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return self._one(inputs)

    def module(self) -> nn.Module:
        return nn.Dropout(self.p)

    def describe(self) -> str:
        return f"Dropout({self.p})"


@dataclass(frozen=True)
class Flatten(Layer):
    """(C, H, W) -> (C*H*W,), channel-major like ``torch.flatten(x, 1)``."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) == 1:
            raise ShapeError("flatten of an already flat (F,) input")
        return (math.prod(shape),)

    def describe(self) -> str:
        return "Flatten"


@dataclass(frozen=True)
class Add(Layer):
    """Element-wise sum of two or more tensors of the same shape."""

    kind: ClassVar[str] = "add"
    n_inputs: ClassVar[int] = 0

    def output_shape(self, inputs: list[Shape]) -> Shape:
        if len(inputs) < 2:
            raise ShapeError(f"add needs at least two inputs, got {len(inputs)}")
        if any(s != inputs[0] for s in inputs):
            raise ShapeError(f"add needs equal shapes, got {inputs}")
        return inputs[0]

    def describe(self) -> str:
        return "Add"


@dataclass(frozen=True)
class Concat(Layer):
    """Concatenation along channels (or features) of two or more tensors, in input order."""

    kind: ClassVar[str] = "concat"
    n_inputs: ClassVar[int] = 0

    def output_shape(self, inputs: list[Shape]) -> Shape:
        if len(inputs) < 2:
            raise ShapeError(f"concat needs at least two inputs, got {len(inputs)}")
        rest = inputs[0][1:]
        if any(len(s) != len(inputs[0]) or s[1:] != rest for s in inputs):
            raise ShapeError(f"concat needs equal shapes apart from channels, got {inputs}")
        return (sum(s[0] for s in inputs), *rest)

    def describe(self) -> str:
        return "Concat"


LAYER_KINDS: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (Conv2d, Dense, BatchNorm, ReLU, MaxPool, AvgPool, GlobalAvgPool, Dropout, Flatten, Add, Concat)
}
# Layers whose output keeps the channel layout of their single input (widening passes through them).
CHANNELWISE_KINDS = frozenset({"batchnorm", "relu", "maxpool", "avgpool", "globalavgpool", "dropout"})
WEIGHTED_KINDS = frozenset({"conv2d", "dense"})


def layer_from_dict(data: dict[str, Any]) -> Layer:
    """Rebuild a layer spec from ``Layer.to_dict()`` output; clear error for an unknown kind or field."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(f"a layer must be an object with a 'kind', got {data!r}")
    kind = data["kind"]
    if kind not in LAYER_KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; expected one of {sorted(LAYER_KINDS)}")
    cls = LAYER_KINDS[kind]
    attrs = {k: v for k, v in data.items() if k != "kind"}
    known = {f.name for f in fields(cls)}
    unknown = set(attrs) - known
    if unknown:
        raise ValueError(f"layer {kind!r} has unknown fields {sorted(unknown)}; expected {sorted(known)}")
    try:
        return cls(**attrs)
    except TypeError as exc:
        raise ValueError(f"layer {kind!r}: {exc}") from None


__all__ = [
    "CHANNELWISE_KINDS",
    "LAYER_KINDS",
    "WEIGHTED_KINDS",
    "Add",
    "AvgPool",
    "BatchNorm",
    "Concat",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Layer",
    "MaxPool",
    "ReLU",
    "Shape",
    "ShapeError",
    "layer_from_dict",
]
