"""Reading another tool's checkpoint as name -> numpy array, never executing code from it.

- ``.safetensors``: read here from the header and the bytes (numpy only), so bfloat16
  tensors, which numpy cannot hold, become float32 and no framework is imported;
- ``.bin`` / ``.pt`` / ``.pth``: a PyTorch state dict, through ``torch.load(...,
  weights_only=True)``, which refuses anything but tensors and plain containers;
- ``.h5`` (Keras' ``.weights.h5``): every dataset, named by its path (``layers/dense/
  vars/0``), through h5py.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphdsl.runtime.checkpoint import CheckpointError, _bad

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5")


def read_foreign(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise _bad(path, "no such file")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    if path.endswith((".bin", ".pt", ".pth")):
        return _read_torch(path)
    if path.endswith(".h5"):
        return _read_h5(path)
    raise _bad(path, "unknown kind of checkpoint; graphdsl reads " + ", ".join(SUFFIXES))


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            # Mapped, not read: a 500 MB checkpoint is paged in as the rules take tensors.
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise _bad(path, f"not a safetensors file ({exc})") from None
    body = memoryview(data)[8 + header_len:]
    try:
        return _tensors(header, body, path)
    except (KeyError, TypeError, ValueError) as exc:  # a header that does not fit its bytes
        raise _bad(path, f"not a safetensors file ({type(exc).__name__}: {exc})") from None


def _tensors(header: dict[str, Any], body: memoryview, path: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        raw = body[start:end]
        if info["dtype"] == "BF16":
            # bfloat16 is the top half of a float32: widen the bits, exactly.
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
            continue
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise _bad(path, f"tensor `{name}` has dtype {info['dtype']}, which graphdsl "
                       "cannot convert")
        out[name] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")) \
            .reshape(shape)  # read-only: every transform and the final cast copy
    return out


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise _bad(path, "reading a PyTorch file needs PyTorch (pip install torch), or save "
                   "the state dict as .safetensors") from None
    try:
        # weights_only: tensors and containers only; anything else is refused, not run.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file it refuses
        raise _bad(path, f"not a PyTorch state dict that loads with weights_only=True "
                   f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                   ) from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and \
            isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise _bad(path, f"holds a {type(loaded).__name__}, not a state dict (name -> tensor)")
    out: dict[str, np.ndarray] = {}
    for name, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        out[str(name)] = tensor.numpy().copy()
    return out


def _read_h5(path: str) -> dict[str, np.ndarray]:
    try:
        import h5py
    except ImportError:
        raise _bad(path, "reading a Keras .weights.h5 file needs h5py (pip install h5py)") \
            from None
    out: dict[str, np.ndarray] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            out[name] = np.asarray(item[()])

    try:
        with h5py.File(path, "r") as fh:
            fh.visititems(visit)
    except OSError as exc:
        raise _bad(path, f"not an HDF5 file ({exc})") from None
    return out


__all__ = ["CheckpointError", "SUFFIXES", "read_foreign"]
