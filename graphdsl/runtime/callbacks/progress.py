"""Progress: on a terminal a live bar (epoch, bar, step/total, ETA, steps/s) with the
step's values wrapped below it, fitting 80 columns, and a line per epoch above it; when
stderr is not a terminal, only the line per epoch, plain, never wrapped."""

from __future__ import annotations

import functools
import sys
import time
from typing import TYPE_CHECKING, Any

from graphdsl.runtime.callbacks import Callback, EpochSummary, StepRecord

if TYPE_CHECKING:
    from graphdsl.runtime.loop import Loop


@functools.lru_cache(maxsize=1)
def console() -> Any:
    """One console, so messages print above a live progress bar, not through it."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(text: str) -> None:
    console().print(text, soft_wrap=True, markup=False)


def format_values(values: dict[str, float], raw: dict[str, float],
                  weights: dict[str, float]) -> str:
    """`loss 2.3  task 2.1  decay 50 (x0.01 = 0.5)  accuracy 0.25`: each loss term raw,
    with its weight and weighted value when the weight is not 1."""
    return "  ".join(value_parts(values, raw, weights))


def value_parts(values: dict[str, float], raw: dict[str, float],
                weights: dict[str, float]) -> list[str]:
    parts = []
    for key, value in values.items():
        weight = weights.get(key)
        if weight is not None and weight != 1.0 and key in raw:
            parts.append(f"{key} {raw[key]:.4g} (x{weight:g} = {value:.4g})")
        else:
            parts.append(f"{key} {value:.4g}")
    return parts


def rate(value: float) -> str:
    """3 significant digits without an exponent: 0.123, 45.6, 1234."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def epoch_line(summary: EpochSummary, total: int, weights: dict[str, float]) -> str:
    line = (f"epoch {summary.epoch}  step {summary.step}/{total}  train: "
            + format_values(summary.train, summary.train_raw, weights))
    if summary.valid:
        line += "  |  valid: " + format_values(summary.valid, summary.valid_raw, weights)
    return line + (f"  |  {rate(summary.steps_per_s)} steps/s  "
                   f"{rate(summary.samples_per_s)} samples/s  {summary.seconds:.1f} s")


class EpochLines(Callback):
    """One plain line per epoch (stderr not a terminal: logs, CI, pipes)."""

    name = "epoch_lines"

    def on_validation_end(self, loop: Loop, summary: EpochSummary) -> None:
        sys.stderr.write(epoch_line(summary, loop.total, loop.term_weights) + "\n")
        sys.stderr.flush()


class LiveProgress(Callback):
    name = "live_progress"

    def __init__(self, title: str):
        self.title = title
        self.bar: Any = None
        self.last = 0.0

    def on_train_begin(self, loop: Loop) -> None:
        from rich.columns import Columns
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress
        from rich.text import Text

        class Bar(RichProgress):
            values: list[str] = []

            def get_renderables(self) -> Any:
                yield self.make_tasks_table(self.tasks)
                if self.values:  # below the bar, wrapped between values at any width
                    yield Columns([Text(v) for v in self.values], padding=(0, 2))

        self.bar = Bar(TextColumn(f"{self.title[:16]} epoch {{task.fields[epoch]}}"),
                       BarColumn(bar_width=20), MofNCompleteColumn(), TimeRemainingColumn(),
                       TextColumn("{task.fields[rate]}"), console=console())
        self.task = self.bar.add_task("train", total=loop.total, completed=loop.step,
                                      epoch=loop.epoch + 1, rate="")
        self.bar.start()

    def on_step_end(self, loop: Loop, record: StepRecord) -> None:
        now = time.perf_counter()
        if now - self.last > 0.2 or record.step >= loop.total:
            self._show(loop, record)
            self.last = now

    def _show(self, loop: Loop, record: StepRecord) -> None:
        steps_per_s = record.samples_per_s / max(record.samples, 1)
        lr = " ".join(f"lr {v:.3g}" for v in record.lr.values())
        self.bar.values = [*value_parts(record.values, record.raw, loop.term_weights), lr,
                           f"{rate(record.samples_per_s)} samples/s"]
        self.bar.update(self.task, completed=record.step, epoch=record.epoch,
                        rate=f"{rate(steps_per_s)} steps/s")

    def on_validation_end(self, loop: Loop, summary: EpochSummary) -> None:
        console().print(epoch_line(summary, loop.total, loop.term_weights), soft_wrap=False,
                        markup=False)

    def on_train_end(self, loop: Loop, reason: str) -> None:
        if self.bar is not None:
            if loop.last_record is not None:  # end on the final values, not a throttled one
                self._show(loop, loop.last_record)
            self.bar.stop()
            self.bar = None
