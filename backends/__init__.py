"""Backends, chosen by name. Each backend module imports its framework lazily."""

from __future__ import annotations

import importlib
from typing import Any

# name -> module implementing `build(program, model, **options)`
BACKENDS = {"torch": "graphdsl.backends.torch", "keras": "graphdsl.backends.keras"}


def get_backend(name: str) -> Any:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])


class ExportError(Exception):
    """A model that a `graphdsl export` format cannot express (with the exporter's reason)."""
