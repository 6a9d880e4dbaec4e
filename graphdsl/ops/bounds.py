"""The values an argument may take, by name, for op arguments and spec arguments alike.

An op's `Arg` may carry its own interval; otherwise the table below applies to every op and
spec argument of that name, so a new op that takes `units`, `rate` or `stddev` is checked
without repeating the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, x: float) -> bool:
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        return not (self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)))

    def __str__(self) -> str:
        if self.hi is None:
            if self.lo == 1 and not self.lo_open:
                return "positive"
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        return (f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}"
                f"{')' if self.hi_open else ']'}")


def _num(x: float | None) -> str:
    return "-inf" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


POSITIVE_INT = Interval(1)
NON_NEGATIVE = Interval(0)
POSITIVE = Interval(0, lo_open=True)
PROBABILITY = Interval(0, 1)
DROP_RATE = Interval(0, 1, hi_open=True)  # a rate of 1 drops everything

BOUNDS: dict[str, Interval] = {
    # sizes and counts
    **{name: POSITIVE_INT for name in (
        "units", "filters", "num_heads", "key_dim", "value_dim", "input_dim", "output_dim",
        "kernel_size", "depth", "heads", "pool_size", "strides", "dilation_rate",
        "depth_multiplier", "groups", "size", "output_size", "num_classes", "height",
        "width", "repeats", "n")},
    # probabilities and rates
    "rate": DROP_RATE, "recurrent_dropout": DROP_RATE, "dropout": DROP_RATE,
    "label_smoothing": PROBABILITY, "p": PROBABILITY, "momentum": PROBABILITY,
    "beta_1": Interval(0, 1, hi_open=True), "beta_2": Interval(0, 1, hi_open=True),
    # scales
    "stddev": NON_NEGATIVE, "epsilon": POSITIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
    "l1": NON_NEGATIVE, "l2": NON_NEGATIVE, "max_value": POSITIVE, "gain": NON_NEGATIVE,
    "class_weight": NON_NEGATIVE, "delta": POSITIVE, "output_padding": NON_NEGATIVE,
    "output_shape": POSITIVE_INT,
    # learning-rate schedules
    "warmup": NON_NEGATIVE, "step_size": POSITIVE_INT, "gamma": POSITIVE, "min_lr": NON_NEGATIVE,
}

# Arguments that give the two ends of a range: the low end must not exceed the high end.
RANGES = (("minval", "maxval"), ("min", "max"), ("min_value", "max_value"))


def misordered(values: dict[str, object]) -> tuple[str, str] | None:
    """The (low, high) argument names whose values are given in the wrong order, if any."""
    for low, high in RANGES:
        a, b = values.get(low), values.get(high)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > b:
            return low, high
    return None


def bounds_for(name: str, own: Interval | None = None) -> Interval | None:
    return own if own is not None else BOUNDS.get(name)


def out_of_bounds(name: str, value: object, own: Interval | None = None) -> Interval | None:
    """The interval ``value`` (a number or a list of numbers) violates, if any."""
    interval = bounds_for(name, own)
    if interval is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    for x in items:
        if isinstance(x, (int, float)) and not isinstance(x, bool) and not interval.contains(x):
            return interval
    return None
