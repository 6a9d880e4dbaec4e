"""Callbacks of the training loop (graphdsl/runtime/loop.py), in the shape of Keras' and
Lightning's: checkpointing, early stopping, the run log and progress are each one
callback, so a new feature is a new callback rather than another branch in the loop.

The loop calls, in order:

- ``on_train_begin(loop)`` once, after resuming;
- per step: ``on_step_end(loop, record)`` right after the optimizer step; at the end of
  an epoch (or of the run) ``on_validation_end(loop, summary)`` after the validation
  pass; then ``on_boundary(loop)`` once the counters have moved on: the state here is
  exactly "after step N", which is what a checkpoint holds;
- ``on_train_end(loop, reason)`` once: ``"finished"``, ``"early-stop"``,
  ``"interrupted"`` (Ctrl-C or SIGTERM, at a boundary) or ``"failed"``.

A callback with state that a resumed run needs (early stopping's patience count) returns
it from ``state_dict`` and gets it back in ``load_state_dict``; it travels in the training
state file. Callbacks that write files or print set ``rank_zero_only`` (the default), so a
distributed run writes once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphdsl.runtime.loop import Loop


@dataclass
class StepRecord:
    """What one training step measured."""

    step: int  # steps done, this one included
    epoch: int  # 1-based
    values: dict[str, float]  # loss, each term weighted (they add up to loss), metrics
    raw: dict[str, float]  # each loss term before its weight
    lr: dict[str, float]  # each optimizer group's rate for this step, by pattern
    samples: int
    samples_per_s: float
    seconds: float  # wall time since the run (this process) began


@dataclass
class EpochSummary:
    epoch: int  # 1-based
    step: int
    train: dict[str, float]  # the epoch's means of the step values
    valid: dict[str, float]  # the validation pass: loss, weighted terms, metrics
    valid_raw: dict[str, float] = field(default_factory=dict)
    train_raw: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    steps_per_s: float = 0.0


class Callback:
    name = "callback"
    rank_zero_only = True

    def on_train_begin(self, loop: Loop) -> None:
        pass

    def on_step_end(self, loop: Loop, record: StepRecord) -> None:
        pass

    def on_validation_end(self, loop: Loop, summary: EpochSummary) -> None:
        pass

    def on_boundary(self, loop: Loop) -> None:
        pass

    def on_train_end(self, loop: Loop, reason: str) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class CallbackList:
    """Calls each hook on every callback that runs on this process, in order."""

    def __init__(self, callbacks: Iterable[Callback], rank: int = 0):
        self.all = list(callbacks)
        self.active = [c for c in self.all if rank == 0 or not c.rank_zero_only]

    def __getattr__(self, hook: str) -> Any:
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args: Any) -> None:
            if hook != "on_train_end":
                for callback in self.active:
                    getattr(callback, hook)(*args)
                return
            # Every callback gets to close what it opened, even when one fails.
            failure: BaseException | None = None
            for callback in self.active:
                try:
                    callback.on_train_end(*args)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    failure = failure or exc
            if failure is not None:
                raise failure

        return call

    def state_dict(self) -> dict[str, Any]:
        return {c.name: s for c in self.all if (s := c.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for c in self.all:
            if c.name in state:
                c.load_state_dict(state[c.name])
