"""A run's data: the training split and the validation split, from one source and its
`validation` share, or from a separate `val_data` source of the same kind. An ``.npz``
archive is loaded whole; the other kinds (a folder of ``.npy`` files, a token file, a
text corpus) are read a batch at a time (graphdsl/runtime/streams.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime.data import DataError, Dataset, load_npz, save_vocab
from graphdsl.runtime.errors import TrainError, train_error
from graphdsl.runtime.settings import Settings
from graphdsl.runtime.streams import (
    Source,
    kind_of,
    open_npy_folder,
    open_source,
    open_text_corpus,
)

KIND_NAMES = {"npz": "an .npz archive", "text": "a text corpus", "tokens": "a token file",
              "npy-folder": "a folder of .npy files"}


@dataclass
class Data:
    train: Dataset | Source
    valid: Dataset | Source
    vocab: list[str] | None = None


def load_data(model: ModelGraph, settings: Settings) -> Data:
    steps = settings.values.get("fast_dev_run")
    if steps:
        return fast_dev_data(model, int(settings["batch"]), int(steps), int(settings["seed"]))
    path = settings["data"]
    if not path:
        raise train_error("bad-data", f"no data for model `{model.name}`",
                          help='set `data = "file.npz"` in its train block, pass --data, or try '
                               "the program on made-up batches with --fast-dev-run")
    if not os.path.exists(path):
        raise train_error("bad-data", f"no data file {path}",
                          help="make it (examples/data/SOURCES.md says how for the examples), "
                               "pass --data FILE, or try the program on made-up batches with "
                               "--fast-dev-run")
    val_path = settings.values.get("val_data")
    kind = kind_of(path)
    if val_path and kind_of(val_path) != kind:
        raise train_error("bad-data", f"val_data {val_path} is {KIND_NAMES[kind_of(val_path)]}"
                          f" but data {path} is {KIND_NAMES[kind]}",
                          help="give both in one format")
    try:
        if kind == "text" and val_path:
            return _text_pair(path, val_path, model, settings)
        if kind != "npz":
            if not val_path:
                train, valid, vocab = open_source(path, model, settings.values, settings.out)
                return Data(train, valid, vocab)
            # all of `data` trains; all of `val_data` validates
            train, _, _ = open_source(path, model, {**settings.values, "validation": 0.0},
                                      settings.out)
            if kind == "npy-folder":
                return Data(train, open_npy_folder(val_path, model))
            # a token file's held-out share is its tail: all of it at validation = 1
            _, valid, _ = open_source(val_path, model, {**settings.values, "validation": 1.0},
                                      settings.out)
            return Data(train, valid)
        dataset = load_npz(path, model)
        if val_path:
            return Data(dataset, load_npz(val_path, model))
    except DataError as exc:
        raise TrainError(exc.diagnostics) from None
    train, valid = dataset.split(settings["validation"], settings["seed"])
    return Data(train, valid)


def _text_pair(path: str, val_path: str, model: ModelGraph, settings: Settings) -> Data:
    vocab_file = os.path.join(settings.out, "vocab.json")
    os.makedirs(settings.out, exist_ok=True)
    options: dict[str, Any] = {
        "sequence_length": settings["sequence_length"], "tokenizer": settings["tokenizer"],
        "vocab_size": settings["vocab_size"], "scratch": settings.out}
    # The vocabulary comes from the training corpus only; the validation corpus is read
    # with it (unknown words become <unk>).
    train, _, vocab = open_text_corpus(path, model, validation=0.0, vocab_file=vocab_file,
                                       **options)
    save_vocab(vocab_file, vocab)
    _, valid, _ = open_text_corpus(val_path, model, validation=1.0, vocab_file=vocab_file,
                                   **options)
    return Data(train, valid, vocab)


def fast_dev_data(model: ModelGraph, batch: int, steps: int, seed: int) -> Data:
    """`steps` training batches and one validation batch made from the declared inputs and
    targets (Lightning's fast_dev_run): any program runs end to end without data."""
    from graphdsl.runtime.synthetic import synthetic_batch

    def made_up(samples: int, offset: int) -> Dataset:
        return Dataset(synthetic_batch(model, batch=samples, seed=seed + offset))

    return Data(made_up(batch * steps, 0), made_up(batch, 1))
