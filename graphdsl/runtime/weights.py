"""Initial values, backend-neutral: numpy arrays both backends load, so that the same
program and seed give the same starting weights in PyTorch and in Keras.

Each parameter draws from its own generator, seeded by (seed, crc32(name)), so adding a
layer does not change the initial values of the others. Fans follow Keras: for a kernel
[..., in, out] the receptive field (product of the leading axes) multiplies both.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import Shape
from graphdsl.ops.specs import Spec

_TRUNCATED_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]


def file_shape(path: str) -> tuple[int, ...]:
    """The array shape a `from_file` initialiser will produce, read cheaply."""
    if path.endswith(".npy"):
        return tuple(int(d) for d in np.load(path, mmap_mode="r", allow_pickle=False).shape)
    return tuple(int(d) for d in _read_text(path).shape)


def _read_text(path: str) -> np.ndarray:
    return np.loadtxt(path, dtype=np.float64, ndmin=1)


def read_array(path: str) -> np.ndarray:
    """A .npy file (never unpickled) or a whitespace-separated text file."""
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    return _read_text(path)


def fans(shape: Shape) -> tuple[float, float]:
    dims = [int(d) for d in shape]  # type: ignore[arg-type]
    if len(dims) == 0:
        return 1.0, 1.0
    if len(dims) == 1:
        return float(dims[0]), float(dims[0])
    if len(dims) == 2:
        return float(dims[0]), float(dims[1])
    receptive = float(np.prod(dims[:-2]))
    return dims[-2] * receptive, dims[-1] * receptive


def _truncated(rng: np.random.Generator, shape: tuple[int, ...], mean: float,
               std: float) -> np.ndarray:
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return mean + std * out


CHUNK = 1 << 16  # values drawn in float64 at a time (512 KiB) when the result is float32


def _drawn(dims: tuple[int, ...], dtype: str, draw: Any) -> np.ndarray:
    """``draw(n)`` (n float64 values) for the whole shape, in ``dtype``. A float32 result is
    filled a chunk at a time: the numbers are those of one float64 draw, cast, since the
    generator's stream does not depend on how it is split, without a float64 copy of the
    whole tensor (twice its size) in memory."""
    if dtype == "float64":
        return np.asarray(draw(int(np.prod(dims, dtype=np.int64)))).reshape(dims)
    out = np.empty(dims, dtype=dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, CHUNK):
        flat[start: start + CHUNK] = draw(min(CHUNK, flat.size - start))
    return out


def initial_value(spec: Spec, shape: Shape, rng: np.random.Generator,
                  dtype: str = "float64") -> np.ndarray:
    """One parameter's initial value: in ``dtype`` where drawing in it gives exactly the
    float64 value cast (constants, uniform and normal draws), else float64 (callers cast)."""
    dims = tuple(int(d) for d in shape)  # type: ignore[arg-type]
    name = spec.name
    fan_in, fan_out = fans(shape)
    if name == "zeros":
        return np.zeros(dims, dtype)
    if name == "ones":
        return np.ones(dims, dtype)
    if name == "constant":
        return np.full(dims, float(spec["value"]), dtype)
    if name == "normal":
        mean, std = spec["mean"], spec["stddev"]
        return _drawn(dims, dtype, lambda n: mean + std * rng.standard_normal(n))
    if name == "uniform":
        low, high = spec["minval"], spec["maxval"]
        return _drawn(dims, dtype, lambda n: rng.uniform(low, high, n))
    if name == "truncated_normal":
        return _truncated(rng, dims, spec["mean"], spec["stddev"])
    if name == "glorot_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return _drawn(dims, dtype, lambda n: rng.uniform(-limit, limit, n))
    if name == "glorot_normal":
        return _truncated(rng, dims, 0.0, np.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD)
    if name == "he_normal":
        return _truncated(rng, dims, 0.0, np.sqrt(2.0 / fan_in) / _TRUNCATED_STD)
    if name == "he_uniform":
        limit = np.sqrt(6.0 / fan_in)
        return _drawn(dims, dtype, lambda n: rng.uniform(-limit, limit, n))
    if name == "lecun_normal":
        return _truncated(rng, dims, 0.0, np.sqrt(1.0 / fan_in) / _TRUNCATED_STD)
    if name == "lecun_uniform":
        limit = np.sqrt(3.0 / fan_in)
        return _drawn(dims, dtype, lambda n: rng.uniform(-limit, limit, n))
    if name == "variance_scaling":
        fan = {"fan_in": fan_in, "fan_out": fan_out,
               "fan_avg": (fan_in + fan_out) / 2.0}[spec["mode"]]
        variance = spec["scale"] / max(1.0, fan)
        if spec["distribution"] == "uniform":
            limit = np.sqrt(3.0 * variance)
            return _drawn(dims, dtype, lambda n: rng.uniform(-limit, limit, n))
        if spec["distribution"] == "untruncated_normal":
            std = np.sqrt(variance)
            return _drawn(dims, dtype, lambda n: std * rng.standard_normal(n))
        return _truncated(rng, dims, 0.0, np.sqrt(variance) / _TRUNCATED_STD)
    if name == "orthogonal":
        return spec["gain"] * _orthogonal(rng, dims)
    if name == "identity":
        return spec["gain"] * np.eye(dims[0], dims[1])
    if name == "binary":
        return (rng.random(dims) < spec["p"]).astype(np.float64)
    if name == "sign":
        return np.where(rng.random(dims) < spec["p"], 1.0, -1.0)
    if name == "lstm_bias":
        out = np.zeros(dims)
        units = dims[0] // 4
        out[units: 2 * units] = 1.0
        return out
    if name == "from_file":
        if not os.path.isfile(spec["path"]):
            return np.zeros(dims)  # a rebuilt model whose weights are loaded afterwards
        arr = read_array(spec["path"]).astype(np.float64)
        if arr.shape != dims:
            raise ValueError(f"{spec['path']} holds {arr.shape}, expected {dims}")
        return arr
    raise ValueError(f"unknown initializer {name}")


def _orthogonal(rng: np.random.Generator, dims: tuple[int, ...]) -> np.ndarray:
    if len(dims) < 2:
        return rng.standard_normal(dims)
    rows, cols = int(np.prod(dims[:-1])), dims[-1]
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(dims)


def one_blas_thread() -> Any:
    """The orthogonal initialiser's QR of a few hundred rows is slower on many BLAS threads
    than on one (their start-up and synchronisation cost more than the work): 6.7 s against
    1.0 s to initialise a model on a many-core machine. threadpoolctl limits the BLAS that
    numpy loaded, for the time initial values are drawn."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up: the numbers are the same without it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def reparam_inverse(constraint: Spec, value: np.ndarray) -> np.ndarray:
    """The stored (unconstrained) tensor whose re-parameterisation gives ``value``.

    Re-parameterisations: simplex -> softmax along axis; non_neg -> softplus;
    unit_norm -> w / ||w|| along axis; max_norm -> w * min(1, max_value / ||w||).
    """
    if constraint.name == "simplex":
        return np.log(np.clip(value, 1e-6, None))
    if constraint.name == "non_neg":
        return np.log(np.expm1(np.clip(value, 1e-6, None)))
    return value


def project(constraint: Spec, value: np.ndarray) -> np.ndarray:
    """The projection a `mode = "project"` constraint applies after each step (reference)."""
    axis = constraint.get("axis", 0)
    if constraint.name == "non_neg":
        return np.maximum(value, 0.0)
    if constraint.name == "unit_norm":
        return value / np.maximum(np.linalg.norm(value, axis=axis, keepdims=True), 1e-12)
    if constraint.name == "max_norm":
        norm = np.linalg.norm(value, axis=axis, keepdims=True)
        return value * np.minimum(1.0, constraint["max_value"] / np.maximum(norm, 1e-12))
    if constraint.name == "simplex":
        return np.apply_along_axis(simplex_projection, axis, value)
    raise ValueError(constraint.name)


def simplex_projection(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {x >= 0, sum x = 1} (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    index = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - cumulative / index > 0)[0][-1]
    theta = cumulative[rho] / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


def parameter_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def initial_values(model: ModelGraph, seed: int = 0,
                   names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Initial values of every parameter and state tensor, by canonical name.

    Kernel masks are applied; re-parameterised tensors are stored unconstrained.
    """
    wanted = set(names) if names is not None else None
    with one_blas_thread():
        return _initial_values(model, seed, wanted)


def _initial_values(model: ModelGraph, seed: int,
                    wanted: set[str] | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for node in model.params:
        data = model.node(node)
        name = data["name"]
        if wanted is not None and name not in wanted:
            continue
        shape = data["type"].shape
        dtype = _numpy_dtype(data["type"].dtype)
        constraint = data["constraint"]
        # A constraint's arithmetic runs in float64, as it always has: only unconstrained
        # values are drawn straight into their own type.
        value = initial_value(data["init"], shape, parameter_rng(seed, name),
                              dtype if constraint is None and dtype == "float32" else
                              "float64")
        if data["kernel_mask"] is not None:
            value = value * np.asarray(data["kernel_mask"], dtype=value.dtype)
        if constraint is not None:
            if constraint.get("mode") == "reparam":
                value = reparam_inverse(constraint, value)
            else:
                value = project(constraint, value)
        out[name] = value.astype(np.dtype(dtype), copy=False)
    return out


def _numpy_dtype(dtype: str) -> str:
    return "float32" if dtype == "bfloat16" else dtype

