"""Keras 3 implementations of every registered op, one module per op family.

The contract is the PyTorch backend's (backends/torch/ops/__init__.py): keyword-only
functions named after the registry's inputs, parameters, arguments and call arguments,
plus ``training`` for random ops, implementing each op's canonical definition exactly.
They are written with ``keras.ops`` (TensorFlow underneath) and run inside a model's
``call``.
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
            raise ValueError(f"keras implementation of {name} registered twice")
        IMPLS[name] = fn
        return fn

    return register


@functools.lru_cache(maxsize=1)
def load_all() -> dict[str, Callable[..., Any]]:
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")
    return IMPLS
