"""Stop when the monitored value has not improved for ``patience`` epochs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphdsl.runtime.callbacks import Callback, EpochSummary
from graphdsl.runtime.callbacks.monitor import Monitor

if TYPE_CHECKING:
    from graphdsl.runtime.loop import Loop


class EarlyStopping(Callback):
    name = "early_stopping"
    rank_zero_only = False  # every process must stop at the same step

    def __init__(self, monitor: Monitor, patience: int):
        self.monitor = monitor
        self.patience = int(patience)
        self.best: float | None = None
        self.waited = 0

    def on_validation_end(self, loop: Loop, summary: EpochSummary) -> None:
        value = self.monitor.value(summary)
        if self.monitor.better(value, self.best):
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            loop.request_stop(f"early stopping: `{self.monitor.name}` has not improved for "
                              f"{self.waited} epoch{'s' * (self.waited != 1)} (best "
                              f"{self.best:.6g})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.waited = state.get("best"), int(state.get("waited", 0))
