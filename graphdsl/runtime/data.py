"""Training data, backend-neutral: numpy arrays named after a model's inputs and targets.

Here: an ``.npz`` archive whose arrays are named after the model's inputs and targets,
loaded whole, and what the sources bigger than memory share with it (the checks of named
arrays, the vocabulary of a text corpus). Those sources, read a batch at a time, are in
graphdsl/runtime/streams.py: a folder of memory-mapped ``.npy`` files, token files, and
text corpora (``.txt`` or ``.txt.gz``) for a language model with one integer input [B, T]
and one integer target [B, T]. Ids 0, 1, 2 of a text vocabulary are <pad>, <unk>, <eos>.

Batch order is a permutation drawn from (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one.

Nothing is read blindly: an archive member's declared size and an array's declared shape
are checked against the bytes present and the memory available before anything is
decompressed, a compressed corpus is decompressed up to a cap, and integer ids are
checked against the Embedding or class count that will read them, so both backends stop
with the same diagnostic instead of an IndexError or a TensorFlow stack.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphdsl.checks.resources import available_memory, human_bytes
from graphdsl.diagnostics import Diagnostic, Note
from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import FLOAT_DTYPES, INT_DTYPES, Sym
from graphdsl.runtime.distributed import shard_rows

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
                start: int = 0, part: tuple[int, int] = (0, 1)
                ) -> Iterator[dict[str, np.ndarray]]:
        """Batches of ``batch`` rows (the last may be short); of each, only the rows of
        process ``part[0]`` of ``part[1]``."""
        n = len(self)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle \
            else np.arange(n)
        for i in range(start * batch, n, batch):
            index = shard_rows(order[i: i + batch], part)
            yield {k: v[index] for k, v in self.arrays.items()}

    def steps_per_epoch(self, batch: int) -> int:
        return (len(self) + batch - 1) // batch


def _names(model: ModelGraph, targets: bool = True) -> dict[str, tuple[str, object]]:
    out = {}
    for node in model.inputs + (model.targets if targets else []):
        data = model.node(node)
        out[data["name"]] = (data["kind"], data["type"])
    return out


def load_npz(path: str, model: ModelGraph, targets: bool = True) -> Dataset:
    """Arrays for each input and target (only inputs when not ``targets``: for predicting),
    checked against their declared types."""
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
    arrays = checked_arrays(raw, model, path, "the archive", targets=targets)
    return Dataset({k: v.astype(_storage(model, k), copy=False) for k, v in arrays.items()})


def _storage(model: ModelGraph, name: str) -> str:
    """The numpy dtype a batch of input or target ``name`` is given to the engine in."""
    dtype = _names(model)[name][1].dtype  # type: ignore[attr-defined]
    return "float32" if dtype == "bfloat16" else str(dtype)


def checked_arrays(raw: dict[str, np.ndarray], model: ModelGraph, path: str,
                   holder: str, targets: bool = True) -> dict[str, np.ndarray]:
    """The arrays named after each input and target, checked against their declared types
    (not converted: a memory-mapped array stays on disk)."""
    problems: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for name, (kind, t) in _names(model, targets).items():
        if name not in raw:
            problems.append(f"no array `{name}` for {kind} `{name}` {t} "
                            f"({holder} has: {', '.join(sorted(raw)) or 'nothing'})")
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
        arrays[name] = arr
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        problems.append(f"the arrays have different numbers of samples: "
                        f"{', '.join(f'{k}: {len(v)}' for k, v in arrays.items())}")
    if problems:
        raise _error(f"{path} does not fit model `{model.name}`", problems)
    return arrays


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
            n = int(data["args"]["num_classes"])
            why, hidden = f"the one_hot that reads it has {n} classes", False
        else:
            continue
        masked = masked and hidden
        if limit is None or n < limit:
            limit, reason = n, why
    return limit, reason, masked and limit is not None


def _ids_outside(values: Any, limit: int) -> tuple[int, int, int]:
    """(lowest, highest, how many outside 0 .. limit - 1), read a chunk of rows at a time so
    that a memory-mapped array is never held whole."""
    per_row = int(np.prod(values.shape[1:], dtype=np.int64)) or 1
    chunk = max(1, (1 << 24) // per_row)
    low, high, count = 0, 0, 0
    for start in range(0, len(values), chunk):
        part = np.asarray(values[start:start + chunk])
        if part.size == 0:
            continue
        low = min(low, int(part.min())) if start else int(part.min())
        high = max(high, int(part.max())) if start else int(part.max())
        count += int(np.count_nonzero((part < 0) | (part >= limit)))
    return low, high, count


def id_problem(model: ModelGraph, name: str, values: Any) -> str | None:
    """Why integer ids in ``values`` would index outside the table or class axis they feed."""
    node = next(n for n in model.inputs + model.targets if model.node(n)["name"] == name)
    limit, reason, masked = id_limit(model, node)
    if limit is None or masked or len(values) == 0:
        return None
    low, high, count = _ids_outside(values, limit)
    if count == 0:
        return None
    bad = high if high >= limit else low
    return (f"`{name}` holds {bad} ({count:,} value{'s' * (count != 1)} outside 0 .. "
            f"{limit - 1}): {reason}")


# ---- text corpora -----------------------------------------------------------------------


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


def build_vocab(counts: Counter[str], size: int) -> list[str]:
    """The SPECIALS, then the most frequent tokens (ties broken alphabetically)."""
    counts = Counter({t: c for t, c in counts.items() if t not in SPECIALS})
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

