"""Training data bigger than memory: read a batch at a time, from files left on disk.

- a folder of ``.npy`` files named after the model's inputs and targets (``x.npy``,
  ``y.npy``), opened memory-mapped (``np.load(mmap_mode="r", allow_pickle=False)``);
- a token file for a language model: a flat ``.bin`` of uint16 ids (uint32 when the
  model's Embedding takes more than 65536), as nanoGPT writes them, or a 1-D ``.npy`` of
  integer ids; the model reads windows of its `sequence_length`: random ones
  (`windows = "random"`, nanoGPT's sampling) or consecutive ones (`"sequential"`);
- a text corpus (``.txt``, ``.txt.gz``), streamed line by line, never read whole: one pass
  counts the lines, one builds the vocabulary, one writes the ids to a temporary file
  that is then memory-mapped like a token file.

Batches come in the same order as from an in-memory :class:`~graphdsl.runtime.data.Dataset`
(drawn from (seed, epoch)), so a run on a memory-mapped folder trains exactly as one on
the same arrays in an .npz, and a resumed run sees the same batches.
"""

from __future__ import annotations

import functools
import gzip
import os
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime.data import (
    _error,
    _storage,
    build_vocab,
    checked_arrays,
    lm_names,
    load_vocab,
    tokenize,
)
from graphdsl.runtime.distributed import shard_rows

Batch = dict[str, np.ndarray]


class Mapped:
    """An array on disk, mapped afresh for each read and unmapped after it. A mapping kept
    open keeps every page it ever touched in the process's resident memory (random
    windows over a 4 GB file would end up holding all of it; nanoGPT re-creates its
    memmap each batch for this reason); a read copies what it needs and lets go."""

    def __init__(self, open_array: Callable[[], np.ndarray]):
        self.open_array = open_array
        sample = open_array()
        self.shape: tuple[int, ...] = sample.shape
        self.dtype = sample.dtype
        self.ndim = sample.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.array(self.open_array()[index])

    def windows(self, lo: int, starts: np.ndarray, length: int) -> np.ndarray:
        """[len(starts), length] tokens from lo + each start."""
        tokens = self.open_array()
        view = np.lib.stride_tricks.sliding_window_view(tokens[lo:], length)
        return np.array(view[starts])


class Rows:
    """Named arrays (in memory or memory-mapped) and which of their rows this split uses;
    a batch is read from disk, and cast, only when it is yielded. ``stride`` = (worker,
    workers) yields every workers-th batch, for loaders that read in several processes."""

    def __init__(self, arrays: dict[str, Any], dtypes: dict[str, str],
                 rows: np.ndarray | None = None):
        self.arrays = arrays
        self.dtypes = dtypes
        n = len(next(iter(arrays.values()))) if arrays else 0
        self.rows = np.arange(n) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    def split(self, validation: float, seed: int) -> tuple[Rows, Rows]:
        """The same split as Dataset.split, as row numbers: nothing is copied."""
        n = len(self)
        order = np.random.default_rng([seed, 7919]).permutation(n)
        held = int(round(n * validation))
        if validation > 0 and n > 1:
            held = min(max(held, 1), n - 1)
        return (Rows(self.arrays, self.dtypes, self.rows[np.sort(order[: n - held])]),
                Rows(self.arrays, self.dtypes, self.rows[np.sort(order[n - held:])]))

    def read(self, index: np.ndarray) -> Batch:
        rows = self.rows[index]
        return {k: np.asarray(v[rows]).astype(self.dtypes[k], copy=False)
                for k, v in self.arrays.items()}

    def batches(self, batch: int, seed: int, epoch: int, shuffle: bool = True,
                start: int = 0, part: tuple[int, int] = (0, 1),
                stride: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        n = len(self)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle \
            else np.arange(n)
        for step, i in enumerate(range(start * batch, n, batch)):
            if step % stride[1] == stride[0]:
                yield self.read(shard_rows(order[i: i + batch], part))

    def steps_per_epoch(self, batch: int) -> int:
        return (len(self) + batch - 1) // batch


class TokenWindows:
    """Windows of ``length`` tokens from tokens[lo:hi] of a flat id array on disk: the
    input is a window, the target the same window one token on. An epoch is as many
    windows as fit end to end; random windows start anywhere, drawn from (seed, epoch,
    step)."""

    def __init__(self, tokens: Mapped, lo: int, hi: int, names: tuple[str, str],
                 dtypes: dict[str, str], length: int, random: bool):
        self.tokens = tokens
        self.lo, self.hi = lo, hi
        self.source, self.target = names
        self.dtypes = dtypes
        self.length = length
        self.random = random
        self.windows = max((hi - lo - 1) // length, 0)
        self.starts = max(hi - lo - length, 0)  # where a window of length + 1 can start

    def __len__(self) -> int:
        return self.windows

    def read(self, starts: np.ndarray) -> Batch:
        w = self.tokens.windows(self.lo, starts, self.length + 1) if len(starts) else \
            np.zeros((0, self.length + 1), self.tokens.dtype)
        return {self.source: w[:, :-1].astype(self.dtypes[self.source]),
                self.target: w[:, 1:].astype(self.dtypes[self.target])}

    def batches(self, batch: int, seed: int, epoch: int, shuffle: bool = True,
                start: int = 0, part: tuple[int, int] = (0, 1),
                stride: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        last = self.starts
        for step in range(start, self.steps_per_epoch(batch)):
            if step % stride[1] != stride[0]:
                continue
            count = min(batch, self.windows - step * batch)
            if self.random and shuffle:
                starts = np.random.default_rng([seed, epoch, step]).integers(0, last, count)
            else:
                starts = (step * batch + np.arange(count)) * self.length
            yield self.read(shard_rows(starts, part))

    def steps_per_epoch(self, batch: int) -> int:
        return (self.windows + batch - 1) // batch


Source = Rows | TokenWindows


# ---- opening --------------------------------------------------------------------------


def kind_of(path: str) -> str:
    if os.path.isdir(path):
        return "npy-folder"
    if path.endswith((".txt", ".txt.gz", ".text")):
        return "text"
    if path.endswith((".bin", ".npy")):
        return "tokens"
    return "npz"


def open_npy_folder(path: str, model: ModelGraph) -> Rows:
    raw: dict[str, Any] = {}  # Mapped arrays: shape and dtype, read when batched
    for entry in sorted(os.listdir(path)):
        if entry.endswith(".npy"):
            try:
                raw[entry[:-4]] = Mapped(functools.partial(
                    np.load, os.path.join(path, entry), mmap_mode="r", allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise _error(f"cannot read {os.path.join(path, entry)}: {exc}") from None
    arrays: dict[str, Any] = checked_arrays(raw, model, path, "the folder")
    return Rows(arrays, {k: _storage(model, k) for k in arrays})


def open_token_file(path: str, model: ModelGraph, *, sequence_length: int, windows: str,
                    validation: float) -> tuple[TokenWindows, TokenWindows]:
    """Train and validation windows; the last `validation` share of the tokens is held out."""
    source, target, capacity = lm_names(model)
    dtype = np.uint16 if capacity <= 1 << 16 else np.uint32
    try:
        tokens = Mapped((lambda: np.load(path, mmap_mode="r", allow_pickle=False))
                        if path.endswith(".npy") else
                        (lambda: np.memmap(path, dtype=dtype, mode="r")))
    except (OSError, ValueError) as exc:
        raise _error(f"cannot read {path}: {exc}") from None
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise _error(f"{path} holds {tokens.dtype} {list(tokens.shape)}, expected a flat "
                     "array of integer token ids", help="save it with numpy.save(path, "
                     "ids.astype(numpy.uint16)), or as raw uint16 in a .bin file")
    head = tokens[: 1 << 20] if tokens.shape[0] else np.zeros(0, np.int64)
    # all of a small file; a sample of a big one, not read whole
    if len(head) and int(head.max()) >= capacity:
        raise _error(f"{path} has token id {int(head.max())}, but the model's Embedding takes "
                     f"{capacity} ids", help="train a model with a larger vocabulary"
                     + (", or the file is uint32 (save it as .npy to say so)"
                        if path.endswith(".bin") else ""))
    cut = len(tokens) - int(len(tokens) * validation)
    dtypes = {source: _storage(model, source), target: _storage(model, target)}
    names = (source, target)
    n = tokens.shape[0]
    return (TokenWindows(tokens, 0, cut, names, dtypes, sequence_length, windows == "random"),
            TokenWindows(tokens, cut, n, names, dtypes, sequence_length, False))


def _lines(path: str) -> Iterator[str]:
    """The file's lines as str.splitlines on the whole text gives them, one at a time."""
    opener: Any = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            for line in fh:
                yield from line.splitlines()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise _error(f"cannot read {path}: {exc}") from None


def open_text_corpus(path: str, model: ModelGraph, *, sequence_length: int, tokenizer: str,
                     vocab_size: int | None, validation: float, vocab_file: str | None,
                     scratch: str | None = None) -> tuple[Rows, Rows, list[str]]:
    """Train and validation sequences, end to end; the last `validation` share of the
    lines is held out. The ids go to an unnamed temporary file (in ``scratch``) that
    disappears with the process."""
    source, target, capacity = lm_names(model)
    lines = sum(1 for _ in _lines(path))
    cut = lines - int(lines * validation)
    if vocab_file and os.path.exists(vocab_file):
        vocab = load_vocab(vocab_file)
    else:
        counts: Counter[str] = Counter()
        for i, line in enumerate(_lines(path)):
            if i >= cut:
                break
            counts.update(tokenize([line], tokenizer))
        vocab = build_vocab(counts, min(vocab_size or capacity, capacity))
    if len(vocab) > capacity:
        raise _error(f"the vocabulary has {len(vocab)} tokens but the model's Embedding takes "
                     f"{capacity}")
    index = {w: i for i, w in enumerate(vocab)}
    unk = index["<unk>"]
    dtype = np.uint16 if len(vocab) <= 1 << 16 else np.uint32
    dtypes = {source: _storage(model, source), target: _storage(model, target)}

    def sequences(fh: Any, count: int) -> Rows:
        n = max((count - 1) // sequence_length, 0)
        if n == 0:
            empty = np.zeros((0, sequence_length), dtype)
            return Rows({source: empty, target: empty}, dtypes)
        fh.flush()
        fd = os.dup(fh.fileno())  # the unnamed file lives as long as this descriptor

        def ids(shift: int) -> Mapped:
            return Mapped(lambda: np.memmap(open(fd, "rb", closefd=False),  # noqa: SIM115
                                            dtype=dtype, mode="r", shape=(count,))[
                shift: n * sequence_length + shift].reshape(n, sequence_length))

        return Rows({source: ids(0), target: ids(1)}, dtypes)

    with tempfile.TemporaryFile(dir=scratch) as train_ids, \
            tempfile.TemporaryFile(dir=scratch) as valid_ids:
        written = [0, 0]
        for i, line in enumerate(_lines(path)):
            ids = np.fromiter((index.get(t, unk) for t in tokenize([line], tokenizer)), dtype)
            (valid_ids if i >= cut else train_ids).write(ids.tobytes())
            written[i >= cut] += len(ids)
        return sequences(train_ids, written[0]), sequences(valid_ids, written[1]), vocab


def open_source(path: str, model: ModelGraph, values: dict[str, Any], out: str
                ) -> tuple[Any, Any, list[str] | None]:
    """(train, validation, vocabulary) for the streamed kinds of data."""
    kind = kind_of(path)
    if kind == "text":
        os.makedirs(out, exist_ok=True)
        return open_text_corpus(path, model, sequence_length=values["sequence_length"],
                                tokenizer=values["tokenizer"], vocab_size=values["vocab_size"],
                                validation=values["validation"],
                                vocab_file=os.path.join(out, "vocab.json"), scratch=out)
    if kind == "tokens":
        train, valid = open_token_file(path, model, sequence_length=values["sequence_length"],
                                       windows=values["windows"],
                                       validation=values["validation"])
        return train, valid, None
    train_rows, valid_rows = open_npy_folder(path, model).split(values["validation"],
                                                                values["seed"])
    return train_rows, valid_rows, None


# ---- loading ahead ----------------------------------------------------------------------


def read_ahead(source: Any, batch: int, seed: int, epoch: int, start: int,
               part: tuple[int, int], workers: int, loader: Any) -> Iterator[Batch]:
    """An epoch's batches from ``start``, this process's share of each, read ahead while
    the step runs: by the engine's ``loader`` (PyTorch DataLoader worker processes,
    tf.data) when `workers` asks for them and the source reads in strides, else in a
    thread (:func:`background`)."""
    strided = isinstance(source, (Rows, TokenWindows))

    def batches(stride: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        if not strided:  # in memory (data.Dataset): one stride
            return source.batches(batch, seed, epoch, start=start, part=part)
        return source.batches(batch, seed, epoch, start=start, part=part,
                              stride=stride)

    if workers and loader is not None and strided:
        return loader(batches, workers)
    return background(batches())


def background(batches: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """The same batches, read ``depth`` ahead in a thread while the step runs (reading a
    memory-mapped file and numpy's gathers release the GIL). Stopping early stops it."""
    import queue
    import threading

    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def read() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        ahead.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put(exc)

    worker = threading.Thread(target=read, name="graphdsl-batches", daemon=True)
    worker.start()
    try:
        while True:
            item = ahead.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
