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
