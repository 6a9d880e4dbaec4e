"""Which process of a distributed run this is, backend-neutral.

`torchrun` starts one process per device and tells each its place through the
environment (RANK, WORLD_SIZE, LOCAL_RANK). The driver reads a :class:`World` to decide
who writes (rank 0 alone prints progress, writes metrics.jsonl, TensorBoard and
checkpoints) and which rows of each global batch this process reads; the engine that
set up the process group installs ``reducer``, the one collective the driver needs (a sum
of a few floats across processes, for validation and the logged step values). The core
never imports a framework, so the reduction is the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from graphdsl.diagnostics import Diagnostic, Note


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    # Sums a list of floats over every process; None while there is only one.
    reducer: Callable[[list[float]], list[float]] | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def part(self) -> tuple[int, int]:
        """(this process, number of processes): which share of every batch to read."""
        return self.rank, self.size

    def sum(self, values: Mapping[str, float]) -> dict[str, float]:
        if self.reducer is None or self.size == 1:
            return dict(values)
        keys = sorted(values)
        return dict(zip(keys, self.reducer([float(values[k]) for k in keys]), strict=True))

    def sum_scores(self, count: int, sums: dict[str, float],
                   metric_sums: dict[str, list[float]]
                   ) -> tuple[int, dict[str, float], dict[str, list[float]]]:
        """An evaluation's row count, loss sums and metric (sum, count) pairs, summed over
        the processes."""
        if self.size == 1:
            return count, sums, metric_sums
        totals = self.sum({"n": count, **{f"s.{k}": v for k, v in sums.items()},
                           **{f"m.{k}.{i}": v[i] for k, v in metric_sums.items()
                              for i in (0, 1)}})
        return (int(totals["n"]), {k: totals[f"s.{k}"] for k in sums},
                {k: [totals[f"m.{k}.0"], totals[f"m.{k}.1"]] for k in metric_sums})


def launched_world() -> World:
    """The place torchrun (or any launcher that sets the same variables) gave this process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return World(rank=rank, size=size, local_rank=int(os.environ.get("LOCAL_RANK", rank)))


def split_batch_problem(batch: int, size: int) -> Diagnostic | None:
    """The global batch is split evenly over the processes, or refused."""
    if batch % size == 0:
        return None
    lower = max(size, batch - batch % size)
    return Diagnostic(
        "error", "train-setting",
        f"`batch = {batch}` does not split evenly over {size} processes",
        notes=(Note(f"`batch` is the global batch: each of the {size} processes reads "
                    f"batch / {size} rows of every batch"),),
        help=f"use a batch that divides by {size} (e.g. {lower} or {lower + size}), or start "
             f"a number of processes that divides {batch}")


def shard_rows(index: np.ndarray, part: tuple[int, int]) -> np.ndarray:
    """This process's rows of one batch: contiguous, as even as the count allows."""
    rank, size = part
    if size == 1:
        return index
    return np.array_split(index, size)[rank]
