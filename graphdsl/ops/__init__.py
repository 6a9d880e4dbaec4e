"""Ops, grouped by family, one module each; importing a module registers its ops."""

from __future__ import annotations

import functools
import importlib

from .registry import REGISTRY, REQUIRED, Arg, In, OpCall, OpDef, ParamSpec, all_ops, get

FAMILIES = ("core", "conv", "pooling", "spatial", "preprocess", "augment", "norm", "recurrent",
            "attention", "elementwise", "reduce", "shape", "random", "numeric", "losses",
            "metrics")


@functools.lru_cache(maxsize=1)
def load_all() -> None:
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")


__all__ = ["FAMILIES", "REGISTRY", "REQUIRED", "Arg", "In", "OpCall", "OpDef", "ParamSpec",
           "all_ops", "get", "load_all"]
