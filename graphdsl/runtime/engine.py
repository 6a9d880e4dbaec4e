"""What the training loop needs from a backend: one step, an evaluation batch, and
weights and training state moved in and out as numpy arrays. Everything about devices and
processes stays behind this boundary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass
class StepResult:
    total: float
    terms: dict[str, float]  # weighted: they add up to total
    metrics: dict[str, tuple[float, float]]  # (sum over valid samples, count)


class Engine(Protocol):
    """What the driver needs from a backend.

    An engine that runs several processes sets ``world`` (graphdsl/runtime/distributed.py:
    rank, size, and the sum over processes); one may instead only have ``rank``. Without
    either it is rank 0 of 1. Callbacks that write files or print run on rank 0 only.
    It may also have ``loader(batches, workers)``: batches read ahead by the framework's
    own loader (PyTorch DataLoader workers, tf.data) when `workers` asks for processes.
    """

    module: Any  # the native model

    def train_step(self, batch: Mapping[str, np.ndarray], lr_factor: float) -> StepResult:
        """One optimizer step; raises NonFiniteLoss before updating anything when a loss
        term or a gradient is not finite."""

    def eval_batch(self, batch: Mapping[str, np.ndarray]) -> StepResult: ...

    def export_arrays(self) -> dict[str, np.ndarray]: ...

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None: ...

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def load_training_state(self, tensors: Mapping[str, np.ndarray],
                            state: Mapping[str, Any]) -> None: ...

    def open_board(self, folder: str) -> Any: ...
