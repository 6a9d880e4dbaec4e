"""PyTorch implementations of every registered op, one module per op family.

Contract: each implementation is a function taking keyword arguments only, named exactly
as the op's registry entry names them: its tensor inputs (a list for a variadic input,
None for an absent optional one), its parameters (already constrained and masked), its
arguments and call arguments, and ``training`` for ops marked ``random``. It returns a
tensor, or a tuple for ops with several outputs. Layouts are the registry's canonical
ones (Dense kernel [in, units], conv kernels channels last, LSTM gates i, f, c, o).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from graphdsl.ops import FAMILIES

IMPLS: dict[str, Callable[..., Any]] = {}


def impl(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in IMPLS:
            raise ValueError(f"torch implementation of {name} registered twice")
        IMPLS[name] = fn
        return fn

    return register


@functools.lru_cache(maxsize=1)
def load_all() -> dict[str, Callable[..., Any]]:
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")
    return IMPLS
