"""The run's record: `metrics.jsonl` (one JSON object per step and per validation pass,
flushed as it is written, so a killed run loses nothing it logged) and TensorBoard
scalars when a writer is available."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.callbacks import Callback, EpochSummary, StepRecord

if TYPE_CHECKING:
    from graphdsl.runtime.loop import Loop


def step_entry(record: StepRecord) -> dict[str, Any]:
    lr: Any = next(iter(record.lr.values())) if len(record.lr) == 1 else record.lr
    return {"step": record.step, "epoch": record.epoch, "split": "train", **record.values,
            "raw": record.raw, "lr": lr, "samples_per_s": record.samples_per_s,
            "time": record.seconds}


def valid_entry(summary: EpochSummary) -> dict[str, Any]:
    return {"split": "valid", "step": summary.step, "epoch": summary.epoch, **summary.valid,
            "raw": summary.valid_raw, "time": summary.seconds}


class MetricsFile(Callback):
    name = "metrics_file"

    def __init__(self) -> None:
        self.file: Any = None

    def on_train_begin(self, loop: Loop) -> None:
        path = loop.folder.path("metrics.jsonl")
        if loop.resumed_step is not None and os.path.exists(path):
            _drop_after(path, loop.resumed_step)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed at train end

    def write(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def on_step_end(self, loop: Loop, record: StepRecord) -> None:
        self.write(step_entry(record))

    def on_validation_end(self, loop: Loop, summary: EpochSummary) -> None:
        if summary.valid:
            self.write(valid_entry(summary))

    def on_train_end(self, loop: Loop, reason: str) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _drop_after(path: str, step: int) -> None:
    """A run resumed from step N forgets what it logged after N: it does those steps again."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    kept = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if isinstance(entry, dict) and int(entry.get("step", 0)) <= step:
            kept.append(line)
    ckpt.atomic_write_bytes(path, "".join(x + "\n" for x in kept).encode())


class TensorBoard(Callback):
    """Scalars under train/ and valid/: the loss, each term weighted and raw (raw/...),
    metrics, the learning rate and samples/s."""

    name = "tensorboard"

    def __init__(self) -> None:
        self.board: Any = None

    def on_train_begin(self, loop: Loop) -> None:
        self.board = loop.engine.open_board(loop.folder.out)

    def _scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                self._scalars(f"{prefix}/{key}", value, step)
            elif isinstance(value, (int, float)) and key not in ("step", "epoch"):
                self.board.add_scalar(f"{prefix}/{key}", float(value), step)

    def on_step_end(self, loop: Loop, record: StepRecord) -> None:
        if self.board is not None:
            entry = step_entry(record)
            entry.pop("split")
            self._scalars("train", entry, record.step)

    def on_validation_end(self, loop: Loop, summary: EpochSummary) -> None:
        if self.board is not None and summary.valid:
            entry = valid_entry(summary)
            entry.pop("split")
            self._scalars("valid", entry, summary.step)

    def on_train_end(self, loop: Loop, reason: str) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
