"""Data bigger than memory (graphdsl/runtime/streams.py): memory-mapped .npy folders,
token files and streamed text give the batches an in-memory reading gives."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import graphdsl
from graphdsl.runtime.data import DataError, Dataset, build_vocab, load_npz, tokenize
from graphdsl.runtime.streams import (
    Mapped,
    open_npy_folder,
    open_text_corpus,
    open_token_file,
)

TABLE = """
model Table {
    input  x : float32[B, 3]
    input  k : int32[B]
    target y : float32[B, 1]
    output p = Dense(1)(x + Embedding(9, 3)(k))
    loss mse(p, y)
}
"""

LM = """
model LM {
    input  ids  : int32[B, T]
    target next : int32[B, T]
    output logits = Dense(40)(Embedding(40, 8)(ids))
    loss crossentropy(logits, next, from_logits = true)
}
"""


def model(source: str):  # type: ignore[no-untyped-def]
    return graphdsl.compile(source).model()


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_folder_of_npy_files_is_memory_mapped_and_batches_like_the_npz(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x": rng.random((23, 3)), "k": rng.integers(0, 9, 23),  # float64, int64 on disk
              "y": rng.random((23, 1)).astype(np.float32)}
    np.savez(tmp_path / "all.npz", **arrays)
    (tmp_path / "folder").mkdir()
    for name, value in arrays.items():
        np.save(tmp_path / "folder" / f"{name}.npy", value)
    table = model(TABLE)
    mapped = open_npy_folder(str(tmp_path / "folder"), table)
    assert all(isinstance(v, Mapped) for v in mapped.arrays.values())
    loaded = load_npz(str(tmp_path / "all.npz"), table)
    for (a_train, a_valid), (b_train, b_valid) in [(mapped.split(0.2, 3),
                                                     loaded.split(0.2, 3))]:
        for epoch in (0, 1):
            for a, b in zip(a_train.batches(5, 3, epoch), b_train.batches(5, 3, epoch),
                            strict=True):
                same(a, b)
        for a, b in zip(a_valid.batches(2, 3, 0, shuffle=False),
                        b_valid.batches(2, 3, 0, shuffle=False), strict=True):
            same(a, b)
        # resuming mid-epoch and reading one process's share
        same(next(a_train.batches(4, 3, 1, start=2, part=(1, 2))),
             next(b_train.batches(4, 3, 1, start=2, part=(1, 2))))


def test_a_folder_missing_an_array_says_which(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(DataError) as caught:
        open_npy_folder(str(tmp_path), model(TABLE))
    assert "no array `k`" in str(caught.value.diagnostics[0].notes)


def test_token_windows_sequential_random_and_sharded(tmp_path: Path) -> None:
    ids = (np.arange(103) * 7 % 40).astype(np.uint16)
    ids.tofile(tmp_path / "tokens.bin")
    lm = model(LM)
    train, valid = open_token_file(str(tmp_path / "tokens.bin"), lm, sequence_length=8,
                                   windows="sequential", validation=0.2)
    assert isinstance(train.tokens, Mapped)
    cut = 103 - int(103 * 0.2)
    assert len(train) == (cut - 1) // 8 and len(valid) == (103 - cut - 1) // 8
    batches = list(train.batches(3, 0, 0))
    assert [len(b["ids"]) for b in batches] == [3, 3, 3, 1]
    for step, b in enumerate(batches):
        for row in range(len(b["ids"])):
            start = (step * 3 + row) * 8
            np.testing.assert_array_equal(b["ids"][row], ids[start: start + 8])
            np.testing.assert_array_equal(b["next"][row], ids[start + 1: start + 9])
        assert b["ids"].dtype == np.int32
    halves = [next(train.batches(4, 0, 0, part=(r, 2))) for r in (0, 1)]
    whole = next(train.batches(4, 0, 0))
    np.testing.assert_array_equal(np.concatenate([h["ids"] for h in halves]), whole["ids"])

    random, _ = open_token_file(str(tmp_path / "tokens.bin"), lm, sequence_length=8,
                                windows="random", validation=0.2)
    first = [b["ids"] for b in random.batches(3, 5, 0)]
    again = [b["ids"] for b in random.batches(3, 5, 0)]
    other = [b["ids"] for b in random.batches(3, 5, 1)]
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert any((a != b).any() for a, b in zip(first, other, strict=True))
    for b in random.batches(3, 5, 0):  # every window is a real stretch of the training part
        for x, y in zip(b["ids"], b["next"], strict=True):
            starts = [s for s in range(cut - 8) if (ids[s: s + 8] == x).all()]
            assert any((ids[s + 1: s + 9] == y).all() for s in starts)


def test_a_token_file_with_ids_beyond_the_embedding_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "tokens.npy", np.array([1, 2, 77, 3] * 10, np.uint32))
    with pytest.raises(DataError) as caught:
        open_token_file(str(tmp_path / "tokens.npy"), model(LM), sequence_length=4,
                        windows="random", validation=0.0)
    assert "token id 77" in caught.value.diagnostics[0].message


def test_gzip_text_is_streamed_into_the_sequences_of_the_whole_text(tmp_path: Path) -> None:
    lines = [f"w{i % 7} w{i % 5} w{i % 11}" for i in range(60)]
    text = "\r\n".join(lines[:20]) + "\n\n" + "\u2028".join(lines[20:40]) + "\n" + \
        "\n".join(lines[40:]) + "\n"
    with gzip.open(tmp_path / "corpus.txt.gz", "wt", encoding="utf-8", newline="") as fh:
        fh.write(text)
    lm = model(LM)
    train, valid, vocab = open_text_corpus(str(tmp_path / "corpus.txt.gz"), lm,
                                           sequence_length=5, tokenizer="word",
                                           vocab_size=None, validation=0.25, vocab_file=None,
                                           scratch=str(tmp_path))
    # The reference reads the whole text at once.
    all_lines = text.splitlines()
    cut = len(all_lines) - int(len(all_lines) * 0.25)
    train_tokens = tokenize(all_lines[:cut], "word")
    assert vocab == build_vocab(Counter(train_tokens), 40)
    index = {w: i for i, w in enumerate(vocab)}

    def expected(tokens: list[str]) -> Dataset:
        ids = np.array([index.get(t, 1) for t in tokens])
        n = (len(ids) - 1) // 5
        return Dataset({"ids": ids[: n * 5].reshape(n, 5).astype(np.int32),
                        "next": ids[1: n * 5 + 1].reshape(n, 5).astype(np.int32)})

    for got, want in ((train, expected(train_tokens)),
                      (valid, expected(tokenize(all_lines[cut:], "word")))):
        assert len(got) == len(want) > 0
        for a, b in zip(got.batches(4, 1, 0), want.batches(4, 1, 0), strict=True):
            same(a, b)


def test_val_data_of_a_streamed_kind_validates_whole_and_kinds_must_match(
        tmp_path: Path) -> None:
    from graphdsl.runtime.errors import TrainError
    from graphdsl.runtime.settings import resolve_settings
    from graphdsl.runtime.splits import load_data

    rng = np.random.default_rng(1)
    for name, rows in (("train", 20), ("valid", 7)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "x.npy", rng.random((rows, 3)).astype(np.float32))
        np.save(tmp_path / name / "k.npy", rng.integers(0, 9, rows).astype(np.int32))
        np.save(tmp_path / name / "y.npy", rng.random((rows, 1)).astype(np.float32))
    table = model(TABLE)
    data = load_data(table, resolve_settings(table, {
        "data": str(tmp_path / "train"), "val_data": str(tmp_path / "valid")},
        out=str(tmp_path / "run")))
    assert (len(data.train), len(data.valid)) == (20, 7)
    (batch,) = data.valid.batches(7, 0, 0, shuffle=False)
    np.testing.assert_array_equal(batch["x"], np.load(tmp_path / "valid" / "x.npy"))
    tokens = tmp_path / "ids.npy"
    np.save(tokens, rng.integers(0, 40, 500).astype(np.uint16))
    lm = model(LM)
    for settings in ({"data": str(tokens), "val_data": str(tokens)},
                     {"data": str(tokens)}):
        data = load_data(lm, resolve_settings(lm, settings, out=str(tmp_path / "run")))
        # all of val_data validates; without it, the `validation` share (0.1) of the tokens
        assert len(data.valid) < len(data.train) if "val_data" not in settings \
            else len(data.valid) > len(data.train) / 2
    with pytest.raises(TrainError) as err:
        load_data(table, resolve_settings(table, {
            "data": str(tmp_path / "train"), "val_data": str(tmp_path / "all.npz")}))
    assert "a folder of .npy files" in err.value.diagnostics[0].message
