"""Loss functions; each returns a scalar.

One reduction for every loss (graphdsl/ops/losses.py): per-sample losses l, weights
w = sample_weight * class_weight[target], validity m = mask and where (each 1 if absent):

    loss = sum(l * w * m) / max(sum(w * m), 1e-12)

with w * m broadcast to l's shape before the sums. Masked entries are selected away (not
multiplied by 0), so a non-finite loss at a masked position changes neither the value nor
a gradient.

Per-sample shapes: crossentropy with class ids and kl_normal reduce the last axis of the
prediction and keep the rest. The elementwise losses (mse, mae, huber,
binary_crossentropy) and crossentropy with probability targets average every axis beyond
the per-sample shape, which is the shape of `where`, `sample_weight` or `mask` (the first
given) or else [batch]; weights and masks broadcast (NumPy rules) to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import impl

# Probabilities are clipped to [CLIP_EPSILON, 1 - CLIP_EPSILON] before a log (Keras' epsilon).
CLIP_EPSILON = 1e-7
# The smallest total weight the reduction divides by.
WEIGHT_FLOOR = 1e-12


def validity(where: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor | None:
    """m = mask and where, or None when neither is given."""
    if where is None:
        return mask
    if mask is None:
        return where
    return where & mask


def per_sample_rank(*weighting: torch.Tensor | None, default: int = 1) -> int:
    """The rank of the per-sample shape: the first given weighting tensor's, else 1."""
    for tensor in weighting:
        if tensor is not None:
            return tensor.dim()
    return default


def mean_beyond(e: torch.Tensor, rank: int) -> torch.Tensor:
    """Average e over its axes beyond the first ``rank``."""
    dims = tuple(range(rank, e.dim()))
    return e.mean(dim=dims) if dims else e


def reduce_loss(losses: torch.Tensor, weight: torch.Tensor | None,
                valid: torch.Tensor | None) -> torch.Tensor:
    """sum(l * w * m) / max(sum(w * m), 1e-12)."""
    if weight is None and valid is None:
        return losses.sum() / max(losses.numel(), WEIGHT_FLOOR)
    weighted = losses if weight is None else losses * weight.to(losses.dtype)
    if weight is None:
        total_weight = torch.ones((), dtype=losses.dtype, device=losses.device)
    else:
        total_weight = weight.to(losses.dtype)
    if valid is not None:
        zero = torch.zeros((), dtype=losses.dtype, device=losses.device)
        weighted = torch.where(valid, weighted, zero)
        total_weight = torch.where(valid, total_weight, zero)
    total_weight = torch.broadcast_to(total_weight, losses.shape)
    return weighted.sum() / total_weight.sum().clamp_min(WEIGHT_FLOOR)


def _log_probabilities(pred: torch.Tensor, from_logits: bool) -> torch.Tensor:
    if from_logits:
        return torch.log_softmax(pred, dim=-1)
    p = pred / pred.sum(dim=-1, keepdim=True)
    return torch.log(p.clamp(CLIP_EPSILON, 1.0 - CLIP_EPSILON))


def _combine_weights(*weights: torch.Tensor | None) -> torch.Tensor | None:
    out: torch.Tensor | None = None
    for w in weights:
        if w is not None:
            out = w if out is None else out * w
    return out


@impl("crossentropy")
def crossentropy(*, pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None,
                 sample_weight: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                 from_logits: bool = False, label_smoothing: float = 0.0,
                 class_weight: Sequence[float] | None = None) -> torch.Tensor:
    valid = validity(where, mask)
    classes = pred.shape[-1]
    smoothing = float(label_smoothing)
    if not target.is_floating_point():
        ids = target.long()
        if valid is not None:
            # targets at invalid positions (padding ids, -1, ...) must never index anything
            ids = torch.where(valid, ids, torch.zeros((), dtype=ids.dtype, device=ids.device))
        if from_logits:
            # fused log_softmax + pick; its label smoothing is q (1 - s) + s / classes
            losses = F.cross_entropy(pred.reshape(-1, classes), ids.reshape(-1),
                                     reduction="none", label_smoothing=smoothing)
            losses = losses.reshape(ids.shape)
        else:
            logp = _log_probabilities(pred, False)
            losses = -logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
            if smoothing:
                losses = (1.0 - smoothing) * losses - (smoothing / classes) * logp.sum(dim=-1)
        class_w = None
        if class_weight is not None:
            table = torch.tensor(list(class_weight), dtype=pred.dtype, device=pred.device)
            class_w = table[ids]
        return reduce_loss(losses, _combine_weights(sample_weight, class_w), valid)
    q = target.to(pred.dtype)
    if smoothing:
        q = q * (1.0 - smoothing) + smoothing / classes
    losses = -(q * _log_probabilities(pred, from_logits)).sum(dim=-1)
    rank = min(per_sample_rank(where, sample_weight, mask), losses.dim())
    return reduce_loss(mean_beyond(losses, rank), sample_weight, valid)


def _elementwise_loss(e: torch.Tensor, where: torch.Tensor | None,
                      sample_weight: torch.Tensor | None,
                      mask: torch.Tensor | None) -> torch.Tensor:
    losses = mean_beyond(e, per_sample_rank(where, sample_weight, mask))
    return reduce_loss(losses, sample_weight, validity(where, mask))


@impl("mse")
def mse(*, pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None,
        sample_weight: torch.Tensor | None = None,
        mask: torch.Tensor | None = None) -> torch.Tensor:
    d = pred - target.to(pred.dtype)
    return _elementwise_loss(d * d, where, sample_weight, mask)


@impl("mae")
def mae(*, pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None,
        sample_weight: torch.Tensor | None = None,
        mask: torch.Tensor | None = None) -> torch.Tensor:
    return _elementwise_loss((pred - target.to(pred.dtype)).abs(), where, sample_weight, mask)


@impl("huber")
def huber(*, pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None,
          sample_weight: torch.Tensor | None = None, mask: torch.Tensor | None = None,
          delta: float = 1.0) -> torch.Tensor:
    d = (pred - target.to(pred.dtype)).abs()
    e = torch.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _elementwise_loss(e, where, sample_weight, mask)


@impl("binary_crossentropy")
def binary_crossentropy(*, pred: torch.Tensor, target: torch.Tensor,
                        where: torch.Tensor | None = None,
                        sample_weight: torch.Tensor | None = None,
                        mask: torch.Tensor | None = None,
                        from_logits: bool = False) -> torch.Tensor:
    t = target.to(pred.dtype)
    if from_logits:
        # max(x, 0) - x t + log(1 + exp(-|x|)), stable for any logit
        e = F.binary_cross_entropy_with_logits(pred, t, reduction="none")
    else:
        p = pred.clamp(CLIP_EPSILON, 1.0 - CLIP_EPSILON)
        e = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    return _elementwise_loss(e, where, sample_weight, mask)


@impl("kl_normal")
def kl_normal(*, pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None,
              sample_weight: torch.Tensor | None = None,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    mean, logvar = pred, target.to(pred.dtype)
    losses = -0.5 * (1.0 + logvar - mean * mean - torch.exp(logvar)).sum(dim=-1)
    return reduce_loss(losses, sample_weight, validity(where, mask))


@impl("l1")
def l1(*, x: torch.Tensor) -> torch.Tensor:
    return x.abs().sum()


@impl("l2")
def l2(*, x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum()
