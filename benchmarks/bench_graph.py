"""Graph benchmarks: compiled-module training throughput vs hand-written PyTorch, and morphism/compile cost.

    python benchmarks/bench_graph.py [--steps 12] [--batch 128] [--threads 2] [--json out.json]

(1) forward + backward + SGD step, batch 128, of ``Graph.to_module()`` for the default CNN and a ResNet-20
    against the same networks written by hand as plain ``nn.Module``s (same weights, checked equal), timed
    in interleaved rounds in the same process; ratio = compiled throughput / hand-written throughput.
(2) mean time of one morphism (with weights, and architecture-only) and of one ``to_module()`` on a graph of
    >= 50 layers grown from the CNN by random morphisms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from morphnas.graph import generators
from morphnas.graph.morphisms import MorphismError, add_skip, deeper, random_morph, wider


class HandCNN(nn.Module):
    """The Auto-Keras default CNN written by hand, in the layer order of ``generators.cnn``."""

    def __init__(self, in_ch: int, n_classes: int, filters: int = 64, dense: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_ch
        for _ in range(3):
            layers += [nn.BatchNorm2d(c), nn.Conv2d(c, filters, 3, padding=1), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, 2)]
            c = filters
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.25)
        self.fc1 = nn.Linear(filters, dense)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(dense, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.fc2(self.relu(self.fc1(self.drop(x))))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(h + (x if self.short is None else self.short(x)))


class HandResNet(nn.Module):
    """ResNet-20 written by hand, in the layer order of ``generators.resnet``."""

    def __init__(self, in_ch: int, n_classes: int, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, c = [], width
        for stage in range(3):
            for b in range(blocks):
                out = width * 2**stage
                layers.append(Block(c, out, 2 if stage and b == 0 else 1))
                c = out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def _copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy tensors in registration order (both modules register layers in the same topological order)."""
    s, d = src.state_dict(), dst.state_dict()
    sk = [k for k in s if not k.endswith("num_batches_tracked")]
    dk = [k for k in d if not k.endswith("num_batches_tracked")]
    assert [s[k].shape for k in sk] == [d[k].shape for k in dk], "hand-written network differs"
    dst.load_state_dict({**d, **{b: s[a] for a, b in zip(sk, dk, strict=True)}})


def _step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def throughput(name: str, graph_model: nn.Module, hand: nn.Module, shape: tuple[int, ...], batch: int,
               steps: int, rounds: int) -> dict[str, float]:
    _copy_weights(graph_model, hand)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *shape), generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    with torch.no_grad():
        assert torch.allclose(graph_model.eval()(x), hand.eval()(x), atol=1e-5), "networks differ"
    _step_time(graph_model, x, y, 2)  # warm-up
    _step_time(hand, x, y, 2)
    t_graph, t_hand = [], []
    for r in range(rounds):  # interleaved, alternating who goes first, to cancel drift
        pair = [(graph_model, t_graph), (hand, t_hand)]
        for model, acc in pair if r % 2 == 0 else pair[::-1]:
            acc.append(_step_time(model, x, y, steps))
    g, h = statistics.median(t_graph), statistics.median(t_hand)
    res = {"compiled_img_s": batch / g, "hand_img_s": batch / h, "ratio": h / g}
    print(f"{name:7s} compiled {batch / g:8.1f} img/s   hand-written {batch / h:8.1f} img/s   ratio {h / g:.3f}")
    return res


def morphism_costs(reps: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    g = generators.cnn((3, 32, 32), 10)
    while g.n_layers() < 50:
        g, _ = random_morph(g, rng)
    print(f"grown graph: {g.n_layers()} layers, {g.n_params():,} parameters, {g.n_skips()} skips")
    bare = g.without_weights()
    relu = [lid for lid in g.layers_of_kind("relu") if len(g.shape(g.layer_output[lid])) == 3]
    conv = []
    for lid in g.layers_of_kind("conv2d"):
        try:
            wider(bare, lid, 1)
            conv.append(lid)
        except MorphismError:  # e.g. an Add would force a Concat output to widen
            pass
    cases = {
        "random_morph (weights)": lambda i: random_morph(g, np.random.default_rng(i)),
        "random_morph (architecture only)": lambda i: random_morph(bare, np.random.default_rng(i)),
        "deeper conv": lambda i: deeper(g, relu[i % len(relu)], "conv", seed=i),
        "wider x2": lambda i: wider(g, conv[i % len(conv)], g.layers[conv[i % len(conv)]].out_channels, seed=i),
        "add_skip": lambda i: add_skip(g, relu[0], relu[-1], seed=i),
        "to_module()": lambda i: g.to_module(),
        "canonical_hash()": lambda i: g.canonical_hash(),
    }
    out = {}
    for name, fn in cases.items():
        fn(0)
        start = time.perf_counter()
        for i in range(reps):
            fn(i)
        ms = (time.perf_counter() - start) / reps * 1e3
        out[name] = ms
        print(f"{name:34s} {ms:8.2f} ms")
    out["layers"] = g.n_layers()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}")
    results = {
        "cnn": throughput("cnn", generators.cnn((3, 32, 32), 10).to_module(), HandCNN(3, 10), (3, 32, 32),
                          args.batch, args.steps, args.rounds),
        "resnet20": throughput("resnet20", generators.resnet((3, 32, 32), 10).to_module(), HandResNet(3, 10),
                               (3, 32, 32), args.batch, args.steps, args.rounds),
        "morphisms_ms": morphism_costs(args.reps),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
