"""Initial values, backend-neutral: numpy arrays both backends load, so that the same
program and seed give the same starting weights in PyTorch and in Keras.

Each parameter draws from its own generator, seeded by (seed, crc32(name)), so adding a
layer does not change the initial values of the others. Fans follow Keras: for a kernel
[..., in, out] the receptive field (product of the leading axes) multiplies both.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable

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


def initial_value(spec: Spec, shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """One parameter's initial value, float64 (callers cast)."""
    dims = tuple(int(d) for d in shape)  # type: ignore[arg-type]
    name = spec.name
    fan_in, fan_out = fans(shape)
    if name == "zeros":
        return np.zeros(dims)
    if name == "ones":
        return np.ones(dims)
    if name == "constant":
        return np.full(dims, float(spec["value"]))
    if name == "normal":
        return spec["mean"] + spec["stddev"] * rng.standard_normal(dims)
    if name == "uniform":
        return rng.uniform(spec["minval"], spec["maxval"], dims)
    if name == "truncated_normal":
        return _truncated(rng, dims, spec["mean"], spec["stddev"])
    if name == "glorot_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, dims)
    if name == "glorot_normal":
        return _truncated(rng, dims, 0.0, np.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD)
    if name == "he_normal":
        return _truncated(rng, dims, 0.0, np.sqrt(2.0 / fan_in) / _TRUNCATED_STD)
    if name == "he_uniform":
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, dims)
    if name == "lecun_normal":
        return _truncated(rng, dims, 0.0, np.sqrt(1.0 / fan_in) / _TRUNCATED_STD)
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
    out: dict[str, np.ndarray] = {}
    for node in model.params:
        data = model.node(node)
        name = data["name"]
        if wanted is not None and name not in wanted:
            continue
        shape = data["type"].shape
        value = initial_value(data["init"], shape, parameter_rng(seed, name))
        if data["kernel_mask"] is not None:
            value = value * np.asarray(data["kernel_mask"], dtype=np.float64)
        constraint = data["constraint"]
        if constraint is not None:
            if constraint.get("mode") == "reparam":
                value = reparam_inverse(constraint, value)
            else:
                value = project(constraint, value)
        out[name] = value.astype(np.dtype(_numpy_dtype(data["type"].dtype)))
    return out


def _numpy_dtype(dtype: str) -> str:
    return "float32" if dtype == "bfloat16" else dtype

