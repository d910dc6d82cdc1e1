"""Initial architectures for a search: the Auto-Keras default CNN, a small ResNet, a small DenseNet, an MLP.

Every generator takes ``input_shape`` (C, H, W) and ``n_classes``, returns a validated Graph, and with
``seed`` not None also gives it weights drawn from a local ``torch.Generator(seed)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    MaxPool,
    ReLU,
    Shape,
)


def _start(input_shape: Shape, n_classes: int, name: str, image: bool = True) -> Graph:
    if not isinstance(n_classes, int) or n_classes < 2:
        raise GraphError(f"{name}: n_classes must be an integer >= 2, got {n_classes!r}")
    shape = tuple(input_shape)
    if image and len(shape) != 3:
        raise GraphError(f"{name}: input_shape must be (C, H, W), got {input_shape}")
    return Graph(shape)


def _finish(g: Graph, out: int, seed: int | None) -> Graph:
    g.set_output(out)
    g.validate()
    if seed is not None:
        g.init_weights(seed)
    return g


def cnn(input_shape: Shape, n_classes: int, n_blocks: int = 3, filters: int = 64, kernel_size: int = 3,
        dense_units: int = 64, dropout: float = 0.25, seed: int | None = 0) -> Graph:
    """The Auto-Keras default CNN: ``n_blocks`` x [BN, Conv(k, filters), ReLU, MaxPool(2)], global average
    pool, dropout, Dense(dense_units), ReLU, Dense(n_classes).

    Auto-Keras put the ReLU before each block's BN, i.e. also on the raw (normalised, signed) input; here it
    follows each conv instead, which is the same network from the second block on without discarding the
    negative half of the input. A block whose input is smaller than 2x2 skips its pooling.
    """
    g = _start(input_shape, n_classes, "cnn")
    x, channels = g.input_node, input_shape[0]
    for _ in range(n_blocks):
        x = g.add_layer(BatchNorm(channels), x)
        x = g.add_layer(Conv2d(channels, filters, kernel_size), x)
        x = g.add_layer(ReLU(), x)
        if min(g.shape(x)[1:]) >= 2:
            x = g.add_layer(MaxPool(2, 2), x)
        channels = filters
    x = g.add_layer(GlobalAvgPool(), x)
    x = g.add_layer(Dropout(dropout), x)
    x = g.add_layer(Dense(channels, dense_units), x)
    x = g.add_layer(ReLU(), x)
    x = g.add_layer(Dense(dense_units, n_classes), x)
    return _finish(g, x, seed)


def resnet(input_shape: Shape, n_classes: int, depth: int = 20, width: int = 16, n_stages: int = 3,
           seed: int | None = 0) -> Graph:
    """A CIFAR-style ResNet (He et al. 2016): depth = 6n + 2 with n basic blocks per stage, ``n_stages``
    stages of widths width·2^i, stride-2 stage transitions with a 1x1 projection shortcut."""
    if (depth - 2) % (2 * n_stages) != 0 or depth < 2 + 2 * n_stages:
        raise GraphError(f"resnet: depth must be 2 + {2 * n_stages}·n with n >= 1, got {depth}")
    blocks = (depth - 2) // (2 * n_stages)
    g = _start(input_shape, n_classes, "resnet")
    x = g.add_layer(Conv2d(input_shape[0], width, 3), g.input_node)
    x = g.add_layer(BatchNorm(width), x)
    x = g.add_layer(ReLU(), x)
    channels = width
    for stage in range(n_stages):
        out_channels = width * 2**stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            h = g.add_layer(Conv2d(channels, out_channels, 3, stride), x)
            h = g.add_layer(BatchNorm(out_channels), h)
            h = g.add_layer(ReLU(), h)
            h = g.add_layer(Conv2d(out_channels, out_channels, 3), h)
            h = g.add_layer(BatchNorm(out_channels), h)
            shortcut = x
            if stride != 1 or channels != out_channels:
                shortcut = g.add_layer(Conv2d(channels, out_channels, 1, stride), x)
                shortcut = g.add_layer(BatchNorm(out_channels), shortcut)
            x = g.add_layer(Add(), h, shortcut)
            x = g.add_layer(ReLU(), x)
            channels = out_channels
    x = g.add_layer(GlobalAvgPool(), x)
    x = g.add_layer(Dense(channels, n_classes), x)
    return _finish(g, x, seed)


def densenet(input_shape: Shape, n_classes: int, growth: int = 12, block_layers: Sequence[int] = (4, 4, 4),
             compression: float = 0.5, seed: int | None = 0) -> Graph:
    """A small DenseNet (Huang et al. 2017): dense blocks of [BN, ReLU, Conv3x3(growth)] whose outputs are
    concatenated to their inputs, joined by transitions [BN, ReLU, Conv1x1, AvgPool(2)]."""
    if not block_layers or any(n < 1 for n in block_layers):
        raise GraphError(f"densenet: block_layers must be positive counts, got {block_layers}")
    g = _start(input_shape, n_classes, "densenet")
    channels = 2 * growth
    x = g.add_layer(Conv2d(input_shape[0], channels, 3), g.input_node)
    for i, n_layers in enumerate(block_layers):
        for _ in range(n_layers):
            h = g.add_layer(BatchNorm(channels), x)
            h = g.add_layer(ReLU(), h)
            h = g.add_layer(Conv2d(channels, growth, 3), h)
            x = g.add_layer(Concat(), x, h)
            channels += growth
        if i < len(block_layers) - 1:
            reduced = max(1, int(channels * compression))
            x = g.add_layer(BatchNorm(channels), x)
            x = g.add_layer(ReLU(), x)
            x = g.add_layer(Conv2d(channels, reduced, 1), x)
            if min(g.shape(x)[1:]) >= 2:
                x = g.add_layer(AvgPool(2, 2), x)
            channels = reduced
    x = g.add_layer(BatchNorm(channels), x)
    x = g.add_layer(ReLU(), x)
    x = g.add_layer(GlobalAvgPool(), x)
    x = g.add_layer(Dense(channels, n_classes), x)
    return _finish(g, x, seed)


def mlp(input_shape: Shape, n_classes: int, hidden: Sequence[int] = (256, 128), dropout: float = 0.25,
        seed: int | None = 0) -> Graph:
    """A multi-layer perceptron: Flatten, then [Dense(h), ReLU, Dropout] per hidden size, Dense(n_classes)."""
    g = _start(input_shape, n_classes, "mlp", image=False)
    x = g.input_node
    if len(g.input_shape) > 1:
        x = g.add_layer(Flatten(), x)
    features = g.shape(x)[0]
    for units in hidden:
        x = g.add_layer(Dense(features, int(units)), x)
        x = g.add_layer(ReLU(), x)
        if dropout > 0:
            x = g.add_layer(Dropout(dropout), x)
        features = int(units)
    x = g.add_layer(Dense(features, n_classes), x)
    return _finish(g, x, seed)


GENERATORS: dict[str, Callable[..., Graph]] = {"cnn": cnn, "resnet": resnet, "densenet": densenet, "mlp": mlp}


def get_generator(name: str) -> Callable[..., Graph]:
    """The generator called ``name``; ValueError listing the valid names otherwise."""
    try:
        return GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; expected one of {sorted(GENERATORS)}") from None
