"""Architectures as pictures: layers as boxes, skip connections as curved arrows, a child's new layers highlighted.

``architecture_layout(graph, parent)`` is the data of the picture (boxes, edges, positions, which layers are
new since the parent), with no plotting; ``draw_architecture`` renders it with matplotlib into a Figure and
``save_architecture`` writes it as a PNG. Only networkx and matplotlib are used (no graphviz binary): the
positions come from ``networkx.multipartite_layout`` on the topological generations of the layer graph, one
row per generation, input at the top; each row is then shifted so that its main-chain layer sits on the
centre line, so the main chain reads straight down and skip branches stand beside it.

The layer graph has one node per layer (its id) plus ``"input"``; an edge ``a -> b`` means layer ``b`` reads
the tensor layer ``a`` writes. The *main chain* is the longest input-to-output path (ties: through each
merge's first input); every edge off it belongs to a skip connection (``skip=True``) and is drawn curved.
A child's *new* layers are the layer ids its parent lacks (ids are never reused, so this is exactly what its
morphisms added); layers with units (conv, dense) whose id the parent has with fewer units are *changed*
(widened).

The graph package never imports plotting; matplotlib is imported here only when a figure is drawn.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from morphnas.fileio import atomic_write
from morphnas.graph.graph import Graph
from morphnas.graph.layers import Layer
from morphnas.storage.rundir import TrialRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INPUT = "input"
NEW_COLOR = "#b7e4a7"  # added by the morphisms since the parent
CHANGED_COLOR = "#ffd79a"  # same id as in the parent, another size (wider)
KIND_COLORS = {"conv2d": "#cfe0f7", "dense": "#e3d4f5", "add": "#f7d0d0", "concat": "#f7d0d0"}
PLAIN_COLOR = "#eeeeee"
SKIP_COLOR = "#c0392b"


def layer_label(layer: Layer) -> str:
    """A short label: ``conv 3x3 64``, ``dense 128``, ``maxpool 2x2``, ``add``; the kind for other layers."""
    kind = layer.kind
    if kind == "conv2d":
        k = layer.kernel_size  # type: ignore[attr-defined]
        stride = layer.stride  # type: ignore[attr-defined]
        return f"conv {k}x{k} {layer.out_channels}" + (f" /{stride}" if stride != 1 else "")  # type: ignore[attr-defined]
    if kind == "dense":
        return f"dense {layer.out_features}"  # type: ignore[attr-defined]
    if kind in ("maxpool", "avgpool"):
        k = layer.kernel_size  # type: ignore[attr-defined]
        return f"{kind} {k}x{k}"
    if kind == "batchnorm":
        return "batchnorm"
    if kind == "globalavgpool":
        return "global avg pool"
    if kind == "dropout":
        return f"dropout {layer.p:g}"  # type: ignore[attr-defined]
    return kind


@dataclass(frozen=True)
class Box:
    """One box of the picture: a layer (``node`` = its id) or the input (``node`` = ``"input"``)."""

    node: int | str
    label: str
    kind: str
    x: float
    y: float
    main: bool  # on the main chain
    new: bool = False
    changed: bool = False


@dataclass(frozen=True)
class Edge:
    source: int | str
    target: int
    skip: bool  # part of a skip connection (off the main chain): drawn curved


@dataclass
class ArchitectureLayout:
    """What ``draw_architecture`` draws: boxes by node, edges, and the layers new or changed since the parent."""

    boxes: dict[int | str, Box]
    edges: list[Edge]
    new_layers: set[int] = field(default_factory=set)
    changed_layers: set[int] = field(default_factory=set)
    rows: int = 0
    columns: int = 0

    @property
    def skip_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.skip]


def layer_graph(graph: Graph) -> nx.DiGraph:
    """The layers as nodes (plus ``"input"``), an edge where a layer reads another's output; edge attribute
    ``first``: the edge is its target's first input."""
    g = nx.DiGraph()
    g.add_node(INPUT)
    for lid in graph.topological_layers():
        g.add_node(lid)
        for i, tensor in enumerate(graph.layer_inputs[lid]):
            producer = graph.producer(tensor)
            g.add_edge(INPUT if producer is None else producer, lid, first=i == 0)
    return g


def main_chain(g: nx.DiGraph) -> list[int | str]:
    """The longest path from the input (most layers), through each merge's first input on ties."""
    for _, _, data in g.edges(data=True):
        data["weight"] = 1.0 if data["first"] else 1.0 - 1e-3
    return nx.dag_longest_path(g, weight="weight", default_weight=1.0)


def architecture_layout(graph: Graph, parent: Graph | None = None) -> ArchitectureLayout:
    """Boxes, edges and positions of ``graph``'s picture; with ``parent``, the layers new or changed since it."""
    g = layer_graph(graph)
    chain = main_chain(g)
    on_chain = set(chain)
    chain_edges = set(itertools.pairwise(chain))
    generations = [sorted(gen, key=lambda n: (n not in on_chain, -1 if n == INPUT else n))
                   for gen in nx.topological_generations(g)]
    pos = nx.multipartite_layout(g, subset_key=dict(enumerate(generations)), align="horizontal")
    # multipartite puts rows one unit apart and a row's nodes one unit apart, then rescales: undo the scale
    unit = abs(float(pos[generations[1][0]][1] - pos[generations[0][0]][1])) if len(generations) > 1 else 1.0
    widest = max(len(gen) for gen in generations)
    boxes: dict[int | str, Box] = {}
    new = set(graph.layers) - set(parent.layers) if parent is not None else set()
    changed = set()
    if parent is not None:  # widened: a layer with units (conv, dense) the parent has, now with more of them
        changed = {lid for lid, layer in graph.layers.items() if lid in parent.layers and layer.has_units
                   and graph.shape(graph.layer_output[lid]) != parent.shape(parent.layer_output[lid])}
    for row, gen in enumerate(generations):
        anchor = next((n for n in gen if n in on_chain), None)
        shift = float(pos[anchor][0]) if anchor is not None else 0.0
        for n in gen:
            x = (float(pos[n][0]) - shift) / unit
            if n == INPUT:
                shape = "x".join(str(d) for d in graph.input_shape)
                boxes[n] = Box(n, f"input {shape}", "input", x, -row, True)
            else:
                layer = graph.layers[n]
                boxes[n] = Box(n, layer_label(layer), layer.kind, x, -row, n in on_chain, n in new, n in changed)
    edges = [Edge(u, v, (u, v) not in chain_edges) for u, v in g.edges()]
    return ArchitectureLayout(boxes, edges, new, changed, rows=len(generations), columns=widest)


def draw_architecture(graph: Graph, parent: Graph | None = None, title: str | None = None) -> Figure:
    """The architecture as a matplotlib Figure (not shown; close it when done)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    layout = architecture_layout(graph, parent)
    xs = [b.x for b in layout.boxes.values()]
    span = max(xs) - min(xs)
    width = max(4.0, 1.9 * (span + 1) + 1.2)
    title_lines = textwrap.wrap(title, width=max(30, int(width * 13))) if title else []
    height = max(3.0, 0.42 * layout.rows + 1.0) + 0.2 * len(title_lines)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1 - (0.2 * len(title_lines) + 0.1) / height if title_lines else 1.0))
    ax.set_axis_off()
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-layout.rows + 0.4, 0.6)
    pos = {n: (b.x, b.y) for n, b in layout.boxes.items()}
    g = nx.DiGraph()
    g.add_nodes_from(pos)
    plain = [(e.source, e.target) for e in layout.edges if not e.skip]
    skips = [(e.source, e.target) for e in layout.edges if e.skip]
    g.add_edges_from(plain + skips)
    common: dict[str, Any] = {"ax": ax, "arrows": True, "arrowstyle": "-|>", "arrowsize": 10, "node_size": 0,
                              "min_source_margin": 9, "min_target_margin": 9}
    nx.draw_networkx_edges(g, pos, edgelist=plain, edge_color="#555555", width=1.0, **common)
    if skips:
        nx.draw_networkx_edges(g, pos, edgelist=skips, edge_color=SKIP_COLOR, width=1.3,
                               connectionstyle="arc3,rad=-0.35", **common)
    for box in layout.boxes.values():
        color = NEW_COLOR if box.new else CHANGED_COLOR if box.changed else KIND_COLORS.get(box.kind, PLAIN_COLOR)
        edge = "#2e7d32" if box.new else "#e67e22" if box.changed else "#666666"
        ax.text(box.x, box.y, box.label, ha="center", va="center", fontsize=8, zorder=3,
                fontweight="bold" if box.new else "normal",
                bbox={"boxstyle": "round,pad=0.3", "facecolor": color, "edgecolor": edge,
                      "linewidth": 1.6 if box.new or box.changed else 0.8})
    legend = [Patch(facecolor=NEW_COLOR, edgecolor="#2e7d32", label="new since parent")] if layout.new_layers else []
    if layout.changed_layers:
        legend.append(Patch(facecolor=CHANGED_COLOR, edgecolor="#e67e22", label="wider since parent"))
    if skips:
        legend.append(Patch(facecolor=SKIP_COLOR, label="skip connection"))
    if legend:
        ax.legend(handles=legend, loc="upper right", fontsize=7, frameon=False)
    if title_lines:
        fig.text(0.5, 1 - 0.05 / height, "\n".join(title_lines), ha="center", va="top", fontsize=9)
    return fig


def save_architecture(graph: Graph, path: str | Path, parent: Graph | None = None, title: str | None = None,
                      dpi: int = 90) -> Path:
    """Draw ``graph`` (new layers since ``parent`` highlighted) into a PNG at ``path``, atomically."""
    return _save(draw_architecture(graph, parent, title), path, dpi)


def trial_title(record: TrialRecord) -> str:
    """``trial 7 (ok, val 91.20%, 123,456 parameters): deeper(conv3) after layer 5 on trial 3``."""
    result = f"val {record.metric:.2%}" if record.metric is not None else str(record.status)
    return f"trial {record.id} ({result}, {record.n_params:,} parameters): {record.description}"


def trial_figure(record: TrialRecord, parent: TrialRecord | None = None) -> Figure:
    """A trial's architecture as stored in its row, the layers added since ``parent`` (its parent's row)
    highlighted."""
    graph = Graph.from_dict(record.extra["architecture"])
    before = Graph.from_dict(parent.extra["architecture"]) if parent is not None else None
    return draw_architecture(graph, before, trial_title(record))


def save_trial_architecture(record: TrialRecord, parent: TrialRecord | None, path: str | Path,
                            dpi: int = 90) -> Path:
    """``trial_figure`` as a PNG at ``path``, atomically."""
    return _save(trial_figure(record, parent), path, dpi)


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    return path


def figure_pixels(fig: Figure, dpi: int = 72) -> np.ndarray:
    """The figure rendered to an H x W x 3 uint8 array (Agg, no pyplot), e.g. for TensorBoard's add_image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
