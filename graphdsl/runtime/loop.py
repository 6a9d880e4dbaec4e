"""The training loop: epochs of steps, validation, and the callbacks that do the rest
(graphdsl/runtime/callbacks/).

On CPU with a fixed seed a run stopped and resumed ends bit-identical to an uninterrupted
one: batch order is drawn from (seed, epoch); the position in the epoch, the optimizer
state, every random-number state the engine's step uses and the callbacks' state are in
the checkpoint. Ctrl-C (SIGINT) and SIGTERM only raise a flag: the loop finishes the step
under way, then saves exactly "after step N" and ends with exit 130. A second Ctrl-C stops
at once, without saving.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphdsl.compiler import Program
from graphdsl.diagnostics import Diagnostic, Note
from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.callbacks import Callback, CallbackList, EpochSummary, StepRecord
from graphdsl.runtime.callbacks.progress import say
from graphdsl.runtime.data import Dataset
from graphdsl.runtime.distributed import World
from graphdsl.runtime.engine import Engine
from graphdsl.runtime.errors import Interrupted, NonFiniteLoss, TrainError, train_error
from graphdsl.runtime.run_folder import RunFolder
from graphdsl.runtime.schedules import lr_factor
from graphdsl.runtime.settings import Settings
from graphdsl.runtime.splits import Data
from graphdsl.runtime.streams import Source, read_ahead


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    stop_reason: str | None = None


class Loop:
    def __init__(self, program: Program, model: ModelGraph, settings: Settings, engine: Engine,
                 quiet: bool = False, folder: RunFolder | None = None,
                 callbacks: list[Callback] | None = None):
        self.program = program
        self.model = model
        self.settings = settings
        self.engine = engine
        self.quiet = quiet
        self.folder = folder or RunFolder(settings.out, model, program.file)
        self.world = self.world_of(engine)
        self.rank = self.world.rank
        self.callbacks = CallbackList(callbacks or [], self.rank)
        self.seed = int(settings["seed"])
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.total = 0
        self.resumed_step: int | None = None
        self.last_record: StepRecord | None = None
        self.stop_reason: str | None = None
        self.interrupts = 0
        self.term_weights = {model.node(n)["name"]: float(model.node(n)["weight"])
                             for n in model.losses}

    @staticmethod
    def world_of(engine: Any) -> World:
        """The engine's processes: its ``world`` when it runs several (torchrun, a Keras
        worker), else one process of rank ``engine.rank`` (0 when absent)."""
        world = getattr(engine, "world", None)
        return world if world is not None else World(rank=int(getattr(engine, "rank", 0)))

    def say(self, text: str) -> None:
        if not self.quiet and self.rank == 0:
            say(text)

    def request_stop(self, reason: str) -> None:
        """Called by a callback: the run ends at the next step boundary, as finished."""
        self.stop_reason = reason

    # -- weights
    def restore_from_files(self) -> None:
        for pattern, path in self.settings.restore:
            notes: list[str] = []
            try:
                arrays = ckpt.select(self.model, ckpt.load_checkpoint(path), pattern,
                                     source=os.path.basename(path), exact=False,
                                     conversions=notes)
            except ckpt.CheckpointError as exc:
                raise TrainError(exc.diagnostics) from None
            for note in notes:
                self.say(f"note: {note}")
            self.engine.load_arrays(arrays)
            self.say(f"restored {len(arrays)} tensors matching `{pattern}` from {path}")

    def save(self, relative: str, with_state: bool = True, point_latest: bool = True) -> str:
        """Rank 0 writes; but every process must call this at the same point (a sharded
        model's tensors are gathered collectively), so a callback that saves is not
        `rank_zero_only`."""
        arrays = self.engine.export_arrays()
        state = None
        if with_state:
            tensors, values = self.engine.training_state()
            values.update({"step": self.step, "epoch": self.epoch,
                           "batch_in_epoch": self.batch_in_epoch,
                           "callbacks": self.callbacks.state_dict()})
            state = (tensors, values)
        if not self.world.main:
            return self.folder.path(relative)
        return self.folder.write(relative, arrays, state, self.step, self.epoch, point_latest,
                                 self.world.size)

    def resume(self) -> bool:
        notes: list[str] = []
        found = self.folder.read_latest(notes)
        if found is None:
            return False
        for note in notes:
            self.say(f"note: {note}")
        arrays, tensors, state, weights_name = found
        self.engine.load_arrays(arrays)
        self.engine.load_training_state(tensors, state)
        try:
            self.step, self.epoch = int(state["step"]), int(state["epoch"])
            self.batch_in_epoch = int(state["batch_in_epoch"])
        except (KeyError, TypeError, ValueError) as exc:
            raise train_error("bad-checkpoint", f"the training state beside {weights_name} "
                              f"lacks its counters ({exc})") from None
        self.callbacks.load_state_dict(state.get("callbacks") or {})
        self.resumed_step = self.step
        self.say(f"resumed from {weights_name} (step {self.step})")
        return True

    # -- evaluation
    def evaluate(self, data: Dataset | Source, batch: int
                 ) -> tuple[dict[str, float], dict[str, float]]:
        """Means over every sample of ``data``: (loss, weighted terms and metrics; raw terms).
        Each process scores its share of every batch; the sums are added up over them."""
        sums: dict[str, float] = {}
        metric_sums: dict[str, list[float]] = {}
        count = 0
        for b in data.batches(batch, self.seed, 0, shuffle=False, part=self.world.part):
            n = len(next(iter(b.values())))
            if n == 0:  # a short last batch leaves some processes no rows: score one, count 0
                b = next(data.batches(1, self.seed, 0, shuffle=False))
            result = self.engine.eval_batch(b)
            if n == 0:
                continue
            sums["loss"] = sums.get("loss", 0.0) + result.total * n
            for name, value in result.terms.items():
                sums[name] = sums.get(name, 0.0) + value * n
            for name, (total, valid) in result.metrics.items():
                acc = metric_sums.setdefault(name, [0.0, 0.0])
                acc[0] += total
                acc[1] += valid
            count += n
        count, sums, metric_sums = self.world.sum_scores(count, sums, metric_sums)
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out.update({k: s / max(c, 1e-12) for k, (s, c) in metric_sums.items()})
        return out, self.raw_terms(out)

    def raw_terms(self, values: dict[str, float]) -> dict[str, float]:
        """Each loss term before its weight (a weight of 0 leaves nothing to recover)."""
        return {k: values[k] / w for k, w in self.term_weights.items() if k in values and w}

    # -- the loop
    def fit(self, data: Data) -> History:
        # One optimizer step reads `accumulate` batches' worth of rows; the engine runs them
        # as that many forward passes. Each process reads its share (`part`) of those rows.
        batch = int(self.settings["batch"]) * int(self.settings["accumulate"])
        per_epoch = data.train.steps_per_epoch(batch)
        if per_epoch == 0:
            raise train_error("bad-data", "the training split is empty",
                              help="use more data or a smaller `validation` share")
        total = per_epoch * int(self.settings["epochs"])
        if self.settings["steps"]:
            total = min(total, int(self.settings["steps"]))
        self.total = total
        history = History()
        self.callbacks.on_train_begin(self)
        reason = "failed"
        try:
            with self._interrupts_as_flag():
                reason = self._epochs(data, batch, per_epoch, history)
        except KeyboardInterrupt:  # the second Ctrl-C: stop now, save nothing half-done
            reason = "failed"
            self.say(f"stopped at once during step {self.step + 1}: nothing saved; the last "
                     "checkpoint is kept")
            raise Interrupted() from None
        finally:
            if reason == "failed":
                self.callbacks.on_train_end(self, reason)
        self.callbacks.on_train_end(self, reason)
        if reason == "interrupted":
            self.say(f"interrupted after step {self.step}: checkpoint written; continue "
                     "with --resume")
            raise Interrupted()
        if reason == "early-stop" and self.stop_reason:
            self.say(self.stop_reason)
        history.steps = self.step
        history.stop_reason = self.stop_reason
        return history

    def _epochs(self, data: Data, batch: int, per_epoch: int, history: History) -> str:
        schedule = self.settings["schedule"]
        started = time.perf_counter()
        while self.step < self.total:
            if self.batch_in_epoch >= per_epoch:  # a state saved before the epoch rolled over
                self.epoch += 1
                self.batch_in_epoch = 0
            sums: dict[str, float] = {}
            samples = 0
            epoch_started = time.perf_counter()
            batches = self.loaded(data.train, batch)
            for seen, b in enumerate(batches, start=1):
                tick = time.perf_counter()
                factor = lr_factor(schedule, self.step, self.total)
                try:
                    result = self.engine.train_step(b, factor)
                except NonFiniteLoss as exc:
                    raise self.non_finite(exc) from None
                self.step += 1
                self.batch_in_epoch += 1
                n = len(next(iter(b.values())))
                now = time.perf_counter()
                values = {"loss": result.total, **result.terms}
                values.update({k: s / max(c, 1e-12) for k, (s, c) in result.metrics.items()})
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                samples += n
                record = StepRecord(
                    self.step, self.epoch + 1, values, self.raw_terms(values),
                    {p: float(s["lr"]) * factor for p, s in self.settings.optimizers},
                    n, n / max(now - tick, 1e-9), now - started)
                self.last_record = record
                self.callbacks.on_step_end(self, record)
                if self.batch_in_epoch >= per_epoch or self.step >= self.total:
                    elapsed = max(time.perf_counter() - epoch_started, 1e-9)
                    self.end_epoch(data, batch, sums, seen, history, elapsed, samples,
                                   time.perf_counter() - started)
                    if self.batch_in_epoch >= per_epoch:
                        self.epoch += 1
                        self.batch_in_epoch = 0
                self.callbacks.on_boundary(self)
                if self.interrupts:
                    return "interrupted"
                if self.stop_reason:
                    return "early-stop"
                if self.batch_in_epoch == 0 or self.step >= self.total:
                    break
        return "finished"

    def loaded(self, source: Dataset | Source, batch: int) -> Iterator[dict[str, np.ndarray]]:
        """This epoch's batches from its current position, this process's share of each,
        read ahead in the background (graphdsl/runtime/streams.py)."""
        return read_ahead(source, batch, self.seed, self.epoch, self.batch_in_epoch,
                          self.world.part, int(self.settings["workers"]),
                          getattr(self.engine, "loader", None))

    def end_epoch(self, data: Data, batch: int, sums: dict[str, float], seen: int,
                  history: History, elapsed: float, samples: int, seconds: float) -> None:
        train = {k: v / max(seen, 1) for k, v in sums.items()}
        valid, valid_raw = self.evaluate(data.valid, int(self.settings["batch"])) \
            if len(data.valid) else ({}, {})
        if valid and data.vocab is not None:
            valid["perplexity"] = math.exp(min(valid["loss"], 50.0))
        summary = EpochSummary(self.epoch + 1, self.step, train, valid, valid_raw,
                               self.raw_terms(train), seconds, samples / elapsed,
                               seen / elapsed)
        history.epochs.append({"epoch": summary.epoch, "step": summary.step, "train": train,
                               "valid": valid, "train_raw": summary.train_raw,
                               "valid_raw": valid_raw})
        self.callbacks.on_validation_end(self, summary)

    def non_finite(self, exc: NonFiniteLoss) -> TrainError:
        names = ", ".join(f"`{t}`" for t in exc.terms[:6]) + (
            f" and {len(exc.terms) - 6} more" if len(exc.terms) > 6 else "")
        where = f"at step {self.step + 1} (epoch {self.epoch + 1}); training stopped"
        if exc.what == "gradient":
            return TrainError([Diagnostic(
                "error", "non-finite-gradient",
                f"the gradient of {names} became non-finite {where}",
                notes=(Note("the loss was finite; the step was not applied and the last "
                            "good checkpoint is kept"),),
                help="look for operations without a finite gradient at some inputs (sqrt "
                     "or log at 0, pow with a negative base), lower the learning rate, or "
                     "clip gradients (`clip_norm = 1.0`)")])
        plural = "s" * (len(exc.terms) > 1)
        return TrainError([Diagnostic(
            "error", "non-finite-loss", f"loss term{plural} {names} became non-finite {where}",
            notes=(Note("the last good checkpoint is kept; the step was not applied"),),
            help="lower the learning rate, clip gradients (`clip_norm = 1.0`), or check the "
                 "data for NaN or infinite values")])

    @contextlib.contextmanager
    def _interrupts_as_flag(self) -> Iterator[None]:
        """SIGINT and SIGTERM set a flag the loop reads at each step boundary; a second
        SIGINT raises KeyboardInterrupt at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.interrupts += 1
            if self.interrupts == 1:
                self.say(f"stopping after step {self.step + 1} (Ctrl-C again to stop now, "
                         "without saving)")
            elif signum == signal.SIGINT:
                raise KeyboardInterrupt

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def finite_or_error(arrays: dict[str, np.ndarray], source: str) -> None:
    """`eval` and `predict` refuse weights with NaN or infinite values."""
    from graphdsl.runtime.run_folder import non_finite_tensors

    bad = non_finite_tensors(arrays)
    if bad:
        raise train_error("non-finite-checkpoint", f"{source} holds NaN or infinite values "
                          f"in {', '.join(f'`{n}`' for n in bad[:6])}"
                          + (f" and {len(bad) - 6} more" if len(bad) > 6 else ""),
                          help="use an earlier checkpoint of the run")
