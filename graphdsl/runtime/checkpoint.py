"""The checkpoint format, backend-neutral (docs/checkpoint.md).

A checkpoint is a safetensors file of numpy arrays keyed by canonical parameter names
(`embed.embeddings`, `gpt2_block.3.dense.kernel`), in the registry's canonical layouts;
a tied tensor is stored once under its owner's name. Its metadata names the format, the
program, the model and the graph hash. Training state for resuming (optimizer moments,
step counters, random-number-generator states) goes in a companion safetensors file with
a JSON document in its metadata. Loading reads bytes and JSON only: nothing is unpickled
or executed. Writes are atomic: a temporary file in the same folder, fsync, rename.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphdsl.diagnostics import Diagnostic, Note
from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.patterns import matches

FORMAT = "graphdsl-checkpoint/1"
STATE_FORMAT = "graphdsl-train-state/1"


@dataclass
class Checkpoint:
    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]


class CheckpointError(Exception):
    """A checkpoint that cannot be used; carries diagnostics listing every problem."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("; ".join(d.message for d in diagnostics))


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; read once, at import, not per write
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        # mkstemp makes the file private (0600); a checkpoint gets the usual permissions.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _serialise(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    from safetensors.numpy import save

    contiguous = {k: np.asarray(v, order="C") for k, v in tensors.items()}
    return save(contiguous, metadata=dict(metadata))


def model_metadata(model: ModelGraph, program_file: str, **extra: Any) -> dict[str, str]:
    # `formals` holds every parameter value the model was built with, `arguments` those
    # given from outside (`--set`): enough to rebuild the same model from the program.
    meta = {"format": FORMAT, "program": os.path.basename(program_file), "model": model.name,
            "graph_hash": model.graph_hash(),
            "formals": json.dumps(model.formals, sort_keys=True, default=str),
            "arguments": json.dumps(model.arguments, sort_keys=True)}
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def save_checkpoint(path: str, tensors: Mapping[str, np.ndarray],
                    metadata: Mapping[str, str]) -> None:
    atomic_write_bytes(path, _serialise(tensors, metadata))


def _bad(path: str, message: str) -> CheckpointError:
    return CheckpointError([Diagnostic("error", "bad-checkpoint", f"{path}: {message}")])


MAX_HEADER = 100 * 1024**2  # safetensors' own limit on the JSON header


def read_header(path: str) -> dict[str, Any]:
    """The safetensors JSON header, checked against the file's size before anything else
    is read."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise _bad(path, "not a safetensors file (too short)")
        length = int.from_bytes(prefix, "little")
        if length > min(MAX_HEADER, size - 8):
            raise _bad(path, f"not a safetensors file (its first 8 bytes announce a header of "
                       f"{length:,} bytes; the file has {size:,})")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad(path, f"not a safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise _bad(path, "not a safetensors file (its header is not a JSON object)")
    return header


def declared_bytes(header: Mapping[str, Any]) -> int:
    total = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            total += max(int(end) - int(begin), 0)
        except (TypeError, KeyError, ValueError):
            continue  # safetensors itself names what is wrong with the entry
    return total


def load_checkpoint(path: str, expected_format: str = FORMAT) -> Checkpoint:
    """Read a checkpoint: arrays and metadata, never code. The file is memory-mapped, and
    its declared size is checked against the memory available before a tensor is read."""
    from safetensors import SafetensorError, safe_open

    from graphdsl.checks.resources import available_memory, human_bytes

    if not os.path.isfile(path):
        raise _bad(path, "no such checkpoint file")
    try:
        header = read_header(path)
    except OSError as exc:
        raise _bad(path, f"cannot read it ({exc})") from None
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or metadata.get("format") != expected_format:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise _bad(path, f"not a graphdsl checkpoint (format {found!r}, "
                   f"expected {expected_format!r})")
    size, budget = declared_bytes(header), available_memory() // 2
    if size > budget:
        raise _bad(path, f"its tensors need {human_bytes(size)}, more than the "
                   f"{human_bytes(budget)} this run can hold in memory")
    try:
        with safe_open(path, framework="numpy") as fh:
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except (SafetensorError, ValueError, OSError, MemoryError) as exc:
        raise _bad(path, f"not a safetensors file ({exc})") from None
    return Checkpoint(tensors, {str(k): str(v) for k, v in metadata.items()})


def select(model: ModelGraph, checkpoint: Checkpoint, pattern: str = "*",
           source: str = "checkpoint", exact: bool | None = None,
           conversions: list[str] | None = None) -> dict[str, np.ndarray]:
    """The checkpoint's tensors for ``model``'s tensors whose names match ``pattern``, in
    the dtypes the model stores (see :func:`convert`; each conversion is described in
    ``conversions`` when given).

    Every problem is listed: a tensor of the model the checkpoint lacks, a tensor of the
    checkpoint the model lacks (only when loading everything), a shape that differs, a
    dtype that does not convert.
    """
    expected = expected_tensors(model)
    wanted = {n: s for n, s in expected.items() if matches(pattern, n)}
    full = pattern == "*" if exact is None else exact
    problems: list[str] = []
    for name, shape in sorted(wanted.items()):
        if name not in checkpoint.tensors:
            problems.append(f"missing: `{name}` {list(shape)}")
        elif tuple(checkpoint.tensors[name].shape) != tuple(shape):
            problems.append(f"shape: `{name}` is {list(checkpoint.tensors[name].shape)} in the "
                            f"{source} but {list(shape)} in model `{model.name}`")
    if full:
        for name in sorted(set(checkpoint.tensors) - set(expected)):
            problems.append(f"unexpected: `{name}` {list(checkpoint.tensors[name].shape)}")
    if not wanted:
        problems.append(f"the pattern `{pattern}` matches no tensor of model `{model.name}`")
    if problems:
        raise CheckpointError([Diagnostic(
            "error", "checkpoint-mismatch",
            f"the {source} does not fit model `{model.name}` ({len(problems)} "
            f"problem{'s' * (len(problems) != 1)})",
            notes=tuple(Note(p) for p in problems),
            help="restore a subset with a pattern (`restore trunk.* from ...`)"
            if full else None)])
    dtypes = stored_dtypes(model)
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        array, note = convert(name, checkpoint.tensors[name], dtypes[name])
        if array is None:
            problems.append(str(note))
            continue
        out[name] = array
        if note is not None and conversions is not None:
            conversions.append(f"{source}: {note}")
    if problems:
        raise CheckpointError([Diagnostic(
            "error", "checkpoint-mismatch",
            f"the {source} does not fit model `{model.name}`: dtypes that do not convert",
            notes=tuple(Note(p) for p in problems))])
    return out


def convert(name: str, array: np.ndarray, dtype: np.dtype
            ) -> tuple[np.ndarray | None, str | None]:
    """``array`` in ``dtype``: (array, None) when it already is; (converted, what was done)
    when every value converts exactly, or, float to a narrower float, when it rounds
    within range; (None, why not) otherwise (an int beyond float32's 2**24, a float that
    overflows, a fraction for an integer tensor)."""
    if array.dtype == dtype:
        return array, None
    with np.errstate(invalid="ignore", over="ignore"):
        converted = array.astype(dtype)
        back = converted.astype(array.dtype)
    both_float = array.dtype.kind == "f" and dtype.kind == "f"
    if np.array_equal(back, array, equal_nan=both_float):
        return converted, (f"`{name}` is {array.dtype}, converted exactly to {dtype}")
    if both_float and np.isfinite(converted).all() == np.isfinite(array).all():
        change = float(np.max(np.abs(back.astype(np.float64) - array.astype(np.float64))))
        return converted, (f"`{name}` is {array.dtype}, rounded to {dtype} (largest change "
                           f"{change:.3g})")
    return None, (f"dtype: `{name}` is {array.dtype} and its values do not convert exactly "
                  f"to {dtype}")


def stored_dtypes(model: ModelGraph) -> dict[str, np.dtype]:
    """Canonical name -> the numpy dtype a checkpoint stores it in (bfloat16 as float32)."""
    out: dict[str, np.dtype] = {}
    for node in model.params:
        data = model.node(node)
        dtype = str(data["type"].dtype)
        out[data["name"]] = np.dtype("float32" if dtype == "bfloat16" else dtype)
        if data["kernel_mask"] is not None:
            out[data["name"] + "_mask"] = out[data["name"]]
    return out


def expected_tensors(model: ModelGraph) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of every tensor a checkpoint of this model holds."""
    out: dict[str, tuple[int, ...]] = {}
    for node in model.params:
        data = model.node(node)
        shape = tuple(int(d) for d in data["type"].shape)
        out[data["name"]] = shape
        if data["kernel_mask"] is not None:
            out[data["name"] + "_mask"] = shape
    return out


def save_state(path: str, tensors: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
    """The companion file: optimizer tensors plus a JSON document (counters, RNG states)."""
    meta = {"format": STATE_FORMAT, "state": json.dumps(state, sort_keys=True)}
    atomic_write_bytes(path, _serialise(tensors, meta))


def load_state(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    ckpt = load_checkpoint(path, STATE_FORMAT)
    try:
        state = json.loads(ckpt.metadata.get("state", "{}"))
    except json.JSONDecodeError as exc:
        raise _bad(path, f"corrupt training state ({exc})") from None
    counters = ("step", "epoch", "batch_in_epoch")
    if not isinstance(state, dict) or not all(
            isinstance(state.get(k), int) and state[k] >= 0 for k in counters):
        raise _bad(path, "corrupt training state (it needs the counters "
                   f"{', '.join(counters)} as non-negative integers)")
    return ckpt.tensors, state


def read_pointer(path: str) -> dict[str, Any]:
    """`latest.json`: which checkpoint and state file a resumed run continues from."""
    try:
        with open(path, encoding="utf-8") as fh:
            pointer = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"cannot read it ({exc})") from None
    if not isinstance(pointer, dict) or not all(
            isinstance(pointer.get(k), str) for k in ("weights", "state", "graph_hash")):
        raise _bad(path, "not a run pointer (it needs the strings `weights`, `state` and "
                   "`graph_hash`)")
    return pointer
