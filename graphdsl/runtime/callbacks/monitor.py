"""The value early stopping and the best checkpoints watch, and which way is better."""

from __future__ import annotations

from graphdsl.runtime.callbacks import EpochSummary
from graphdsl.runtime.errors import train_error

LOWER_IS_BETTER = ("loss", "perplexity")


class Monitor:
    """``name`` from the validation pass when there is one, else the epoch's training
    means. ``mode`` "auto" minimises the loss, its terms and perplexity and maximises
    metrics."""

    def __init__(self, name: str, mode: str, terms: list[str], min_delta: float = 0.0):
        self.name = name
        if mode == "auto":
            mode = "min" if name in LOWER_IS_BETTER or name in terms else "max"
        self.mode = mode
        self.min_delta = float(min_delta)

    def value(self, summary: EpochSummary) -> float:
        values = summary.valid or summary.train
        if self.name not in values:
            raise train_error("train-setting", f"monitor = \"{self.name}\": the run logs no "
                              "such value", notes=["it logs: " + ", ".join(values)],
                              help="monitor one of the logged values")
        return float(values[self.name])

    def better(self, value: float, than: float | None) -> bool:
        if than is None:
            return value == value  # not NaN
        if self.mode == "min":
            return value < than - self.min_delta
        return value > than + self.min_delta
