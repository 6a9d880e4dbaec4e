"""A backend's table of op implementations: registration and loading by family."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from . import FAMILIES


class ImplTable:
    """Op name -> implementation, filled by importing ``<package>.<family>`` modules."""

    def __init__(self, package: str, backend: str):
        self.package = package
        self.backend = backend
        self.impls: dict[str, Callable[..., Any]] = {}
        self._loaded = False

    def impl(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self.impls:
                raise ValueError(f"{self.backend} implementation of {name} registered twice")
            self.impls[name] = fn
            return fn

        return register

    def load_all(self) -> dict[str, Callable[..., Any]]:
        if not self._loaded:
            for family in FAMILIES:
                importlib.import_module(f"{self.package}.{family}")
            self._loaded = True
        return self.impls
