"""Framework-free arithmetic that both backends' op implementations share: argument
normalisation, the padding arithmetic of convolutions and pooling, reshape targets and
index items. Nothing here touches a tensor."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def padding_amounts(length: int, kernel: int, stride: int, dilation: int,
                    padding: Any) -> tuple[int, int]:
    """Cells added before and after one spatial axis (TensorFlow's "same": the extra one
    goes after; "causal": all before)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        out = math.ceil(length / stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - length, 0)
        return (total // 2, total - total // 2)
    if padding == "causal":
        return ((kernel - 1) * dilation, 0)
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return (padding, padding)
    raise ValueError(f"unsupported padding {padding!r}")


def resolve_shape(in_shape: Sequence[Any], target: Sequence[int]) -> list[Any]:
    """A reshape target where 0 copies the input's dimension at the same index."""
    return [in_shape[i] if d == 0 and i < len(in_shape) else d for i, d in enumerate(target)]


def index_items(items: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The registry's index items as a Python index: ("index", i), ("slice", start, stop,
    step), ("ellipsis",), ("newaxis",)."""
    out: list[Any] = []
    for item in items:
        kind = item[0]
        if kind == "index":
            out.append(int(item[1]))
        elif kind == "slice":
            out.append(slice(*item[1:]))
        elif kind == "ellipsis":
            out.append(Ellipsis)
        elif kind == "newaxis":
            out.append(None)
        else:
            raise ValueError(f"unknown index item {item!r}")
    return tuple(out)


def einsum_terms(equation: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    """An einsum equation in explicit form: one term per operand and the output term, with
    `...` kept as written. Implicit outputs (no `->`) are NumPy's: `...` first, then the
    letters used once, sorted. Raises ValueError with a message for a user."""
    text = equation.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"the equation names {len(terms)} operand(s), but {len(ranks)} "
                         f"tensor(s) are given")
    for term in [*terms, rhs]:
        letters = term.replace("...", "", 1)
        if not all(ch.isalpha() and ch.isascii() for ch in letters):
            raise ValueError(f"`{term}`: a term holds letters and at most one `...`")
    for term, rank in zip(terms, ranks, strict=True):
        named = len(term.replace("...", ""))
        if named > rank or ("..." not in term and named != rank):
            raise ValueError(f"`{term}` names {named} axes of a tensor of rank {rank}")
    if not arrow:
        counts = {ch: lhs.count(ch) for ch in lhs if ch.isalpha()}
        rhs = ("..." if "..." in lhs else "") + "".join(sorted(c for c, n in counts.items()
                                                               if n == 1))
    out_letters = rhs.replace("...", "")
    for ch in out_letters:
        if out_letters.count(ch) > 1:
            raise ValueError(f"the output names `{ch}` twice")
        if ch not in lhs:
            raise ValueError(f"the output's `{ch}` is not in any operand")
    if "..." in rhs and "..." not in lhs:
        raise ValueError("the output has `...`, but no operand has")
    return terms, rhs


def arange_values(start: float, stop: float | None, step: float) -> list[float]:
    """numpy.arange's values, each start + i * step computed in float64 (Python floats):
    arange(n) counts from 0; an empty list when stop is not beyond start."""
    if stop is None:
        start, stop = 0, start
    count = max(math.ceil((stop - start) / step), 0)
    return [start + i * step for i in range(count)]


def arange_dtype(start: float, stop: float | None, step: float, dtype: str | None) -> str:
    """arange's dtype: the one asked for, else int32 when every bound is an int."""
    if dtype is not None:
        return dtype
    bounds = (start, step) if stop is None else (start, stop, step)
    return "int32" if all(isinstance(v, int) for v in bounds) else "float32"
