"""Layer specifications: the edges of an architecture graph, and the registry of layer kinds.

Each spec is a small frozen dataclass that knows its output shape for given input shapes, the shapes of
its parameters, how to initialise them, how it runs (a PyTorch module, or a function of its inputs), how it
writes itself as source code for the standalone export, and the flags that the graph, the morphisms and the
searcher read (channel-wise, non-negativity, merge, edit-distance attributes...), and what it costs
(``macs``). A kind is made known by decorating its class with ``register_layer``; nothing else in morphnas
keeps lists of kinds. Shapes are per sample and channels-first: ``(C, H, W)`` for images, ``(F,)`` for
features.

Cost convention: ``macs`` counts the multiply-accumulates of a layer's weights per sample in the forward
pass (convolutions and dense layers); element-wise and data-movement layers (BatchNorm, ReLU, pools, merges,
Flatten, Dropout) count 0. That is the convention of the papers' "FLOPs" tables, and FLOPs = 2 × MACs is
exactly what ``torch.utils.flop_counter.FlopCounterMode`` counts for the compiled module (biases and
element-wise work are not counted there either; tests/test_cost.py checks it). Element-wise work is memory
bound and shows in the measured throughput, which trials record beside the FLOPs. A kind without tensors
costs 0 unless it says otherwise; a kind with tensors must define ``macs`` (a plugin's depthwise conv must
not silently cost 0), else asking a graph for its cost is a ``NotImplementedError`` naming the kind.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import operator
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

Shape = tuple[int, ...]
Weights = dict[int, dict[str, torch.Tensor]]  # a graph's tensors: by layer id, then by name
LayerT = TypeVar("LayerT", bound="Layer")


class ShapeError(ValueError):
    """A layer cannot take the shapes it is given (the graph would be invalid)."""


@dataclass(frozen=True)
class Layer:
    """Base of all layer specs; ``kind`` names the layer in JSON and in errors.

    The class-level flags below describe the kind to the rest of morphnas; a new kind sets those that
    differ from the defaults (docs/architecture.md, "Adding a layer kind").
    """

    kind: ClassVar[str] = "layer"
    # Takes two or more inputs and closes a skip connection (Add, Concat); every other kind takes one input.
    merge: ClassVar[bool] = False
    # The order of the inputs does not matter (the canonical hash sorts them).
    commutative: ClassVar[bool] = False
    # Has output units that ``wider`` can add (Conv2d, Dense); counted by Graph.depth() and max_width().
    has_units: ClassVar[bool] = False
    # Output channel i depends on input channel i only, so widening passes through; the first dimension of
    # each of its tensors is the channel, and it must implement ``widened`` if it has tensors.
    channelwise: ClassVar[bool] = False
    # Output >= 0 whatever the input (ReLU) / whenever all inputs are >= 0 (pools, Flatten, merges...).
    makes_nonnegative: ClassVar[bool] = False
    keeps_nonnegative: ClassVar[bool] = False
    # Its backward does not read its output, so an in-place layer right after it may overwrite that output.
    output_free_in_backward: ClassVar[bool] = False
    # A skip connection drawn by the random search may start or end at its output.
    skip_endpoint: ClassVar[bool] = True
    # Counted in the edit distance's layer sequence, compared by these attributes (relative difference).
    in_distance: ClassVar[bool] = True
    size_attributes: ClassVar[tuple[str, ...]] = ()

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
        """The nn.Module that computes this layer, or None for a function (then ``apply`` computes it)."""
        return None

    def inplace_module(self) -> nn.Module | None:
        """A module computing this layer in place over its input, or None when there is none."""
        return None

    def apply(self, inputs: list[Any]) -> Any:
        """Output of a function layer (no module) for these inputs: tensors, or torch.fx proxies when compiling."""
        raise TypeError(f"layer kind {self.kind!r} has neither a module() nor an apply()")

    def module_code(self) -> str | None:
        """Python source building ``module()`` with ``torch`` and ``nn`` only (standalone export), or None."""
        return None

    def apply_code(self, inputs: list[str]) -> str:
        """Python expression computing a function layer from the named inputs (standalone export)."""
        raise TypeError(f"layer kind {self.kind!r} cannot be exported: it has neither module_code() nor "
                        "apply_code()")

    def widened(self, in_width: int, out_width: int) -> Layer:
        """This spec with ``in_width`` input and ``out_width`` output channels (``wider`` resizes with it)."""
        raise TypeError(f"layer kind {self.kind!r} has no channel count to change")

    def skip_pool(self) -> Layer | None:
        """A parameter-free layer shrinking a skip's spatial size as this layer does, or None if it keeps it."""
        return None

    def coarse_label(self) -> str:
        """The kind with coarse sizes (the Weisfeiler–Lehman kernel's node label)."""
        return self.kind

    def n_params(self) -> int:
        """Trainable parameter count, as PyTorch counts it for the compiled module."""
        return 0

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        """Multiply-accumulates of its weights per sample in the forward pass, given its input and output shapes.

        The default is 0 for a kind without tensors (element-wise or data movement) and an error for a kind
        with tensors, which must say its cost (0 for a per-channel affine or slope, like BatchNorm).
        """
        if self.param_shapes():
            raise NotImplementedError(
                f"layer kind {self.kind!r} has tensors but does not define macs(inputs, output): add it to its "
                "class (multiply-accumulates per sample in the forward pass; 0 for an element-wise layer)")
        return 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description: ``{"kind": ..., **attributes}`` (attributes are scalars or tuples, so a shallow
        copy is a full one; ``asdict``'s deep walk made hashing graphs slow)."""
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @functools.cached_property
    def spec_json(self) -> str:
        """``to_dict()`` as canonical JSON, computed once per spec (specs are frozen and shared between graphs;
        every graph hash reads it)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        """Short human-readable form, e.g. ``Conv2d(16->32, k3, s1)``."""
        args = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
        return f"{type(self).__name__}({args})"

    def _one(self, inputs: list[Shape]) -> Shape:
        if len(inputs) != 1:
            raise ShapeError(f"{self.kind} takes one input, got {len(inputs)}")
        return inputs[0]


LAYER_KINDS: dict[str, type[Layer]] = {}


def register_layer(cls: type[LayerT]) -> type[LayerT]:
    """Class decorator making ``cls`` (a frozen dataclass subclassing Layer) a kind: the only registration needed."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or not dataclasses.is_dataclass(cls):
        raise TypeError(f"register_layer needs a dataclass subclassing Layer, got {cls!r}")
    if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"layer class {cls.__name__} must be a frozen dataclass (specs are shared between graphs)")
    if cls.kind == Layer.kind or not cls.kind:
        raise ValueError(f"layer class {cls.__name__} must set its own 'kind'")
    if LAYER_KINDS.get(cls.kind, cls) is not cls:
        raise ValueError(f"layer kind {cls.kind!r} is already registered by {LAYER_KINDS[cls.kind].__name__}")
    LAYER_KINDS[cls.kind] = cls
    return cls


class KindSet(AbstractSet[str]):
    """Live read-only set of the registered kinds whose class flag ``flag`` is true (follows new registrations)."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    @classmethod
    def _from_iterable(cls, it: Any) -> frozenset[str]:
        return frozenset(it)

    def __contains__(self, kind: object) -> bool:
        cls = LAYER_KINDS.get(kind) if isinstance(kind, str) else None
        return cls is not None and bool(getattr(cls, self.flag))

    def __iter__(self) -> Iterator[str]:
        return (kind for kind, cls in list(LAYER_KINDS.items()) if getattr(cls, self.flag))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"KindSet({self.flag!r}: {sorted(self)})"


class KindTable(Mapping[str, Any]):
    """Live read-only mapping from each registered kind to its class attribute ``attribute``, where non-empty."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __getitem__(self, kind: str) -> Any:
        value = getattr(LAYER_KINDS[kind], self.attribute) if kind in LAYER_KINDS else None
        if not value:
            raise KeyError(kind)
        return value

    def __iter__(self) -> Iterator[str]:
        return (kind for kind, cls in list(LAYER_KINDS.items()) if getattr(cls, self.attribute))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"KindTable({self.attribute!r}: {dict(self)})"


def _positive(name: str, value: int, owner: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _kaiming_uniform(shape: Shape, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    # PyTorch's default for Conv/Linear: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


@register_layer
@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D convolution with 'same' padding (kernel // 2) and a bias."""

    kind: ClassVar[str] = "conv2d"
    has_units: ClassVar[bool] = True
    output_free_in_backward: ClassVar[bool] = True
    size_attributes: ClassVar[tuple[str, ...]] = ("out_channels", "kernel_size", "stride")
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

    def module_code(self) -> str:
        return (f"nn.Conv2d({self.in_channels}, {self.out_channels}, {self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding})")

    def widened(self, in_width: int, out_width: int) -> Layer:
        return dataclasses.replace(self, in_channels=in_width, out_channels=out_width)

    def skip_pool(self) -> Layer | None:
        return MaxPool(self.kernel_size, self.stride, self.kernel_size // 2) if self.stride > 1 else None

    def coarse_label(self) -> str:
        return f"conv{self.kernel_size}s{self.stride}w{round(math.log2(self.out_channels))}"

    def n_params(self) -> int:
        return self.out_channels * (self.in_channels * self.kernel_size**2 + 1)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        # every output element is a dot product over in_channels × k × k inputs (the bias add is not counted)
        return math.prod(output) * self.in_channels * self.kernel_size**2

    def describe(self) -> str:
        return f"Conv2d({self.in_channels}->{self.out_channels}, k{self.kernel_size}, s{self.stride})"


@register_layer
@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer with a bias."""

    kind: ClassVar[str] = "dense"
    has_units: ClassVar[bool] = True
    output_free_in_backward: ClassVar[bool] = True
    size_attributes: ClassVar[tuple[str, ...]] = ("out_features",)
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

    def module_code(self) -> str:
        return f"nn.Linear({self.in_features}, {self.out_features})"

    def widened(self, in_width: int, out_width: int) -> Layer:
        return dataclasses.replace(self, in_features=in_width, out_features=out_width)

    def coarse_label(self) -> str:
        return f"dense_w{round(math.log2(self.out_features))}"

    def n_params(self) -> int:
        return self.out_features * (self.in_features + 1)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return self.in_features * self.out_features

    def describe(self) -> str:
        return f"Dense({self.in_features}->{self.out_features})"


@register_layer
@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over channels (2-D input) or features (1-D input)."""

    kind: ClassVar[str] = "batchnorm"
    channelwise: ClassVar[bool] = True
    output_free_in_backward: ClassVar[bool] = True
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

    def module_code(self) -> str:
        cls = "BatchNorm2d" if self.ndim == 3 else "BatchNorm1d"
        return f"nn.{cls}({self.num_features}, eps={self.eps!r}, momentum={self.momentum!r})"

    def widened(self, in_width: int, out_width: int) -> Layer:
        return dataclasses.replace(self, num_features=out_width)

    def n_params(self) -> int:
        return 2 * self.num_features

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return 0  # a per-channel affine map (folds into the previous conv at inference): element-wise work

    def describe(self) -> str:
        return f"BatchNorm({self.num_features})"


@register_layer
@dataclass(frozen=True)
class ReLU(Layer):
    """Rectified linear unit."""

    kind: ClassVar[str] = "relu"
    channelwise: ClassVar[bool] = True
    makes_nonnegative: ClassVar[bool] = True

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return self._one(inputs)

    def module(self) -> nn.Module:
        return nn.ReLU()

    def inplace_module(self) -> nn.Module:
        return nn.ReLU(inplace=True)

    def module_code(self) -> str:
        return "nn.ReLU()"

    def describe(self) -> str:
        return "ReLU"


@dataclass(frozen=True)
class _Pool(Layer):
    channelwise: ClassVar[bool] = True
    keeps_nonnegative: ClassVar[bool] = True
    size_attributes: ClassVar[tuple[str, ...]] = ("kernel_size", "stride")
    module_class: ClassVar[str] = ""  # name of the torch.nn class computing it
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

    def module(self) -> nn.Module:
        return getattr(nn, self.module_class)(self.kernel_size, self.stride, self.padding)

    def module_code(self) -> str:
        return f"nn.{self.module_class}({self.kernel_size}, stride={self.stride}, padding={self.padding})"

    def skip_pool(self) -> Layer:
        return self

    def coarse_label(self) -> str:
        return f"{self.kind}{self.kernel_size}s{self.stride}"

    def describe(self) -> str:
        pad = f", p{self.padding}" if self.padding else ""
        return f"{type(self).__name__}({self.kernel_size}, s{self.stride}{pad})"


@register_layer
@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling (no learned parameters)."""

    kind: ClassVar[str] = "maxpool"
    module_class: ClassVar[str] = "MaxPool2d"


@register_layer
@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling (no learned parameters)."""

    kind: ClassVar[str] = "avgpool"
    module_class: ClassVar[str] = "AvgPool2d"


@register_layer
@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Mean over the spatial dimensions: (C, H, W) -> (C,)."""

    kind: ClassVar[str] = "globalavgpool"
    channelwise: ClassVar[bool] = True
    keeps_nonnegative: ClassVar[bool] = True

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) != 3:
            raise ShapeError(f"globalavgpool needs a (C, H, W) input, got {shape}")
        return (shape[0],)

    def apply(self, inputs: list[Any]) -> Any:
        return inputs[0].mean((2, 3))

    def apply_code(self, inputs: list[str]) -> str:
        return f"{inputs[0]}.mean((2, 3))"

    def describe(self) -> str:
        return "GlobalAvgPool"


@register_layer
@dataclass(frozen=True)
class Dropout(Layer):
    """Dropout with probability ``p`` (identity in eval mode)."""

    kind: ClassVar[str] = "dropout"
    channelwise: ClassVar[bool] = True
    keeps_nonnegative: ClassVar[bool] = True
    skip_endpoint: ClassVar[bool] = False
    size_attributes: ClassVar[tuple[str, ...]] = ("p",)
    p: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {self.p}")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return self._one(inputs)

    def module(self) -> nn.Module:
        return nn.Dropout(self.p)

    def module_code(self) -> str:
        return f"nn.Dropout({self.p!r})"

    def coarse_label(self) -> str:
        return f"dropout{self.p:.2f}"

    def describe(self) -> str:
        return f"Dropout({self.p})"


@register_layer
@dataclass(frozen=True)
class Flatten(Layer):
    """(C, H, W) -> (C*H*W,), channel-major like ``torch.flatten(x, 1)``."""

    kind: ClassVar[str] = "flatten"
    keeps_nonnegative: ClassVar[bool] = True
    in_distance: ClassVar[bool] = False

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if len(shape) == 1:
            raise ShapeError("flatten of an already flat (F,) input")
        return (math.prod(shape),)

    def apply(self, inputs: list[Any]) -> Any:
        return torch.flatten(inputs[0], 1)

    def apply_code(self, inputs: list[str]) -> str:
        return f"torch.flatten({inputs[0]}, 1)"

    def describe(self) -> str:
        return "Flatten"


@register_layer
@dataclass(frozen=True)
class Add(Layer):
    """Element-wise sum of two or more tensors of the same shape."""

    kind: ClassVar[str] = "add"
    merge: ClassVar[bool] = True
    commutative: ClassVar[bool] = True
    keeps_nonnegative: ClassVar[bool] = True
    output_free_in_backward: ClassVar[bool] = True
    in_distance: ClassVar[bool] = False

    def output_shape(self, inputs: list[Shape]) -> Shape:
        if len(inputs) < 2:
            raise ShapeError(f"add needs at least two inputs, got {len(inputs)}")
        if any(s != inputs[0] for s in inputs):
            raise ShapeError(f"add needs equal shapes, got {inputs}")
        return inputs[0]

    def apply(self, inputs: list[Any]) -> Any:
        return functools.reduce(operator.add, inputs)

    def apply_code(self, inputs: list[str]) -> str:
        return " + ".join(inputs)

    def describe(self) -> str:
        return "Add"


@register_layer
@dataclass(frozen=True)
class Concat(Layer):
    """Concatenation along channels (or features) of two or more tensors, in input order."""

    kind: ClassVar[str] = "concat"
    merge: ClassVar[bool] = True
    keeps_nonnegative: ClassVar[bool] = True
    in_distance: ClassVar[bool] = False

    def output_shape(self, inputs: list[Shape]) -> Shape:
        if len(inputs) < 2:
            raise ShapeError(f"concat needs at least two inputs, got {len(inputs)}")
        rest = inputs[0][1:]
        if any(len(s) != len(inputs[0]) or s[1:] != rest for s in inputs):
            raise ShapeError(f"concat needs equal shapes apart from channels, got {inputs}")
        return (sum(s[0] for s in inputs), *rest)

    def apply(self, inputs: list[Any]) -> Any:
        return torch.cat(tuple(inputs), dim=1)

    def apply_code(self, inputs: list[str]) -> str:
        return f"torch.cat([{', '.join(inputs)}], 1)"

    def describe(self) -> str:
        return "Concat"


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
    "LAYER_KINDS",
    "Add",
    "AvgPool",
    "BatchNorm",
    "Concat",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "KindSet",
    "KindTable",
    "Layer",
    "MaxPool",
    "ReLU",
    "Shape",
    "ShapeError",
    "Weights",
    "layer_from_dict",
    "register_layer",
]
