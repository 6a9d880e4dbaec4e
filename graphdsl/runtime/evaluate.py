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
from graphdsl.runtime.callbacks.progress import console
from graphdsl.runtime.data import DataError, Dataset, is_text, load_npz
from graphdsl.runtime.errors import EXIT_OK, TrainError, train_error
from graphdsl.runtime.loop import Loop, finite_or_error
from graphdsl.runtime.settings import resolve_settings
from graphdsl.runtime.splits import load_data
from graphdsl.runtime.streams import Source, kind_of, open_source, open_text_corpus

EngineFactory = Any  # (program, model, settings) -> Engine


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
        notes: list[str] = []
        try:
            arrays = ckpt.select(model, checkpoint, "*", source=os.path.basename(args.weights),
                                 conversions=notes)
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        finite_or_error(arrays, args.weights)
        for note in notes:
            console().print(f"note: {note}", soft_wrap=True, markup=False)
        engine.load_arrays(arrays)
        loop = Loop(program, model, settings, engine, quiet=True)
        values, _ = loop.evaluate(split, int(settings["batch"]))
        if text:
            values["perplexity"] = math.exp(min(values["loss"], 50.0))
    except TrainError as exc:
        report(exc.diagnostics, program.sources)
        return exc.code
    if not loop.world.main:  # rank 0 alone reports
        return EXIT_OK
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


def whole_file(model: Any, settings: Any, path: str, weights: str) -> Dataset | Source:
    """Every sample of ``path``: no validation split."""
    try:
        if not os.path.exists(path):
            raise train_error("bad-data", f"no data file {path}")
        kind = kind_of(path)
        if kind == "npz":
            return load_npz(path, model)
        if kind != "text":
            every, _, _ = open_source(path, model, {**settings.values, "validation": 0.0},
                                      settings.out)
            return every
        vocab_file = find_vocab(weights)
        if vocab_file is None:
            raise train_error("bad-data", f"scoring the text corpus {path} needs the "
                              "vocabulary the weights were trained with, and there is no "
                              "vocab.json beside them", help="keep the run folder together: "
                              "train writes vocab.json next to final.safetensors")
        every, _, _ = open_text_corpus(
            path, model, sequence_length=settings["sequence_length"],
            tokenizer=settings["tokenizer"], vocab_size=settings["vocab_size"],
            validation=0.0, vocab_file=vocab_file, scratch=os.path.dirname(vocab_file))
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
