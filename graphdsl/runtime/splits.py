"""A run's data: the training split and the validation split, from one file and its
`validation` share, or from a separate `val_data` file."""

from __future__ import annotations

import os
from dataclasses import dataclass

from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime.data import (
    DataError,
    Dataset,
    is_text,
    load_npz,
    load_text_corpus,
    save_vocab,
)
from graphdsl.runtime.errors import TrainError, train_error
from graphdsl.runtime.settings import Settings


@dataclass
class Data:
    train: Dataset
    valid: Dataset
    vocab: list[str] | None = None


def load_data(model: ModelGraph, settings: Settings) -> Data:
    path = settings["data"]
    if not path:
        raise train_error("bad-data", f"no data for model `{model.name}`",
                          help='set `data = "file.npz"` in its train block, or pass --data')
    val_path = settings.values.get("val_data")
    try:
        if is_text(path):
            return _text(path, val_path, model, settings)
        dataset = load_npz(path, model)
        if val_path:
            if is_text(val_path):
                raise train_error("bad-data", f"val_data {val_path} is a text corpus but data "
                                  f"{path} is an .npz archive", help="give both in one format")
            return Data(dataset, load_npz(val_path, model))
    except DataError as exc:
        raise TrainError(exc.diagnostics) from None
    train, valid = dataset.split(settings["validation"], settings["seed"])
    return Data(train, valid)


def _text(path: str, val_path: str | None, model: ModelGraph, settings: Settings) -> Data:
    vocab_file = os.path.join(settings.out, "vocab.json")
    options = {"sequence_length": settings["sequence_length"],
               "tokenizer": settings["tokenizer"], "vocab_size": settings["vocab_size"]}
    if not val_path:
        train, valid, vocab = load_text_corpus(path, model, validation=settings["validation"],
                                               vocab_file=vocab_file, **options)
        return Data(train, valid, vocab)
    if not is_text(val_path):
        raise train_error("bad-data", f"val_data {val_path} is not a text corpus but data "
                          f"{path} is one", help="give both in one format")
    # The vocabulary comes from the training corpus only; the validation corpus is read
    # with it (unknown words become <unk>).
    train, _, vocab = load_text_corpus(path, model, validation=0.0, vocab_file=vocab_file,
                                       **options)
    save_vocab(vocab_file, vocab)
    valid, _, _ = load_text_corpus(val_path, model, validation=0.0, vocab_file=vocab_file,
                                   **options)
    return Data(train, valid, vocab)
