"""A run's settings: the train block's, with the command line's overrides applied."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphdsl.elaborate.train_block import SETTINGS
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops.specs import Spec, default_spec

PATH_SETTINGS = ("data", "val_data")


@dataclass
class Settings:
    """The train block's settings with the command line's overrides applied."""

    values: dict[str, Any]
    optimizers: list[tuple[str, Spec]]
    restore: list[tuple[str, str]]
    out: str
    compile: bool = False

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def resolve_settings(model: ModelGraph, overrides: Mapping[str, Any], out: str | None = None,
                     compile: bool = False) -> Settings:
    values = {k: default for k, (_, default, _) in SETTINGS.items()}
    config = model.train
    if config is not None:
        values.update(config.settings)
    for key, value in overrides.items():
        if value is not None:
            values[key] = value
    for key in PATH_SETTINGS:  # the command line's paths are relative to where it runs
        if overrides.get(key):
            values[key] = os.path.abspath(overrides[key])
    optimizers = [(p, s) for p, s, _ in config.optimizers] if config else []
    if not optimizers:
        spec = default_spec("optimizer", "adam")
        optimizers = [("*", spec)]
        if values.get("lr") is not None:
            optimizers = [("*", _with_lr(spec, values["lr"]))]
    elif overrides.get("lr") is not None:  # --lr overrides every group's rate
        optimizers = [(p, _with_lr(s, overrides["lr"])) for p, s in optimizers]
    folder = out or os.path.join("runs", model.name)
    return Settings(values, optimizers, list(config.restore) if config else [], folder, compile)


def _with_lr(spec: Spec, lr: float) -> Spec:
    return Spec(spec.kind, spec.name, tuple({**dict(spec.args), "lr": float(lr)}.items()))
