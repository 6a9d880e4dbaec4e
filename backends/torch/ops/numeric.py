"""einsum, cumsum, tril/triu, arange and top_k (graphdsl/ops/numeric.py)."""

from __future__ import annotations

import torch

from graphdsl.ops.arith import arange_dtype, arange_values, einsum_terms

from . import impl
from .elementwise import torch_dtype


@impl("einsum")
def einsum(*, operands: list[torch.Tensor], subscripts: str) -> torch.Tensor:
    # the explicit form, so that an implicit output is NumPy's in both backends
    terms, out = einsum_terms(subscripts, [t.dim() for t in operands])
    return torch.einsum(f"{','.join(terms)}->{out}", *operands)


@impl("cumsum")
def cumsum(*, x: torch.Tensor, axis: int | None = None, exclusive: bool = False,
           reverse: bool = False) -> torch.Tensor:
    if axis is None:
        x, axis = x.reshape(-1), 0
    if reverse:
        x = x.flip(axis)
    y = torch.cumsum(x, dim=axis, dtype=x.dtype)  # torch would widen integers to int64
    if exclusive:  # shifted one step along the axis, 0 first
        size = y.shape[axis]
        y = torch.cat([torch.zeros_like(y.narrow(axis, 0, min(size, 1))),
                       y.narrow(axis, 0, max(size - 1, 0))], dim=axis)
    return y.flip(axis) if reverse else y


@impl("tril")
def tril(*, x: torch.Tensor, k: int = 0) -> torch.Tensor:
    return torch.tril(x, diagonal=k)


@impl("triu")
def triu(*, x: torch.Tensor, k: int = 0) -> torch.Tensor:
    return torch.triu(x, diagonal=k)


@impl("arange")
def arange(*, start: float, stop: float | None = None, step: float = 1,
           dtype: str | None = None) -> torch.Tensor:
    """A new tensor on the CPU, as `constant` makes (the values are static)."""
    values = arange_values(start, stop, step)
    dtype = arange_dtype(start, stop, step, dtype)
    return torch.tensor(values, dtype=torch.float64).to(torch_dtype(dtype))


@impl("top_k")
def top_k(*, x: torch.Tensor, k: int, sorted: bool = True) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: A002
    # a stable descending sort puts the lower index first among equal values (TensorFlow's
    # order), which torch.topk does not promise
    values, indices = torch.sort(x, dim=-1, descending=True, stable=True)
    return values[..., :k], indices[..., :k].to(torch.int32)
