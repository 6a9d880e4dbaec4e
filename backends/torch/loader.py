"""Batches read ahead by torch.utils.data.DataLoader worker processes (`workers = N`).

The driver's batch sources are already batched and ordered by (seed, epoch); worker w of
N reads batches w, w + N, ... and the DataLoader hands them back round-robin, which is
the original order, so a run with workers trains exactly as one without."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

Batches = Callable[[tuple[int, int]], Iterator[dict[str, np.ndarray]]]


class _Strided(IterableDataset):  # type: ignore[type-arg]
    def __init__(self, batches: Batches):
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        info = get_worker_info()
        return self.batches((info.id, info.num_workers) if info else (0, 1))


def _as_is(batch: Any) -> Any:
    """Keeps numpy batches numpy: the engine moves them to its device itself."""
    return batch


def loader(batches: Batches, workers: int) -> Iterator[dict[str, np.ndarray]]:
    return iter(DataLoader(_Strided(batches), batch_size=None, num_workers=workers,
                           collate_fn=_as_is, prefetch_factor=2))
