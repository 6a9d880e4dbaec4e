"""`adapt = "pattern"` in a train block: Keras' `Normalization.adapt` on the training data.

Before the first step, each matched Normalization layer's state (`adapt_mean`,
`adapt_variance`) becomes the mean and the (population) variance of its input over every
training row, per position of its `axis`, as `keras.layers.Normalization.adapt` computes
them. Rows are read in chunks and summed in float64, so memory-mapped data is never
loaded whole. The statistics are state: checkpoints keep them, and a resumed run reads
them from there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdsl.elaborate.train_block import adapted_layers
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops.preprocess import kept_axes
from graphdsl.runtime.data import Dataset
from graphdsl.runtime.errors import train_error

CHUNK_ROWS = 4096


def adapted_statistics(model: ModelGraph, pattern: str, train: Any
                       ) -> tuple[dict[str, np.ndarray], int]:
    """The state tensors of the adapted layers (canonical names -> float32), and the rows."""
    if not isinstance(train, Dataset):
        raise train_error("train-setting", "`adapt` needs the training data as arrays (an "
                          ".npz or a folder of .npy files), not a token stream or a corpus")
    layers, _ = adapted_layers(model, pattern)
    out: dict[str, np.ndarray] = {}
    for path, name, axis in layers:
        mean, variance = _moments(train.arrays[name], axis)
        out[f"{path}.adapt_mean"] = mean.astype(np.float32)
        out[f"{path}.adapt_variance"] = variance.astype(np.float32)
    return out, len(train)


def _moments(x: np.ndarray, axis: Any) -> tuple[np.ndarray, np.ndarray]:
    kept = kept_axes(axis, x.ndim)
    reduced = tuple(a for a in range(x.ndim) if a not in kept)
    count = 0
    total: np.ndarray | float = 0.0
    squares: np.ndarray | float = 0.0
    for start in range(0, len(x), CHUNK_ROWS):
        chunk = np.asarray(x[start:start + CHUNK_ROWS], dtype=np.float64)
        count += chunk.size // max(int(np.prod([x.shape[a] for a in kept], dtype=np.int64)),
                                   1)
        total = total + chunk.sum(axis=reduced, keepdims=True)
        squares = squares + np.square(chunk).sum(axis=reduced, keepdims=True)
    if count == 0:
        raise train_error("bad-data", "`adapt` found no training rows")
    mean = np.asarray(total) / count
    variance = np.maximum(np.asarray(squares) / count - np.square(mean), 0.0)
    shape = tuple(x.shape[a] for a in kept)
    return mean.reshape(shape), variance.reshape(shape)
