"""Metrics. Unlike the registry's single scalar, each implementation returns a TUPLE of two
scalars ``(sum(correct * m), sum(m))`` (m = mask and where, 1 where absent, counted over the
elements the metric averages), so a training loop can aggregate an epoch exactly as
sum of the first / sum of the second over the batches; one batch's value is their ratio.
"""

from __future__ import annotations

import torch

from . import impl
from .losses import validity


def _result_dtype(pred: torch.Tensor) -> torch.dtype:
    return pred.dtype if pred.is_floating_point() else torch.float32


def _counts(correct: torch.Tensor, valid: torch.Tensor | None,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    correct = correct.to(dtype)
    if valid is None:
        return correct.sum(), torch.tensor(correct.numel(), dtype=dtype, device=correct.device)
    valid = torch.broadcast_to(valid, correct.shape)
    hits = torch.where(valid, correct, torch.zeros((), dtype=dtype, device=correct.device))
    return hits.sum(), valid.sum().to(dtype)


@impl("accuracy")
def accuracy(*, pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None,
             mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    predicted = pred.argmax(dim=-1)
    expected = target.argmax(dim=-1) if target.is_floating_point() else target.long()
    return _counts(predicted == expected, validity(where, mask), _result_dtype(pred))


@impl("binary_accuracy")
def binary_accuracy(*, pred: torch.Tensor, target: torch.Tensor,
                    where: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                    threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    correct = (pred > threshold) == (target > 0.5)
    valid = validity(where, mask)
    if valid is not None:
        # the per-sample shape leads the prediction's: trailing axes share their sample's m
        valid = valid.reshape(*valid.shape, *([1] * (correct.dim() - valid.dim())))
    return _counts(correct, valid, _result_dtype(pred))
