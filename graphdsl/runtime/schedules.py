"""Learning-rate schedules: the factor every group's base rate is multiplied by."""

from __future__ import annotations

import math

from graphdsl.ops.specs import Spec


def lr_factor(schedule: Spec | None, step: int, total: int) -> float:
    """Multiplier of every group's base rate at ``step`` (0-based) of ``total`` steps."""
    if schedule is None:
        return 1.0
    warmup = int(schedule.get("warmup", 0))
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "step":
        return float(schedule["gamma"]) ** ((step - warmup) // int(schedule["step_size"]))
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    floor = float(schedule.get("min_lr", 0.0))
    if schedule.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (1 - floor) * (1 - progress)
