"""Shape manipulation: reshape, transpose, concat, stack, indexing and friends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from graphdsl.ops.arith import index_items

from . import impl
from .core import resolve_shape


@impl("reshape")
def reshape(*, x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    # row-major like numpy.reshape; 0 copies the input's dimension, one -1 is inferred
    return x.reshape(resolve_shape(x.shape, shape))


@impl("transpose")
def transpose(*, x: torch.Tensor, perm: Sequence[int] | None = None) -> torch.Tensor:
    if perm is None:
        return x.transpose(-2, -1)
    return x.permute(*perm)


@impl("concat")
def concat(*, xs: Sequence[torch.Tensor], axis: int = -1) -> torch.Tensor:
    return torch.cat(list(xs), dim=axis)


@impl("stack")
def stack(*, xs: Sequence[torch.Tensor], axis: int = 0) -> torch.Tensor:
    return torch.stack(list(xs), dim=axis)


@impl("expand_dims")
def expand_dims(*, x: torch.Tensor, axis: int) -> torch.Tensor:
    return x.unsqueeze(axis)


@impl("squeeze")
def squeeze(*, x: torch.Tensor, axis: int) -> torch.Tensor:
    if x.shape[axis] != 1:
        raise ValueError(f"cannot squeeze axis {axis} of size {x.shape[axis]}")
    return x.squeeze(axis)


@impl("positions")
def positions(*, x: torch.Tensor, axis: int = 1) -> torch.Tensor:
    return torch.arange(x.shape[axis], dtype=torch.int32, device=x.device)


@impl("zeros_like")
def zeros_like(*, x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


@impl("ones_like")
def ones_like(*, x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


@impl("mask_of")
def mask_of(*, x: torch.Tensor) -> torch.Tensor:
    """Never runs: the compiler replaces `mask_of(x)` by the mask tensor itself."""
    raise RuntimeError("mask_of is resolved at compile time to the mask tensor; a graph that "
                       "still calls it was not elaborated")


@impl("getitem")
def getitem(*, x: torch.Tensor, items: Sequence[tuple[Any, ...]]) -> torch.Tensor:
    return x[index_items(items)]
