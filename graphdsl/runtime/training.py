"""`graphdsl train` and `graphdsl eval`, backend-neutral: the commands.

A run is assembled here from rooms of the runtime package: its settings (settings.py),
its data (splits.py), its folder and checkpoints (run_folder.py), the loop (loop.py) and
the callbacks that checkpoint, stop early, log and show progress (callbacks/). A backend
supplies an :class:`Engine` (engine.py) that does one step, an evaluation batch, and
moves weights and training state in and out as numpy arrays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime.adapt import adapted_statistics
from graphdsl.runtime.callbacks import Callback
from graphdsl.runtime.callbacks.checkpointing import BestCheckpoints, Checkpointing
from graphdsl.runtime.callbacks.early_stopping import EarlyStopping
from graphdsl.runtime.callbacks.monitor import Monitor
from graphdsl.runtime.callbacks.progress import EpochLines, LiveProgress, console
from graphdsl.runtime.callbacks.run_log import MetricsFile, TensorBoard
from graphdsl.runtime.data import save_vocab
from graphdsl.runtime.distributed import launched_world, split_batch_problem
from graphdsl.runtime.engine import Engine, StepResult
from graphdsl.runtime.errors import (
    EXIT_ERRORS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Interrupted,
    NonFiniteLoss,
    TrainError,
    train_error,
)
from graphdsl.runtime.loop import History, Loop
from graphdsl.runtime.run_folder import RunFolder, check_folder
from graphdsl.runtime.schedules import lr_factor
from graphdsl.runtime.settings import Settings, resolve_settings
from graphdsl.runtime.splits import Data, load_data

Driver = Loop  # the name the loop had before it was split into rooms

__all__ = ["EXIT_ERRORS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Data", "Driver",
           "Engine", "History", "Loop", "NonFiniteLoss", "Settings", "StepResult",
           "TrainError", "default_callbacks", "load_data", "lr_factor", "resolve_settings",
           "run_train", "train_error", "train_model"]

EngineFactory = Any  # (program, model, settings) -> Engine


def default_callbacks(model: ModelGraph, settings: Settings, quiet: bool) -> list[Callback]:
    callbacks: list[Callback] = [MetricsFile(), TensorBoard(),
                                 Checkpointing(settings["checkpoint_every"],
                                               settings["keep_last"])]
    terms = [model.node(n)["name"] for n in model.losses]
    monitor = Monitor(settings["monitor"], settings["mode"], terms, settings["min_delta"])
    if settings["keep_best"]:
        callbacks.append(BestCheckpoints(monitor, settings["keep_best"]))
    if settings["patience"]:
        callbacks.append(EarlyStopping(monitor, settings["patience"]))
    if not quiet:
        callbacks.append(LiveProgress(model.name) if console().is_terminal else EpochLines())
    return callbacks


def train_model(program: Program, model: ModelGraph, make_engine: EngineFactory,
                overrides: Mapping[str, Any], out: str | None = None, resume: bool = False,
                compile: bool = False, quiet: bool = False, force: bool = False,
                callbacks: list[Callback] | None = None) -> tuple[Loop, History, Data]:
    """Train one model: the work of `graphdsl train`, callable from Python. ``callbacks``
    run after the default ones."""
    if not model.losses:
        raise train_error("no-loss", f"model `{model.name}` has no loss, so there is nothing "
                          "to train", help="add a `loss` statement, or train the model that "
                          "uses this one")
    settings = resolve_settings(model, overrides, out, compile)
    launched = launched_world()  # this process' place under torchrun (rank 0 alone)
    # Refused before any process connects to the others, so all stop at once.
    problem = split_batch_problem(int(settings["batch"]), launched.size)
    if problem is not None:
        raise TrainError([problem])
    if launched.main:  # rank 0 owns the folder; the others write nothing into it
        check_folder(settings.out, resume, force)  # before a large model is built
    data = load_data(model, settings)  # a data error comes before a model is built
    adapted = adapted_statistics(model, str(settings["adapt"]), data.train) \
        if settings["adapt"] else None
    engine = make_engine(program, model, settings)
    folder = RunFolder(settings.out, model, program.file)
    if Loop.world_of(engine).main:
        folder.acquire(force)
    try:
        loop = Loop(program, model, settings, engine, quiet, folder,
                    default_callbacks(model, settings, quiet) + list(callbacks or []))
        loop.restore_from_files()
        if adapted is not None:  # before a resume, which brings back the statistics
            engine.load_arrays(adapted[0])
            loop.say(f"adapted {len(adapted[0]) // 2} Normalization layer(s) to "
                     f"{adapted[1]:,} training rows")
        if resume and not loop.resume():
            loop.say(f"nothing to resume in {settings.out}: starting fresh")
        if data.vocab is not None and loop.rank == 0:
            save_vocab(folder.path("vocab.json"), data.vocab)
        history = loop.fit(data)
    finally:
        folder.release()
    return loop, history, data


def models_to_train(program: Program, name: str | None) -> list[ModelGraph]:
    if name:
        return [program.model(name)]
    trained = [m for m in program.models.values() if m.train is not None]
    return trained or [program.model()]


def run_train(program: Program, args: Any, make_engine: EngineFactory) -> int:
    from graphdsl.diagnostics import report

    overrides = {"data": args.data, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                 "seed": args.seed, "steps": args.steps, "precision": args.precision,
                 "device": args.device, "val_data": getattr(args, "val_data", None),
                 "accumulate": getattr(args, "accumulate", None),
                 "shard": getattr(args, "shard", False) or None,
                 "devices": getattr(args, "devices", None),
                 "fast_dev_run": getattr(args, "fast_dev_run", None)}
    results = []
    try:
        models = models_to_train(program, args.model)
        for model in models:
            # --out is the run folder; with several models, each gets a folder inside it
            out = os.path.join(args.out, model.name) if args.out and len(models) > 1 \
                else args.out
            loop, history, _ = train_model(program, model, make_engine, overrides, out,
                                           args.resume, args.compile, quiet=args.json,
                                           force=getattr(args, "force", False))
            final = history.epochs[-1] if history.epochs else {}
            results.append({"model": model.name, "parameters": model.parameter_count,
                            "trainable_parameters": model.trainable_count,
                            "steps": loop.step, "train": final.get("train", {}),
                            "valid": final.get("valid", {}),
                            "valid_raw": final.get("valid_raw", {}),
                            "term_weights": loop.term_weights,
                            "stopped_early": history.stop_reason,
                            "weights": os.path.join(loop.settings.out, "final.safetensors")})
    except TrainError as exc:
        report(exc.diagnostics, program.sources)
        return exc.code
    except (Interrupted, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if results and not loop.world.main:  # rank 0 alone reports
        return EXIT_OK
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
    # a weighted term shows its raw value, the header its weight: `valid reg (raw, x0.2)`
    weights = {k: w for r in results for k, w in r["term_weights"].items() if w != 1.0}

    def header(key: str) -> str:
        return f"valid {key} (raw, x{weights[key]:g})" if key in weights else f"valid {key}"

    def cell(r: dict[str, Any], key: str) -> str:
        value = r["valid_raw"].get(key) if key in weights else r["valid"].get(key)
        return "-" if value is None else f"{value:.4g}"

    for col in ("model", "parameters", "steps", *[header(k) for k in keys]):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(r["model"], f"{r['parameters']:,}", str(r["steps"]),
                      *[cell(r, k) for k in keys])
    Console(highlight=False).print(table)
