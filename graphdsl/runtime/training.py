"""`graphdsl train` and `graphdsl eval`, backend-neutral: the driver.

The driver owns everything a training run is besides arithmetic: settings (the train
block with command-line overrides), data, the loop over epochs and batches, the
learning-rate schedule, progress, `metrics.jsonl`, checkpoints, `--resume`, Ctrl-C and
the non-finite-loss stop. A backend supplies an :class:`Engine` that does one step, an
evaluation batch, and moves weights and training state in and out as numpy arrays.

On CPU with a fixed seed a run killed and resumed ends bit-identical to an
uninterrupted one: batch order is drawn from (seed, epoch), the position in the epoch,
the optimizer state and the framework's random-number state are all in the checkpoint.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from graphdsl.compiler import Program
from graphdsl.diagnostics import Diagnostic, Note
from graphdsl.elaborate.train_block import SETTINGS
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime import data as data_sources
from graphdsl.runtime.data import Data, DataError, Dataset, save_vocab

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class TrainError(Exception):
    def __init__(self, diagnostics: list[Diagnostic], code: int = EXIT_ERRORS):
        self.diagnostics = diagnostics
        self.code = code
        super().__init__("; ".join(d.message for d in diagnostics))


def train_error(code: str, message: str, notes: list[str] | None = None,
                help: str | None = None) -> TrainError:
    return TrainError([Diagnostic("error", code, message,
                                  notes=tuple(Note(n) for n in notes or ()), help=help)])


class NonFiniteLoss(Exception):
    """Raised by an engine before it applies a step whose loss terms are not finite."""

    def __init__(self, terms: list[str]):
        self.terms = terms
        super().__init__(", ".join(terms))


# ---- settings -----------------------------------------------------------------------------


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
    if overrides.get("data"):
        values["data"] = os.path.abspath(overrides["data"])
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


# ---- data ---------------------------------------------------------------------------------


def load_data(model: ModelGraph, settings: Settings) -> Data:
    try:
        return data_sources.load_data(model, settings)
    except DataError as exc:
        raise TrainError(exc.diagnostics) from None


# ---- the engine a backend provides ---------------------------------------------------------


@dataclass
class StepResult:
    total: float
    terms: dict[str, float]  # weighted: they add up to total
    metrics: dict[str, tuple[float, float]]  # (sum over valid samples, count)


class Engine(Protocol):
    """What the driver needs from a backend."""

    module: Any  # the native model

    def train_step(self, batch: Mapping[str, np.ndarray], lr_factor: float) -> StepResult:
        """One optimizer step; raises NonFiniteLoss before updating anything."""

    def eval_batch(self, batch: Mapping[str, np.ndarray]) -> StepResult: ...

    def export_arrays(self) -> dict[str, np.ndarray]: ...

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None: ...

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def load_training_state(self, tensors: Mapping[str, np.ndarray],
                            state: Mapping[str, Any]) -> None: ...

    def open_board(self, folder: str) -> Any: ...


# ---- logging ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _console() -> Any:
    """One console, so summaries print above a live progress bar, not through it."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class RunLog:
    """metrics.jsonl, TensorBoard scalars when available, and the epoch summaries."""

    def __init__(self, folder: str, quiet: bool, board: Any):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "metrics.jsonl")
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.quiet = quiet
        self.board = board

    def record(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        if self.board is not None:
            for key, value in entry.items():
                if isinstance(value, float):
                    self.board.add_scalar(f"{entry.get('split', 'train')}/{key}", value,
                                          entry.get("step", 0))

    def epoch(self, summary: dict[str, Any]) -> None:
        self.record({"split": "valid", "step": summary["step"], "epoch": summary["epoch"],
                     **summary["valid"]})
        self.file.flush()
        if self.quiet:
            return

        def fmt(values: dict[str, float]) -> str:
            return "  ".join(f"{k} {v:.4g}" for k, v in values.items())

        _console().print(f"epoch {summary['epoch']}  step {summary['step']}  "
                         f"train: {fmt(summary['train'])}"
                         + (f"  |  valid: {fmt(summary['valid'])}" if summary["valid"] else ""))

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


class Progress:
    """A rich progress bar with steps/s, ETA, the loss and every term, updated live."""

    def __init__(self, total: int, start: int, quiet: bool, title: str):
        self.bar: Any = None
        self.last = 0.0
        if quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(TextColumn(f"{title} epoch {{task.fields[epoch]}}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                TimeRemainingColumn(), TextColumn("{task.fields[values]}"),
                                console=_console())
        self.task = self.bar.add_task("train", total=total, completed=start, epoch=1,
                                      rate="", values="")
        self.started = time.perf_counter()
        self.start_step = start
        self.bar.start()

    def update(self, step: int, values: dict[str, float], epoch: int) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        if now - self.last > 0.2:
            rate = (step - self.start_step) / max(now - self.started, 1e-9)
            self.bar.update(self.task, completed=step, epoch=epoch + 1,
                            rate=f"{rate:.2f} steps/s",
                            values="  ".join(f"{k} {v:.4g}" for k, v in values.items()))
            self.last = now

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# ---- the loop -----------------------------------------------------------------------------


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0


class Driver:
    def __init__(self, program: Program, model: ModelGraph, settings: Settings, engine: Engine,
                 quiet: bool = False):
        self.program = program
        self.model = model
        self.settings = settings
        self.engine = engine
        self.quiet = quiet
        self.seed = int(settings["seed"])
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0

    def say(self, text: str) -> None:
        if not self.quiet:
            _console().print(text)

    # -- weights
    def restore_from_files(self) -> None:
        for pattern, path in self.settings.restore:
            try:
                arrays = ckpt.select(self.model, ckpt.load_checkpoint(path), pattern,
                                     source=os.path.basename(path), exact=False)
            except ckpt.CheckpointError as exc:
                raise TrainError(exc.diagnostics) from None
            self.engine.load_arrays(arrays)
            self.say(f"restored {len(arrays)} tensors matching `{pattern}` from {path}")

    def save(self, final: bool = False) -> str:
        folder = self.settings.out
        meta = ckpt.model_metadata(self.model, self.program.file, step=self.step,
                                   epoch=self.epoch)
        path = os.path.join(folder, "final.safetensors") if final else os.path.join(
            folder, "checkpoints", f"step-{self.step:08d}.safetensors")
        ckpt.save_checkpoint(path, self.engine.export_arrays(), meta)
        state_path = path.replace(".safetensors", ".state.safetensors")
        tensors, state = self.engine.training_state()
        state.update({"step": self.step, "epoch": self.epoch,
                      "batch_in_epoch": self.batch_in_epoch})
        ckpt.save_state(state_path, tensors, state)
        pointer = {"weights": os.path.relpath(path, folder),
                   "state": os.path.relpath(state_path, folder),
                   "step": self.step, "graph_hash": self.model.graph_hash()}
        ckpt.atomic_write_bytes(os.path.join(folder, "latest.json"),
                                json.dumps(pointer, indent=2).encode())
        return path

    def resume(self) -> bool:
        pointer_path = os.path.join(self.settings.out, "latest.json")
        if not os.path.exists(pointer_path):
            return False
        try:
            pointer = ckpt.read_pointer(pointer_path)
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        if pointer.get("graph_hash") != self.model.graph_hash():
            raise train_error("checkpoint-mismatch", f"{pointer_path} was written by a "
                              f"different version of model `{self.model.name}`",
                              help="resume with the program that wrote it, or use a new --out")
        try:
            weights = ckpt.load_checkpoint(os.path.join(self.settings.out, pointer["weights"]))
            self.engine.load_arrays(ckpt.select(self.model, weights, "*", source="checkpoint"))
            tensors, state = ckpt.load_state(os.path.join(self.settings.out, pointer["state"]))
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        self.engine.load_training_state(tensors, state)
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.say(f"resumed from {pointer['weights']} (step {self.step})")
        return True

    # -- evaluation
    def evaluate(self, data: Dataset, batch: int) -> dict[str, float]:
        sums: dict[str, float] = {}
        metric_sums: dict[str, list[float]] = {}
        count = 0
        for b in data.batches(batch, self.seed, 0, shuffle=False):
            n = len(next(iter(b.values())))
            result = self.engine.eval_batch(b)
            sums["loss"] = sums.get("loss", 0.0) + result.total * n
            for name, value in result.terms.items():
                sums[name] = sums.get(name, 0.0) + value * n
            for name, (total, valid) in result.metrics.items():
                acc = metric_sums.setdefault(name, [0.0, 0.0])
                acc[0] += total
                acc[1] += valid
            count += n
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out.update({k: s / max(c, 1e-12) for k, (s, c) in metric_sums.items()})
        return out

    # -- the loop
    def fit(self, data: Data, log: RunLog) -> History:
        batch = int(self.settings["batch"])
        per_epoch = data.train.steps_per_epoch(batch)
        if per_epoch == 0:
            raise train_error("bad-data", "the training split is empty",
                              help="use more data or a smaller `validation` share")
        total = per_epoch * int(self.settings["epochs"])
        if self.settings["steps"]:
            total = min(total, int(self.settings["steps"]))
        every = self.settings["checkpoint_every"]
        schedule = self.settings["schedule"]
        history = History()
        progress = Progress(total, self.step, self.quiet, self.model.name)
        try:
            while self.step < total:
                sums: dict[str, float] = {}
                seen = 0
                for b in data.train.batches(batch, self.seed, self.epoch,
                                            start=self.batch_in_epoch):
                    try:
                        result = self.engine.train_step(b, lr_factor(schedule, self.step,
                                                                     total))
                    except NonFiniteLoss as exc:
                        raise self.non_finite(exc.terms) from None
                    self.step += 1
                    self.batch_in_epoch += 1
                    values = {"loss": result.total, **result.terms}
                    values.update({k: s / max(c, 1e-12) for k, (s, c) in result.metrics.items()})
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    seen += 1
                    progress.update(self.step, values, self.epoch)
                    log.record({"step": self.step, "epoch": self.epoch + 1, "split": "train",
                                **values})
                    if every and self.step % int(every) == 0:
                        self.save()
                    if self.step >= total:
                        break
                number = self.epoch + 1
                if self.batch_in_epoch >= per_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                self.end_epoch(number, data, batch, sums, seen, log, history)
        except KeyboardInterrupt:
            progress.stop()
            path = self.save()
            self.say(f"interrupted at step {self.step}: checkpoint written to {path}; "
                     "continue with --resume")
            raise
        finally:
            progress.stop()
        self.save(final=True)
        history.steps = self.step
        return history

    def non_finite(self, terms: list[str]) -> TrainError:
        return TrainError([Diagnostic(
            "error", "non-finite-loss",
            f"loss term{'s' * (len(terms) > 1)} {', '.join(f'`{t}`' for t in terms)} became "
            f"non-finite at step {self.step + 1} (epoch {self.epoch + 1}); training stopped",
            notes=(Note("the last good checkpoint is kept; the step was not applied"),),
            help="lower the learning rate, clip gradients (`clip_norm = 1.0`), or check the "
                 "data for NaN or infinite values")])

    def end_epoch(self, number: int, data: Data, batch: int, sums: dict[str, float],
                  seen: int, log: RunLog, history: History) -> None:
        train = {k: v / max(seen, 1) for k, v in sums.items()}
        valid = self.evaluate(data.valid, batch) if len(data.valid) else {}
        if valid and data.vocab is not None:
            valid["perplexity"] = math.exp(min(valid["loss"], 50.0))
        summary = {"epoch": number, "step": self.step, "train": train, "valid": valid}
        history.epochs.append(summary)
        log.epoch(summary)


# ---- commands -----------------------------------------------------------------------------

EngineFactory = Any  # (program, model, settings, quiet) -> Engine


def train_model(program: Program, model: ModelGraph, make_engine: EngineFactory,
                overrides: Mapping[str, Any], out: str | None = None, resume: bool = False,
                compile: bool = False, quiet: bool = False) -> tuple[Driver, History, Data]:
    """Train one model: the work of `graphdsl train`, callable from Python."""
    if not model.losses:
        raise train_error("no-loss", f"model `{model.name}` has no loss, so there is nothing "
                          "to train", help="add a `loss` statement, or train the model that "
                          "uses this one")
    settings = resolve_settings(model, overrides, out, compile)
    data = load_data(model, settings)  # a data error comes before a model is built
    engine = make_engine(program, model, settings)
    driver = Driver(program, model, settings, engine, quiet)
    driver.restore_from_files()
    if resume and not driver.resume():
        driver.say(f"nothing to resume in {settings.out}: starting fresh")
    if data.vocab is not None:
        save_vocab(os.path.join(settings.out, "vocab.json"), data.vocab)
    log = RunLog(settings.out, quiet, engine.open_board(settings.out))
    try:
        history = driver.fit(data, log)
    finally:
        log.close()
    return driver, history, data


def models_to_train(program: Program, name: str | None) -> list[ModelGraph]:
    if name:
        return [program.model(name)]
    trained = [m for m in program.models.values() if m.train is not None]
    return trained or [program.model()]


def run_train(program: Program, args: Any, make_engine: EngineFactory) -> int:
    from graphdsl.diagnostics import report

    overrides = {"data": args.data, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                 "seed": args.seed, "steps": args.steps, "precision": args.precision,
                 "device": args.device, "fast_dev_run": getattr(args, "fast_dev_run", None)}
    results = []
    try:
        models = models_to_train(program, args.model)
        for model in models:
            # --out is the run folder; with several models, each gets a folder inside it
            out = os.path.join(args.out, model.name) if args.out and len(models) > 1 \
                else args.out
            driver, history, _ = train_model(program, model, make_engine, overrides, out,
                                             args.resume, args.compile, quiet=args.json)
            final = history.epochs[-1] if history.epochs else {}
            results.append({"model": model.name, "parameters": model.parameter_count,
                            "trainable_parameters": model.trainable_count,
                            "steps": driver.step, "train": final.get("train", {}),
                            "valid": final.get("valid", {}),
                            "weights": os.path.join(driver.settings.out, "final.safetensors")})
    except TrainError as exc:
        report(exc.diagnostics, program.sources)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps({"ok": True, "runs": results}, indent=2))
    else:
        print_results(results)
    return EXIT_OK


def print_results(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="results", title_justify="left")
    keys = sorted({k for r in results for k in r["valid"]},
                  key=lambda k: (k != "loss", k != "perplexity", k))
    if all(len([k for k in r["valid"] if k not in ("loss", "perplexity")]) <= 1
           and r["valid"].get("loss") in r["valid"].values() for r in results):
        keys = [k for k in keys if k in ("loss", "perplexity")] or keys  # one term: the loss
    for col in ("model", "parameters", "steps", *[f"valid {k}" for k in keys]):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(r["model"], f"{r['parameters']:,}", str(r["steps"]),
                      *[f"{r['valid'][k]:.4g}" if k in r["valid"] else "-" for k in keys])
    Console(highlight=False).print(table)
