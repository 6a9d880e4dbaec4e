"""Training data, backend-neutral: numpy arrays named after a model's inputs and targets.

Two sources:
- an ``.npz`` archive whose arrays are named after the model's inputs and targets;
- a text corpus (``.txt`` or ``.txt.gz``) for a language model with one integer input
  [B, T] and one integer target [B, T]: tokens, with the next token as the target. The
  vocabulary is built from the training part, saved as JSON beside the checkpoints and
  reused. Ids 0, 1, 2 are <pad>, <unk> and <eos>.

Batch order is a permutation drawn from (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one.

Nothing is read blindly: an archive member's declared size and an array's declared shape
are checked against the bytes present and the memory available before anything is
decompressed, a compressed corpus is decompressed up to a cap, and integer ids are
checked against the Embedding or class count that will read them, so both backends stop
with the same diagnostic instead of an IndexError or a TensorFlow stack.
"""

from __future__ import annotations

import gzip
import json
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphdsl.checks.resources import available_memory, human_bytes
from graphdsl.diagnostics import Diagnostic, Note
from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import FLOAT_DTYPES, INT_DTYPES, Sym

SPECIALS = ("<pad>", "<unk>", "<eos>")


class DataError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("; ".join(d.message for d in diagnostics))


def _error(message: str, notes: list[str] | None = None, help: str | None = None) -> DataError:
    return DataError([Diagnostic("error", "bad-data", message,
                                 notes=tuple(Note(n) for n in notes or ()), help=help)])


@dataclass
class Dataset:
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def take(self, index: np.ndarray) -> Dataset:
        return Dataset({k: v[index] for k, v in self.arrays.items()})

    def split(self, validation: float, seed: int) -> tuple[Dataset, Dataset]:
        """A fixed shuffle, then the last `validation` share is held out."""
        n = len(self)
        order = np.random.default_rng([seed, 7919]).permutation(n)
        held = int(round(n * validation))
        if validation > 0 and n > 1:
            held = min(max(held, 1), n - 1)
        return self.take(np.sort(order[: n - held])), self.take(np.sort(order[n - held:]))

    def batches(self, batch: int, seed: int, epoch: int, shuffle: bool = True,
                start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        n = len(self)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle \
            else np.arange(n)
        for i in range(start * batch, n, batch):
            index = order[i: i + batch]
            yield {k: v[index] for k, v in self.arrays.items()}

    def steps_per_epoch(self, batch: int) -> int:
        return (len(self) + batch - 1) // batch


def _names(model: ModelGraph) -> dict[str, tuple[str, object]]:
    out = {}
    for node in model.inputs + model.targets:
        data = model.node(node)
        out[data["name"]] = (data["kind"], data["type"])
    return out


def load_npz(path: str, model: ModelGraph) -> Dataset:
    """Arrays for each input and target, checked against their declared types."""
    # An .npz is a zip archive. np.load would take anything else for a pickle and advise
    # unpickling it, which is never the fix (and unsafe for a file of unknown origin).
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            single_array = fh.read(6) == b"\x93NUMPY"
        raise _error(f"cannot read {path}: it is not an .npz archive (not a zip file)",
                     help="save the arrays with numpy.savez(path, x=..., y=...), one array per "
                     "input and target" + (" (this is a single .npy array)" if single_array
                                           else ""))
    check_npz_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            raw = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise _error(f"cannot read {path}: {exc}") from None
    problems: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for name, (kind, t) in _names(model).items():
        if name not in raw:
            problems.append(f"no array `{name}` for {kind} `{name}` {t} "
                            f"(the archive has: {', '.join(sorted(raw)) or 'nothing'})")
            continue
        arr = raw[name]
        dtype = t.dtype  # type: ignore[attr-defined]
        shape = t.shape  # type: ignore[attr-defined]
        if dtype in FLOAT_DTYPES and arr.dtype.kind not in "fiub":
            problems.append(f"`{name}` is {arr.dtype}, expected {dtype}")
            continue
        if dtype in INT_DTYPES and arr.dtype.kind not in "iub":
            problems.append(f"`{name}` is {arr.dtype}, expected integers ({dtype})")
            continue
        if dtype == "bool" and arr.dtype.kind != "b":
            problems.append(f"`{name}` is {arr.dtype}, expected bool")
            continue
        if arr.ndim != len(shape):
            problems.append(f"`{name}` has shape {list(arr.shape)}, expected rank "
                            f"{len(shape)} {t}")
            continue
        for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
            if isinstance(want, int) and want != got:
                problems.append(f"`{name}` has shape {list(arr.shape)}, expected {t} "
                                f"(axis {axis})")
                break
            if isinstance(want, Sym) and len(want.terms) == 1 and want.const == 0:
                symbol = want.terms[0][0]
                if symbol in sizes and sizes[symbol] != got:
                    problems.append(f"`{name}` has {symbol} = {got} but another array has "
                                    f"{symbol} = {sizes[symbol]}")
                    break
                sizes[symbol] = got
        problem = id_problem(model, name, arr) if arr.dtype.kind in "iu" else None
        if problem:
            problems.append(problem)
            continue
        arrays[name] = arr.astype(dtype if dtype != "bfloat16" else "float32", copy=False)
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        problems.append(f"the arrays have different numbers of samples: "
                        f"{', '.join(f'{k}: {len(v)}' for k, v in arrays.items())}")
    if problems:
        raise _error(f"{path} does not fit model `{model.name}`", problems)
    return Dataset(arrays)


def memory_budget() -> int:
    """How many bytes of data one run may hold: half of the memory available now, leaving
    the rest to the model, its optimizer and the framework."""
    return available_memory() // 2


def _too_big(path: str, what: str, size: int, budget: int) -> DataError:
    return _error(f"cannot read {path}: {what} {human_bytes(size)}, more than the "
                  f"{human_bytes(budget)} this run can hold in memory",
                  help="use a smaller file, or free memory")


def check_npz_sizes(path: str) -> None:
    """Refuse an archive before decompressing it when a member declares more bytes than its
    array needs (a zip bomb), an array header declares more than the member holds, or the
    whole does not fit in memory."""
    budget = memory_budget()
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                total += info.file_size
                if total > budget:
                    raise _too_big(path, "it decompresses to at least", total, budget)
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        continue
                    if dtype.hasobject:
                        raise _error(f"cannot read {path}: `{info.filename[:-4]}` holds "
                                     "Python objects, which would need unpickling",
                                     help="save numeric arrays only")
                    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    present = info.file_size - member.tell()
                    if declared > present:
                        raise _error(f"cannot read {path}: `{info.filename[:-4]}` declares "
                                     f"shape {list(shape)} ({human_bytes(declared)}) but "
                                     f"holds {human_bytes(max(present, 0))}",
                                     help="the file is truncated or corrupt: write it again")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _error(f"cannot read {path}: {exc}") from None


def id_limit(model: ModelGraph, node: str) -> tuple[int | None, str, bool]:
    """The number of ids a tensor may hold (None: unbounded), what sets it, and whether
    ids outside that range are allowed because a `where` mask hides them (-1: no label)."""
    limit: int | None = None
    reason = ""
    masked = True
    for _, consumer, edge in model.graph.out_edges(node, data=True):
        data = model.node(consumer)
        if data["kind"] != "op":
            continue
        if data["op"] == "Embedding":
            n = int(data["args"]["input_dim"])
            why, hidden = f"the Embedding that reads it has input_dim {n}", False
        elif data["op"] in ("crossentropy", "accuracy") and edge["port"] == "target":
            ports = {e["port"]: s for s, e in model.in_edges(consumer)}
            pred = model.node(ports["pred"])
            shape = pred["types"][0].shape if pred["kind"] == "op" else pred["type"].shape
            if not isinstance(shape[-1], int):
                continue
            n, hidden = int(shape[-1]), "where" in ports
            why = f"`{data['op']}` has {n} classes"
        elif data["op"] == "one_hot":
            n = int(data["args"]["depth"])
            why, hidden = f"the one_hot that reads it has depth {n}", False
        else:
            continue
        masked = masked and hidden
        if limit is None or n < limit:
            limit, reason = n, why
    return limit, reason, masked and limit is not None


def id_problem(model: ModelGraph, name: str, values: np.ndarray) -> str | None:
    """Why integer ids in ``values`` would index outside the table or class axis they feed."""
    node = next(n for n in model.inputs + model.targets if model.node(n)["name"] == name)
    limit, reason, masked = id_limit(model, node)
    if limit is None or masked or values.size == 0:
        return None
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < limit:
        return None
    bad = high if high >= limit else low
    count = int(np.count_nonzero((values < 0) | (values >= limit)))
    return (f"`{name}` holds {bad} ({count:,} value{'s' * (count != 1)} outside 0 .. "
            f"{limit - 1}): {reason}")


# ---- text corpora -----------------------------------------------------------------------


def read_text(path: str) -> str:
    """The corpus as text, decompressed up to the memory budget (a gzip bomb stops there).

    Tokenising needs several times the text's size, hence the factor."""
    budget = memory_budget() // 8
    try:
        opener: Any = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            data = fh.read(budget + 1)
        if len(data) > budget:
            raise _too_big(path, "its text is over", budget, budget * 8)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise _error(f"cannot read {path}: {exc}") from None


def tokenize(lines: list[str], tokenizer: str) -> list[str]:
    tokens: list[str] = []
    for line in lines:
        if tokenizer == "char":
            tokens.extend(line)
            tokens.append("\n")
        else:
            words = line.split()
            if words:
                tokens.extend(words)
                tokens.append("<eos>")
    return tokens


def build_vocab(tokens: list[str], size: int) -> list[str]:
    """The SPECIALS, then the most frequent tokens (ties broken alphabetically)."""
    counts = Counter(t for t in tokens if t not in SPECIALS)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return list(SPECIALS) + [w for w, _ in ranked[: max(size - len(SPECIALS), 0)]]


def lm_names(model: ModelGraph) -> tuple[str, str, int]:
    """The language model's token input, its next-token target, and its vocabulary size."""
    ints = [n for n in model.inputs if model.node(n)["type"].is_int]
    targets = [n for n in model.targets if model.node(n)["type"].is_int]
    if len(ints) != 1 or len(targets) != 1 or len(model.inputs) != 1:
        raise _error(f"a text corpus trains a model with one integer input and one integer "
                     f"target; `{model.name}` has inputs "
                     f"{[model.node(n)['name'] for n in model.inputs]} and targets "
                     f"{[model.node(n)['name'] for n in model.targets]}",
                     help="give an .npz archive instead")
    vocab = None
    for _, consumer in model.graph.out_edges(ints[0]):
        data = model.node(consumer)
        if data["kind"] == "op" and data["op"] == "Embedding":
            vocab = data["args"]["input_dim"]
    if vocab is None:
        raise _error(f"input `{model.node(ints[0])['name']}` of `{model.name}` feeds no "
                     "Embedding, so the vocabulary size is unknown")
    return model.node(ints[0])["name"], model.node(targets[0])["name"], int(vocab)


def load_text_corpus(path: str, model: ModelGraph, *, sequence_length: int, tokenizer: str,
                     vocab_size: int | None, validation: float, vocab_file: str | None
                     ) -> tuple[Dataset, Dataset, list[str]]:
    """Train and validation sequences; the last `validation` share of lines is held out."""
    source, target, capacity = lm_names(model)
    lines = read_text(path).splitlines()
    cut = len(lines) - int(len(lines) * validation)
    train_tokens = tokenize(lines[:cut], tokenizer)
    valid_tokens = tokenize(lines[cut:], tokenizer)
    if vocab_file and os.path.exists(vocab_file):
        vocab = load_vocab(vocab_file)
    else:
        vocab = build_vocab(train_tokens, min(vocab_size or capacity, capacity))
    if len(vocab) > capacity:
        raise _error(f"the vocabulary has {len(vocab)} tokens but the model's Embedding takes "
                     f"{capacity}")
    index = {w: i for i, w in enumerate(vocab)}
    unk = index["<unk>"]

    def sequences(tokens: list[str]) -> Dataset:
        ids = np.fromiter((index.get(t, unk) for t in tokens), dtype=np.int64,
                          count=len(tokens))
        n = (len(ids) - 1) // sequence_length
        if n < 1:
            return Dataset({source: np.zeros((0, sequence_length), np.int32),
                            target: np.zeros((0, sequence_length), np.int32)})
        x = ids[: n * sequence_length].reshape(n, sequence_length)
        y = ids[1: n * sequence_length + 1].reshape(n, sequence_length)
        return Dataset({source: x.astype(np.int32), target: y.astype(np.int32)})

    return sequences(train_tokens), sequences(valid_tokens), vocab


def load_vocab(path: str) -> list[str]:
    """A vocabulary written by save_vocab: {"tokens": [...]}, the SPECIALS first."""
    fix = f"delete {path} to rebuild it from the corpus"
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(f"cannot read the vocabulary {path}: {exc}", help=fix) from None
    tokens = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise _error(f"{path} is not a vocabulary: expected {{\"tokens\": [strings]}}",
                     help=fix)
    if tuple(tokens[: len(SPECIALS)]) != SPECIALS or len(set(tokens)) != len(tokens):
        raise _error(f"{path} is not a vocabulary: it must start with "
                     f"{', '.join(SPECIALS)} and list each token once", help=fix)
    return tokens


def save_vocab(path: str, vocab: list[str]) -> None:
    from graphdsl.runtime.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, json.dumps({"tokens": vocab}, ensure_ascii=False).encode())


def is_text(path: str) -> bool:
    return path.endswith((".txt", ".txt.gz", ".text"))


# ---- what a run trains on ---------------------------------------------------------------


@dataclass
class Data:
    train: Dataset
    valid: Dataset
    vocab: list[str] | None = None


def load_data(model: ModelGraph, settings: Any) -> Data:
    """The run's data: the train block's file (or --data), or made-up batches for
    --fast-dev-run. ``settings`` is the driver's Settings."""
    steps = settings.values.get("fast_dev_run")
    if steps:
        return fast_dev_data(model, int(settings["batch"]), int(steps), int(settings["seed"]))
    path = settings["data"]
    if not path:
        raise _error(f"no data for model `{model.name}`",
                     help='set `data = "file.npz"` in its train block, pass --data, or try the '
                          "program on made-up batches with --fast-dev-run")
    if not os.path.isfile(path):
        raise _error(f"no data file {path}",
                     help="make it (examples/data/SOURCES.md says how for the examples), pass "
                          "--data FILE, or try the program on made-up batches with "
                          "--fast-dev-run")
    if is_text(path):
        train, valid, vocab = load_text_corpus(
            path, model, sequence_length=settings["sequence_length"],
            tokenizer=settings["tokenizer"], vocab_size=settings["vocab_size"],
            validation=settings["validation"],
            vocab_file=os.path.join(settings.out, "vocab.json"))
        return Data(train, valid, vocab)
    train, valid = load_npz(path, model).split(settings["validation"], settings["seed"])
    return Data(train, valid)


def fast_dev_data(model: ModelGraph, batch: int, steps: int, seed: int) -> Data:
    """`steps` training batches and one validation batch made from the declared inputs and
    targets (Lightning's fast_dev_run): any program runs end to end without data."""
    from graphdsl.runtime.synthetic import synthetic_batch

    def made_up(samples: int, offset: int) -> Dataset:
        return Dataset(synthetic_batch(model, batch=samples, seed=seed + offset))

    return Data(made_up(batch * steps, 0), made_up(batch, 1))
