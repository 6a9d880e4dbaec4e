"""Checkpoints as callbacks: periodic ones (keeping the last N), the final one, the one a
Ctrl-C leaves, and the best K by a monitored value."""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.callbacks import Callback, EpochSummary
from graphdsl.runtime.callbacks.monitor import Monitor

if TYPE_CHECKING:
    from graphdsl.runtime.loop import Loop

_PERIODIC = re.compile(r"step-(\d{8})\.safetensors$")


def periodic_name(step: int) -> str:
    return f"checkpoints/step-{step:08d}.safetensors"


class Checkpointing(Callback):
    """Every ``every`` steps, at the end, and at a Ctrl-C; only the ``keep_last`` newest
    periodic checkpoints stay (all of them when it is None)."""

    name = "checkpointing"
    # Every process saves (a sharded model is gathered collectively); rank 0 writes.
    rank_zero_only = False

    def __init__(self, every: int | None, keep_last: int | None):
        self.every = int(every) if every else None
        self.keep_last = int(keep_last) if keep_last else None
        self.saved_at: int | None = None

    def on_boundary(self, loop: Loop) -> None:
        if self.every and loop.step % self.every == 0 and self.saved_at != loop.step:
            self._periodic(loop)

    def on_train_end(self, loop: Loop, reason: str) -> None:
        if reason == "interrupted" and self.saved_at != loop.step:
            self._periodic(loop)
        elif reason in ("finished", "early-stop"):
            loop.save("final.safetensors")

    def _periodic(self, loop: Loop) -> None:
        loop.save(periodic_name(loop.step))
        self.saved_at = loop.step
        if self.keep_last and loop.world.main:
            folder = os.path.join(loop.folder.out, "checkpoints")
            steps = sorted(int(m.group(1)) for n in os.listdir(folder)
                           if (m := _PERIODIC.match(n)))
            for old in steps[:-self.keep_last]:
                loop.folder.remove(periodic_name(old))


class BestCheckpoints(Callback):
    """The ``keep`` checkpoints with the best monitored value, in best/, ranked in
    best.json (best first)."""

    name = "best_checkpoints"
    rank_zero_only = False  # as Checkpointing: every process saves, rank 0 writes

    def __init__(self, monitor: Monitor, keep: int):
        self.monitor = monitor
        self.keep = int(keep)
        self.ranked: list[dict[str, Any]] = []

    def on_train_begin(self, loop: Loop) -> None:
        path = loop.folder.path("best.json")
        if os.path.exists(path):  # a resumed run keeps competing with its earlier bests
            try:
                with open(path, encoding="utf-8") as fh:
                    self.ranked = list(json.load(fh)["ranked"])
            except (OSError, ValueError, KeyError, TypeError):
                self.ranked = []

    def on_validation_end(self, loop: Loop, summary: EpochSummary) -> None:
        value = self.monitor.value(summary)
        worst = self.ranked[-1]["value"] if len(self.ranked) >= self.keep else None
        if len(self.ranked) >= self.keep and not self.monitor.better(value, worst):
            return
        if len(self.ranked) < self.keep and value != value:  # NaN never ranks
            return
        relative = f"best/step-{summary.step:08d}.safetensors"
        loop.save(relative, with_state=False, point_latest=False)
        self.ranked = [r for r in self.ranked if r["weights"] != relative]
        self.ranked.append({"weights": relative, "step": summary.step,
                            "epoch": summary.epoch, "value": value})
        self.ranked.sort(key=lambda r: r["value"], reverse=self.monitor.mode == "max")
        dropped, self.ranked = self.ranked[self.keep:], self.ranked[:self.keep]
        if not loop.world.main:  # the ranking is the same in every process; one writes
            return
        for entry in dropped:
            loop.folder.remove(entry["weights"])
        document = {"monitor": self.monitor.name, "mode": self.monitor.mode,
                    "ranked": self.ranked}
        ckpt.atomic_write_bytes(loop.folder.path("best.json"),
                                json.dumps(document, indent=2).encode())
