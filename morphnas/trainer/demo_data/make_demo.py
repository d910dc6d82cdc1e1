"""Regenerate the demo set `fashion_mnist_demo.npz` from the four original Fashion-MNIST IDX files.

Usage (from the repository root): python3 -m morphnas.trainer.demo_data.make_demo [FASHION_MNIST_DIR]
(default: $MORPHNAS_SHARED_DATASETS/fashion-mnist, else ../shared/datasets/fashion-mnist beside the checkout).
The subset is stratified and seeded (numpy Generator, seed 0): 300 training and 50 test images per class,
kept in their original order, with their indices into the original files stored alongside.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from morphnas.trainer.datasets import FASHION_MNIST_CLASSES, IDX_FILES, _idx_file, read_idx

TRAIN_PER_CLASS = 300
TEST_PER_CLASS = 50
SEED = 0


def pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `per_class` examples of every class, drawn without replacement."""
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(chosen))


def main(argv: list[str]) -> None:
    """Read the IDX files, draw the subset, write the compressed .npz next to this script."""
    default = Path(os.environ.get("MORPHNAS_SHARED_DATASETS", Path(__file__).resolve().parents[4] / "shared"
                                  / "datasets")) / "fashion-mnist"
    src = Path(argv[1]) if len(argv) > 1 else default
    x, y, xt, yt = (read_idx(_idx_file(src, stem)) for stem in IDX_FILES)
    rng = np.random.default_rng(SEED)
    tr, te = pick(y, TRAIN_PER_CLASS, rng), pick(yt, TEST_PER_CLASS, rng)
    out = Path(__file__).with_name("fashion_mnist_demo.npz")
    np.savez_compressed(
        out,
        x_train=x[tr][:, None], y_train=y[tr].astype(np.uint8), train_index=tr.astype(np.int32),
        x_test=xt[te][:, None], y_test=yt[te].astype(np.uint8), test_index=te.astype(np.int32),
        class_names=np.array(FASHION_MNIST_CLASSES), flip_ok=np.array(False), crop_padding=np.array(2),
    )
    print(f"wrote {out} ({out.stat().st_size} bytes): {len(tr)} train, {len(te)} test images from {src}")


if __name__ == "__main__":
    main(sys.argv)
