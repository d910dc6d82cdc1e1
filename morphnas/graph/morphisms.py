"""Function-preserving network morphisms: deeper, wider, add_skip, concat_skip.

Each morphism returns a NEW graph (the parent is untouched; unchanged weight tensors are shared) and
records an ``Op(name, args, seed)`` in the child's ``history``, so that ``replay(parent, ops)`` rebuilds
the same child bitwise. In eval mode and with ``noise=0`` the child computes the parent's function up to
float32 round-off; with ``noise > 0`` a small seeded perturbation (``noise`` times the weight range)
breaks the symmetry of copied units. Graphs without weights morph too (architecture only, cheaply).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import torch

from morphnas.graph.graph import Graph, GraphError
from morphnas.graph.layers import Add, BatchNorm, Concat, Conv2d, Dense, Flatten, Layer, ReLU

DEFAULT_NOISE = 1e-4
DEEPER_KINDS = ("conv", "conv_bn", "conv_block", "bn", "relu", "dense", "dense_block")
WIDER_METHODS = ("net2net", "zero")


class MorphismError(GraphError):
    """The morphism cannot be applied to this graph at this place (the message says why)."""


class LimitError(MorphismError):
    """The morphism would break a size limit (layers, parameters, width or cost)."""


@dataclass(frozen=True)
class Limits:
    """Size limits a morphism must respect; parameters are the real count (input channels included).

    ``max_macs`` (multiply-accumulates per image, ``Graph.macs``) caps a network's cost: a search with a time
    budget sets it from the remaining time (``engine/budget.py``, ``cost_cap_macs``); None: no cap.
    """

    max_layers: int = 500
    max_params: int = 50_000_000
    max_width: int = 1024
    max_macs: int | None = None

    def check(self, graph: Graph) -> None:
        """Raise LimitError naming the first limit ``graph`` breaks."""
        if graph.n_layers() > self.max_layers:
            raise LimitError(f"{graph.n_layers()} layers exceed max_layers={self.max_layers}")
        if graph.n_params() > self.max_params:
            raise LimitError(f"{graph.n_params():,} parameters exceed max_params={self.max_params:,}")
        if graph.max_width() > self.max_width:
            raise LimitError(f"width {graph.max_width()} exceeds max_width={self.max_width}")
        macs = graph.known_macs() if self.max_macs is not None else None  # unknown cost: not capped
        if macs is not None and self.max_macs is not None and macs > self.max_macs:
            raise LimitError(f"{macs:,} multiply-accumulates per image exceed max_macs={self.max_macs:,}")


@dataclass(frozen=True)
class Op:
    """One recorded morphism: its name, its arguments and the seed of its own random choices."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.name, "args": dict(self.args), "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Op) -> Op:
        """Rebuild an Op from ``to_dict()`` output (an Op passes through)."""
        if isinstance(data, Op):
            return data
        if not isinstance(data, dict) or "op" not in data:
            raise MorphismError(f"an op must be an object with an 'op' name, got {data!r}")
        if data["op"] not in MORPHISMS:
            raise MorphismError(f"unknown morphism {data['op']!r}; expected one of {sorted(MORPHISMS)}")
        return cls(str(data["op"]), dict(data.get("args", {})), int(data.get("seed", 0)))

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args.items() if k != "noise")
        return f"{self.name}({args})"


# ---------------------------------------------------------------------------------------------- helpers
def _noise(rng: np.random.Generator, shape: Sequence[int], scale: float) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32) * np.float32(scale))


def _range(t: torch.Tensor) -> float:
    return float(t.max() - t.min()) if t.numel() else 1.0


def _finish(child: Graph, op: Op, limits: Limits | None) -> Graph:
    try:
        child.validate()
    except GraphError as exc:
        raise MorphismError(f"{op.describe()} would make an invalid graph: {exc}") from None
    (limits or Limits()).check(child)
    child.history.append(op.to_dict())
    return child


def _check_noise(noise: float) -> float:
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise MorphismError(f"noise must be a finite number >= 0, got {noise}")
    return noise


def _insert_chain(child: Graph, after: int, chain: list[tuple[Layer, dict[str, torch.Tensor]]]) -> int:
    """Insert ``chain`` on tensor ``after``; its former readers (and the output mark) move to the chain's end."""
    readers = set(child.consumers(after))
    x = after
    for spec, weights in chain:
        out = child._new_node(spec.output_shape([child.shape(x)]))
        child._new_layer(spec, (x,), out, weights)
        x = out
    child._redirect_consumers(after, x, keep=set(child.consumers(after)) - readers)
    return x


# ---------------------------------------------------------------------------------------------- deeper
def _identity_conv(c: int, k: int, rng: np.random.Generator, noise: float, weighted: bool) -> tuple[Layer, dict]:
    spec = Conv2d(c, c, k)
    if not weighted:
        return spec, {}
    w = torch.zeros(c, c, k, k)
    w[torch.arange(c), torch.arange(c), k // 2, k // 2] = 1.0
    if noise:
        w = w + _noise(rng, w.shape, noise)
    return spec, {"weight": w, "bias": torch.zeros(c)}


def _identity_dense(f: int, rng: np.random.Generator, noise: float, weighted: bool) -> tuple[Layer, dict]:
    spec = Dense(f, f)
    if not weighted:
        return spec, {}
    w = torch.eye(f)
    if noise:
        w = w + _noise(rng, w.shape, noise)
    return spec, {"weight": w, "bias": torch.zeros(f)}


def _identity_bn(c: int, ndim: int, weighted: bool) -> tuple[Layer, dict]:
    spec = BatchNorm(c, ndim=ndim)
    if not weighted:
        return spec, {}
    scale = torch.full((c,), float(np.sqrt(1.0 + spec.eps)), dtype=torch.float32)
    return spec, {"weight": scale, "bias": torch.zeros(c), "running_mean": torch.zeros(c),
                  "running_var": torch.ones(c)}


def deeper(graph: Graph, layer: int, kind: str = "conv", kernel_size: int = 3, *, seed: int = 0,
           noise: float = DEFAULT_NOISE, limits: Limits | None = None) -> Graph:
    """Insert identity-initialised layer(s) right after ``layer``.

    ``kind``: ``conv`` (Dirac-initialised Conv of ``kernel_size`` 1, 3 or 5), ``bn`` (identity BatchNorm),
    ``relu`` (only where the input is already non-negative), ``dense`` (identity Dense, flat tensors),
    ``conv_bn`` (identity Conv + BatchNorm, anywhere: the BatchNorm keeps deep inserted chains trainable),
    ``conv_block`` / ``dense_block`` (identity Conv+BN+ReLU / Dense+ReLU, where the input is non-negative).
    """
    spec = graph.check_layer(layer)
    noise = _check_noise(noise)
    op = Op("deeper", {"layer": layer, "kind": kind, "kernel_size": kernel_size, "noise": noise}, seed)
    if kind not in DEEPER_KINDS:
        raise MorphismError(f"unknown deeper kind {kind!r}; expected one of {DEEPER_KINDS}")
    node = graph.layer_output[layer]
    if node == graph.output_node:
        raise MorphismError(f"layer {layer} ({spec.describe()}) writes the network output; deepen before it")
    shape = graph.shape(node)
    image = len(shape) == 3
    if kind in ("conv", "conv_bn", "conv_block") and not image:
        raise MorphismError(f"deeper {kind!r} needs a (C, H, W) tensor, layer {layer} outputs {shape}")
    if kind in ("dense", "dense_block") and image:
        raise MorphismError(f"deeper {kind!r} needs a flat tensor, layer {layer} outputs {shape}; use 'conv'")
    if kind in ("relu", "conv_block", "dense_block") and not graph.is_nonnegative(node):
        raise MorphismError(f"deeper {kind!r} after layer {layer} ({spec.describe()}) would not preserve the "
                            "function: its output can be negative (a ReLU fits only after a ReLU or a pool of one)")
    if kind in ("conv", "conv_bn", "conv_block") and kernel_size not in (1, 3, 5):
        raise MorphismError(f"deeper conv kernel_size must be 1, 3 or 5, got {kernel_size}")
    rng = np.random.default_rng(seed)
    w = graph.has_weights
    c = shape[0]
    chain: list[tuple[Layer, dict]] = []
    if kind in ("conv", "conv_bn", "conv_block"):
        chain.append(_identity_conv(c, kernel_size, rng, noise, w))
        if kind != "conv":
            chain.append(_identity_bn(c, 3, w))
        if kind == "conv_block":
            chain.append((ReLU(), {}))
    elif kind in ("dense", "dense_block"):
        chain.append(_identity_dense(c, rng, noise, w))
        if kind == "dense_block":
            chain.append((ReLU(), {}))
    elif kind == "bn":
        chain.append(_identity_bn(c, len(shape), w))
    else:
        chain.append((ReLU(), {}))
    child = graph.copy()
    _insert_chain(child, node, chain)
    return _finish(child, op, limits)


# ---------------------------------------------------------------------------------------------- wider
@dataclass(frozen=True)
class _ChannelMap:
    """New channel layout of a tensor: channel i of the child is channel ``index[i]`` of the parent."""

    index: np.ndarray
    new: np.ndarray  # True where channel i is an added copy

    def same(self, other: _ChannelMap) -> bool:
        return np.array_equal(self.index, other.index) and np.array_equal(self.new, other.new)


def _concat_map(g: Graph, lid: int, maps: dict[int, _ChannelMap]) -> _ChannelMap:
    index, new, offset = [], [], 0
    for n in g.layer_inputs[lid]:
        c = g.shape(n)[0]
        m = maps.get(n)
        index.append(offset + (m.index if m is not None else np.arange(c)))
        new.append(m.new if m is not None else np.zeros(c, bool))
        offset += c
    return _ChannelMap(np.concatenate(index), np.concatenate(new))


def _flatten_map(g: Graph, lid: int, m: _ChannelMap) -> _ChannelMap:
    (src,) = g.layer_inputs[lid]
    spatial = int(np.prod(g.shape(src)[1:]))
    s = np.arange(spatial)
    return _ChannelMap((m.index[:, None] * spatial + s).ravel(), np.repeat(m.new, spatial))


def _widening_plan(g: Graph, start: int, root: _ChannelMap) -> tuple[dict, dict, dict]:
    """Every tensor whose channels must change with ``start``, and the layers to adjust (rows / columns).

    Widening flows forward through channel-wise layers, Flatten and Concat to the next layer with units
    (whose input columns are adjusted), and across an Add to all its other inputs, backward to their producers.
    Channel-wise layers with tensors get their rows copied too. Any other layer stops it with a MorphismError.
    """
    maps: dict[int, _ChannelMap] = {}
    rows: dict[int, _ChannelMap] = {}  # layers with units, or channel-wise with tensors, whose outputs change
    cols: dict[int, _ChannelMap] = {}  # layers with units whose input channels change
    queue: deque[tuple[int, _ChannelMap]] = deque([(start, root)])
    while queue:
        node, m = queue.popleft()
        if node in maps:
            if not maps[node].same(m):
                raise MorphismError(f"widening reaches tensor {node} in two incompatible ways "
                                    "(e.g. two inputs of one Concat)")
            continue
        if node == g.input_node:
            raise MorphismError("widening would have to widen the network input (an Add joins it)")
        if node == g.output_node:
            raise MorphismError("widening would change the network output (the number of classes)")
        maps[node] = m
        lid = g.producer(node)
        spec = g.layers[lid]
        ins = g.layer_inputs[lid]
        if spec.has_units:
            rows[lid] = m
        elif spec.channelwise:
            if spec.param_shapes():
                rows[lid] = m
            queue.append((ins[0], m))
        elif isinstance(spec, Add):
            queue.extend((n, m) for n in ins)
        elif isinstance(spec, Concat):
            if not _concat_map(g, lid, maps).same(m):
                raise MorphismError(f"widening would have to widen concat layer {lid}'s output as a whole, "
                                    "which its inputs cannot provide")
        elif isinstance(spec, Flatten):
            if ins[0] not in maps or not _flatten_map(g, lid, maps[ins[0]]).same(m):
                raise MorphismError(f"widening would have to widen flatten layer {lid}'s features as a whole")
        else:
            raise MorphismError(f"widening cannot pass back through layer {lid} ({spec.describe()})")
        for c in g.consumers(node):
            cspec = g.layers[c]
            out = g.layer_output[c]
            if cspec.has_units:
                cols[c] = m
            elif cspec.channelwise:
                queue.append((out, m))
            elif isinstance(cspec, Add):
                queue.append((out, m))
                queue.extend((n, m) for n in g.layer_inputs[c] if n != node)
            elif isinstance(cspec, Concat):
                queue.append((out, _concat_map(g, c, maps)))
            elif isinstance(cspec, Flatten):
                queue.append((out, _flatten_map(g, c, m)))
            else:
                raise MorphismError(f"widening cannot pass through layer {c} ({cspec.describe()})")
    return maps, rows, cols


def _widen_weights(w: dict[str, torch.Tensor], spec: Layer, row: _ChannelMap | None, col: _ChannelMap | None,
                   method: str, rng: np.random.Generator, noise: float) -> dict[str, torch.Tensor]:
    w = dict(w)
    if row is not None:
        idx = torch.from_numpy(row.index)
        scale = _range(w["weight"]) * noise if spec.has_units else 0.0
        for name in list(w):
            w[name] = w[name].index_select(0, idx)
        if noise and spec.has_units and row.new.any():
            new = torch.from_numpy(np.flatnonzero(row.new))
            weight = w["weight"].clone()
            weight[new] += _noise(rng, (len(new), *weight.shape[1:]), scale)
            w["weight"] = weight
    if col is not None:
        idx = torch.from_numpy(col.index)
        weight = w["weight"].index_select(1, idx)
        if method == "net2net":
            counts = np.bincount(col.index)[col.index].astype(np.float32)
            shape = (1, len(counts)) + (1,) * (weight.dim() - 2)
            weight = weight / torch.from_numpy(counts).reshape(shape)
        else:
            weight[:, torch.from_numpy(col.new)] = 0.0
        w["weight"] = weight
    return w


def wider(graph: Graph, layer: int, n: int, *, method: str = "net2net", seed: int = 0,
          noise: float = DEFAULT_NOISE, limits: Limits | None = None) -> Graph:
    """Grow ``layer`` (one with units: Conv2d, Dense) by ``n`` units copied from random ones, keeping the function.

    The change propagates through channel-wise layers (BatchNorm and others with per-channel tensors get
    copies of those), Flatten (feature blocks), Concat (channel offsets) and Add (every other producer of
    the sum widens the same way). The readers' incoming
    weights are split among the copies (``method="net2net"``) or zero for the new units (``"zero"``).
    """
    spec = graph.check_layer(layer)
    noise = _check_noise(noise)
    op = Op("wider", {"layer": layer, "n": n, "method": method, "noise": noise}, seed)
    if not spec.has_units:
        raise MorphismError(f"layer {layer} ({spec.describe()}) cannot be widened: only layers with units "
                            "(conv2d, dense) have units to add")
    if method not in WIDER_METHODS:
        raise MorphismError(f"unknown widening method {method!r}; expected one of {WIDER_METHODS}")
    if not isinstance(n, int | np.integer) or n < 1:
        raise MorphismError(f"wider needs n >= 1 new units, got {n!r}")
    node = graph.layer_output[layer]
    if node == graph.output_node:
        raise MorphismError(f"layer {layer} ({spec.describe()}) writes the network output: its width is the "
                            "number of classes and cannot grow")
    rng = np.random.default_rng(seed)
    width = graph.shape(node)[0]
    sources = rng.integers(0, width, size=int(n))
    root = _ChannelMap(np.concatenate([np.arange(width), sources]), np.arange(width + n) >= width)
    maps, rows, cols = _widening_plan(graph, node, root)
    child = graph.copy()
    for t, m in maps.items():
        child._set_shape(t, (len(m.index), *graph.shape(t)[1:]))
    for lid in sorted(set(rows) | set(cols)):
        old = graph.layers[lid]
        row, col = rows.get(lid), cols.get(lid)
        in_width = child.shape(child.layer_inputs[lid][0])[0]
        new_spec = old.widened(in_width, child.shape(child.layer_output[lid])[0])
        weights = None
        if graph.weights is not None:
            weights = _widen_weights(graph.weights[lid], old, row, col, method, rng, noise)
        child._replace_layer(lid, new_spec, weights)
    return _finish(child, op, limits)


# ---------------------------------------------------------------------------------------------- skips
def _skip_endpoints(graph: Graph, a: int, b: int) -> tuple[int, int, list[Layer]]:
    """Tensors joined by a skip from layer ``a`` to layer ``b`` and the pools that match their sizes."""
    sa, sb = graph.check_layer(a), graph.check_layer(b)
    u, v = graph.layer_output[a], graph.layer_output[b]
    if a == b:
        raise MorphismError(f"a skip connection needs two different layers, got {a} twice")
    if not nx.has_path(graph.nx, u, v):
        if nx.has_path(graph.nx, v, u):
            raise MorphismError(f"a skip must go forward: layer {a} ({sa.describe()}) comes after "
                                f"layer {b} ({sb.describe()})")
        raise MorphismError(f"layers {a} and {b} are on parallel branches: no path from one to the other")
    if len(graph.shape(u)) != 3 or len(graph.shape(v)) != 3:
        raise MorphismError(f"skip connections join (C, H, W) tensors; layer {a} outputs {graph.shape(u)} and "
                            f"layer {b} outputs {graph.shape(v)}")
    path = nx.shortest_path(graph.nx, u, v)
    pools = [pool for node in path[1:] if (pool := graph.layers[graph.producer(node)].skip_pool()) is not None]
    shape = graph.shape(u)
    for pool in pools:
        shape = pool.output_shape([shape])
    if shape[1:] != graph.shape(v)[1:]:
        raise MorphismError(f"shapes cannot be matched: layer {a} outputs {graph.shape(u)}, pooled to {shape}, "
                            f"but layer {b} outputs {graph.shape(v)}")
    return u, v, pools


def add_skip(graph: Graph, a: int, b: int, *, seed: int = 0, noise: float = DEFAULT_NOISE,
             limits: Limits | None = None) -> Graph:
    """Add the output of layer ``a`` (pooled to size, through a zero-initialised 1x1 conv) to that of ``b``."""
    noise = _check_noise(noise)
    op = Op("add_skip", {"a": a, "b": b, "noise": noise}, seed)
    u, v, pools = _skip_endpoints(graph, a, b)
    rng = np.random.default_rng(seed)
    cu, cv = graph.shape(u)[0], graph.shape(v)[0]
    conv = Conv2d(cu, cv, 1)
    weights = {}
    if graph.has_weights:
        weights = {"weight": _noise(rng, (cv, cu, 1, 1), noise), "bias": torch.zeros(cv)}
    child = graph.copy()
    readers = set(child.consumers(v))
    x = u
    for spec, w in [*((p, {}) for p in pools), (conv, weights)]:
        out = child._new_node(spec.output_shape([child.shape(x)]))
        child._new_layer(spec, (x,), out, w)
        x = out
    out = child._new_node(child.shape(v))
    child._new_layer(Add(), (v, x), out, None)
    child._redirect_consumers(v, out, keep=set(child.consumers(v)) - readers)
    return _finish(child, op, limits)


def concat_skip(graph: Graph, a: int, b: int, *, seed: int = 0, noise: float = DEFAULT_NOISE,
                limits: Limits | None = None) -> Graph:
    """Concatenate the output of layer ``a`` (pooled to size) to that of ``b``, then a 1x1 conv set to [I | 0]."""
    noise = _check_noise(noise)
    op = Op("concat_skip", {"a": a, "b": b, "noise": noise}, seed)
    u, v, pools = _skip_endpoints(graph, a, b)
    rng = np.random.default_rng(seed)
    cu, cv = graph.shape(u)[0], graph.shape(v)[0]
    conv = Conv2d(cv + cu, cv, 1)
    weights = {}
    if graph.has_weights:
        w = torch.zeros(cv, cv + cu, 1, 1)
        w[torch.arange(cv), torch.arange(cv), 0, 0] = 1.0
        if noise:
            w[:, cv:] = _noise(rng, (cv, cu, 1, 1), noise)
        weights = {"weight": w, "bias": torch.zeros(cv)}
    child = graph.copy()
    readers = set(child.consumers(v))
    x = u
    for pool in pools:
        out = child._new_node(pool.output_shape([child.shape(x)]))
        child._new_layer(pool, (x,), out, None)
        x = out
    cat = child._new_node((cv + cu, *child.shape(v)[1:]))
    child._new_layer(Concat(), (v, x), cat, None)
    out = child._new_node(child.shape(v))
    child._new_layer(conv, (cat,), out, weights)
    child._redirect_consumers(v, out, keep=set(child.consumers(v)) - readers)
    return _finish(child, op, limits)


MORPHISMS: dict[str, Callable[..., Graph]] = {
    "deeper": deeper, "wider": wider, "add_skip": add_skip, "concat_skip": concat_skip,
}


# ---------------------------------------------------------------------------------------------- replay & random
def apply(graph: Graph, op: Op | dict[str, Any], limits: Limits | None = None) -> Graph:
    """Apply one recorded op to ``graph`` (its args and seed as recorded)."""
    op = Op.from_dict(op)
    try:
        return MORPHISMS[op.name](graph, **op.args, seed=op.seed, limits=limits)
    except TypeError as exc:
        raise MorphismError(f"op {op.to_dict()} has wrong arguments: {exc}") from None


def replay(graph: Graph, ops: Iterable[Op | dict[str, Any]], limits: Limits | None = None) -> Graph:
    """Rebuild a descendant from ``graph`` and its recorded ops: same ops and seeds => identical weights."""
    for op in ops:
        graph = apply(graph, op, limits=limits)
    return graph


RANDOM_OP_NAMES = ("deeper", "wider", "add_skip", "concat_skip")  # the kinds of morphism random_morph draws, uniformly


def _random_op(graph: Graph, rng: np.random.Generator, noise: float,
               kinds: Sequence[str] = RANDOM_OP_NAMES) -> Op:
    """Draw one candidate op of one of ``kinds`` (it may still turn out impossible; the caller retries)."""
    seed = int(rng.integers(2**31 - 1))
    name = kinds[int(rng.integers(len(kinds)))]
    not_last = [lid for lid in graph.topological_layers() if graph.layer_output[lid] != graph.output_node]
    if name == "deeper":
        lid = not_last[int(rng.integers(len(not_last)))]
        node = graph.layer_output[lid]
        image = len(graph.shape(node)) == 3
        nonneg = graph.is_nonnegative(node)
        if rng.random() < 0.1:
            kind = "bn"
        elif image:  # like Auto-Keras, insert conv blocks; a bare conv only rarely (deep linear chains diverge)
            kind = "conv_block" if nonneg else ("conv_bn" if rng.random() < 0.8 else "conv")
        else:
            kind = "dense_block" if nonneg and rng.random() < 0.7 else "dense"
        kernel = int((1, 3, 5)[int(rng.integers(3))])
        return Op(name, {"layer": lid, "kind": kind, "kernel_size": kernel, "noise": noise}, seed)
    if name == "wider":
        choices = [lid for lid in not_last if graph.layers[lid].has_units]
        if not choices:
            raise MorphismError("no layer to widen")
        lid = choices[int(rng.integers(len(choices)))]
        width = graph.shape(graph.layer_output[lid])[0]
        n = max(1, width // 2) if rng.random() < 0.5 else width
        return Op(name, {"layer": lid, "n": int(n), "method": "net2net", "noise": noise}, seed)
    ends = [lid for lid in not_last
            if graph.layers[lid].skip_endpoint and len(graph.shape(graph.layer_output[lid])) == 3]
    if len(ends) < 2:
        raise MorphismError("fewer than two (C, H, W) layers to join with a skip")
    i, j = sorted(rng.choice(len(ends), size=2, replace=False).tolist())
    return Op(name, {"a": ends[i], "b": ends[j], "noise": noise}, seed)


def random_morph(graph: Graph, rng: np.random.Generator, noise: float = DEFAULT_NOISE,
                 limits: Limits | None = None, max_attempts: int = 32,
                 kinds: Sequence[str] = RANDOM_OP_NAMES) -> tuple[Graph, Op]:
    """A random applicable one-op child of ``graph`` and its op, its kind drawn uniformly from ``kinds`` (a subset
    of ``RANDOM_OP_NAMES``); draws only from ``rng``.

    Impossible or over-limit candidates are skipped; MorphismError when none of ``max_attempts`` applies.
    """
    unknown = [k for k in kinds if k not in RANDOM_OP_NAMES]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {RANDOM_OP_NAMES}, got {tuple(kinds)!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    noise = _check_noise(noise)
    reasons: list[str] = []
    for _ in range(max_attempts):
        try:
            op = _random_op(graph, rng, noise, kinds)
            return apply(graph, op, limits=limits), op
        except MorphismError as exc:
            reasons.append(str(exc))
    raise MorphismError(f"no applicable morphism in {max_attempts} attempts; last reasons: {reasons[-3:]}")


def neighbours(graph: Graph, n: int, rng: np.random.Generator, noise: float = DEFAULT_NOISE,
               limits: Limits | None = None, max_attempts: int | None = None) -> list[tuple[Graph, Op]]:
    """Up to ``n`` one-op children of ``graph`` with distinct architectures (from ``max_attempts`` = 2n tries)."""
    attempts = 2 * n if max_attempts is None else max_attempts
    seen = {graph.canonical_hash()}
    found: list[tuple[Graph, Op]] = []
    for _ in range(attempts):
        if len(found) >= n:
            break
        try:
            op = _random_op(graph, rng, noise)
            child = apply(graph, op, limits=limits)
        except MorphismError:
            continue
        key = child.canonical_hash()
        if key not in seen:
            seen.add(key)
            found.append((child, op))
    return found
