"""`graphdsl eval`, backend-neutral: score saved weights on a data file.

With `--data FILE` every sample of FILE is scored; without it, the validation share of the
train block's data (the samples training held out). The model is the one named in the
checkpoint's metadata unless `--model` says otherwise.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from graphdsl.compiler import Program
from graphdsl.diagnostics import report
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.data import DataError, Dataset, is_text, load_npz, load_text_corpus
from graphdsl.runtime.training import (
    EXIT_OK,
    Driver,
    EngineFactory,
    TrainError,
    load_data,
    resolve_settings,
    train_error,
)


def run_eval(program: Program, args: Any, make_engine: EngineFactory) -> int:
    try:
        try:
            checkpoint = ckpt.load_checkpoint(args.weights)
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        model = program.model(checkpoint_model(program, args.model, checkpoint, args.weights))
        folder = os.path.dirname(os.path.abspath(args.weights))
        overrides = {"batch": args.batch, "seed": args.seed, "device": args.device}
        settings = resolve_settings(model, overrides, out=folder)
        if args.data:
            split = whole_file(model, settings, args.data, args.weights)
            text = is_text(args.data)
            what = f"every sample of {args.data}"
        else:
            data = load_data(model, settings)
            split = data.valid if len(data.valid) else data.train
            text = data.vocab is not None
            what = (f"the validation share of {os.path.basename(settings['data'])}"
                    if len(data.valid) else f"all of {os.path.basename(settings['data'])}")
        engine = make_engine(program, model, settings)
        try:
            arrays = ckpt.select(model, checkpoint, "*", source=os.path.basename(args.weights))
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        engine.load_arrays(arrays)
        driver = Driver(program, model, settings, engine, quiet=True)
        values = driver.evaluate(split, int(settings["batch"]))
        if text:
            values["perplexity"] = math.exp(min(values["loss"], 50.0))
    except TrainError as exc:
        report(exc.diagnostics, program.sources)
        return exc.code
    if args.json:
        print(json.dumps({"ok": True, "model": model.name, "samples": len(split), **values},
                         indent=2))
    else:
        print(f"model `{model.name}`: {len(split):,} samples ({what})")
        for key, value in values.items():
            print(f"{key:>24}  {value:.6g}")
    return EXIT_OK


def checkpoint_model(program: Program, requested: str | None, checkpoint: ckpt.Checkpoint,
                     path: str) -> str | None:
    """--model, else the model the checkpoint's metadata names, if the program has it."""
    if requested:
        return requested
    named = checkpoint.metadata.get("model")
    if named is None or named in program.models:
        return named
    raise train_error("checkpoint-mismatch", f"{path} holds weights of model `{named}`, which "
                      f"this program does not define (it has: {', '.join(program.models)})",
                      help="pass the program that defines it, or choose a model with --model")


def whole_file(model: Any, settings: Any, path: str, weights: str) -> Dataset:
    """Every sample of ``path``: no validation split."""
    try:
        if not os.path.isfile(path):
            raise train_error("bad-data", f"no data file {path}")
        if not is_text(path):
            return load_npz(path, model)
        vocab_file = find_vocab(weights)
        if vocab_file is None:
            raise train_error("bad-data", f"scoring the text corpus {path} needs the "
                              "vocabulary the weights were trained with, and there is no "
                              "vocab.json beside them", help="keep the run folder together: "
                              "train writes vocab.json next to final.safetensors")
        every, _, _ = load_text_corpus(
            path, model, sequence_length=settings["sequence_length"],
            tokenizer=settings["tokenizer"], vocab_size=settings["vocab_size"],
            validation=0.0, vocab_file=vocab_file)
        return every
    except DataError as exc:
        raise TrainError(exc.diagnostics) from None


def find_vocab(weights: str) -> str | None:
    """vocab.json of the run that wrote ``weights`` (final.safetensors or checkpoints/...)."""
    folder = os.path.dirname(os.path.abspath(weights))
    for candidate in (folder, os.path.dirname(folder)):
        path = os.path.join(candidate, "vocab.json")
        if os.path.isfile(path):
            return path
    return None
