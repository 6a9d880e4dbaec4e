"""The Keras (TensorFlow) and PyTorch op implementations agree, op by op.

1. Every registry op has an implementation in both backends, keyword-only and accepting
   exactly what a backend passes: its inputs, parameters, arguments and call arguments,
   plus ``training`` for random ops.
2. For every op, the same inputs (NumPy, float32, drawn in float64) give the same outputs
   in both backends: values within 1e-5 (relative and absolute), shapes and dtypes equal.
   Each op runs in several variants (masks present or absent, paddings, strides,
   dilation, from_logits, weights, return_sequences/return_state, causal masks, ...).
   Random ops are compared in inference mode; in training mode only the statistics of
   their noise are checked, in each backend. BatchNormalization in training mode is
   deterministic and is compared including its updated moving statistics.
   ``test_every_op_is_exercised`` compares the set of ops run with the registry.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from graphdsl.backends.keras.ops import load_all as load_keras
from graphdsl.backends.torch.ops import load_all as load_torch
from graphdsl.ops import all_ops
from graphdsl.ops.specs import ACTIVATIONS, default_spec

pytestmark = [pytest.mark.keras, pytest.mark.torch]

OPS = {op.name: op for op in all_ops()}
BACKENDS: dict[str, Callable[[], dict[str, Callable[..., Any]]]] = {
    "torch": load_torch, "keras": load_keras}
TOL = 1e-5


# ---------------------------------------------------------------- 1. the contract
def expected_keywords(op) -> set[str]:  # type: ignore[no-untyped-def]
    names = {i.name for i in op.inputs} | {p.name for p in op.params}
    names |= {a.name for a in (*op.args, *op.call_args)}
    if op.random:
        names.add("training")
    return names


def test_keras_runs_on_tensorflow() -> None:
    assert keras.backend.backend() == "tensorflow"


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_op_has_an_implementation(backend: str) -> None:
    impls = BACKENDS[backend]()
    missing = sorted(set(OPS) - set(impls))
    unknown = sorted(set(impls) - set(OPS))
    assert not missing, f"ops without a {backend} implementation: {missing}"
    assert not unknown, f"{backend} implementations of ops the registry lacks: {unknown}"


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", sorted(OPS))
def test_implementation_signature(backend: str, name: str) -> None:
    op = OPS[name]
    fn = BACKENDS[backend]()[name]
    parameters = inspect.signature(fn).parameters
    for pname, p in parameters.items():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, \
            f"{backend} {name}: parameter `{pname}` must be keyword-only"
    expected = expected_keywords(op)
    missing = expected - set(parameters)
    assert not missing, f"{backend} {name}: the implementation lacks {sorted(missing)}"
    # Anything beyond the registry's names must be optional: the backend never passes it.
    extra = [n for n in set(parameters) - expected
             if parameters[n].default is inspect.Parameter.empty]
    assert not extra, f"{backend} {name}: required parameters the registry lacks: {extra}"
    if op.random:
        assert parameters["training"].default is inspect.Parameter.empty, \
            f"{backend} {name}: `training` must be required for a random op"


# ---------------------------------------------------------------- 2. cases
@dataclass
class Case:
    """One call of op ``op`` with ``kwargs``: NumPy arrays (and lists of them, for a
    variadic input) become tensors of each backend, everything else is passed as it is.
    ``variables`` name arrays passed as updatable state (torch: a tensor updated in place;
    Keras: a keras.Variable); their values after the call are compared too."""

    op: str
    variant: str
    kwargs: dict[str, Any]
    variables: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.op}[{self.variant}]"


CASES: list[Case] = []


def case(op: str, variant: str, variables: tuple[str, ...] = (), **kwargs: Any) -> None:
    """A case of ``op``; random ops run in inference mode unless ``training`` is given."""
    assert op in OPS, f"no op {op}"
    if OPS[op].random:
        kwargs.setdefault("training", False)
    CASES.append(Case(op, variant, kwargs, variables))


def rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def normal(r: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    """float32 values drawn in float64."""
    return (r.standard_normal(shape) * scale).astype(np.float32)


def uniform(r: np.random.Generator, *shape: int, low: float = 0.0,
            high: float = 1.0) -> np.ndarray:
    return r.uniform(low, high, size=shape).astype(np.float32)


def integers(r: np.random.Generator, low: int, high: int, *shape: int,
             dtype: str = "int32") -> np.ndarray:
    return r.integers(low, high, size=shape).astype(dtype)


def booleans(r: np.random.Generator, *shape: int, p: float = 0.7) -> np.ndarray:
    return r.random(shape) < p


def lengths_mask(lengths: Iterable[int], steps: int) -> np.ndarray:
    """bool [B, steps], true on the first lengths[b] steps."""
    return np.arange(steps)[None, :] < np.asarray(list(lengths))[:, None]


# ---- core
def _core_cases() -> None:
    r = rng("core")
    for name in ACTIVATIONS:
        case("Activation", f"{name}-spec", x=normal(r, 3, 7, scale=3.0),
             activation=default_spec("activation", name))
        case("Activation", f"{name}-name", x=normal(r, 2, 5, scale=3.0), activation=name)
    for activation, use_bias, shape in (("linear", True, (4, 6)), ("gelu", True, (2, 3, 6)),
                                        ("relu", False, (2, 3, 6)),
                                        ("gelu_tanh", True, (5, 6))):
        x = normal(r, *shape)
        case("Dense", f"{activation}-bias{use_bias}-rank{len(shape)}", x=x,
             kernel=normal(r, 6, 5, scale=0.5), bias=normal(r, 5) if use_bias else None,
             units=5, activation=activation, use_bias=use_bias)
    for dtype in ("int32", "int64"):
        ids = integers(r, 0, 9, 3, 4, dtype=dtype)
        ids[0, 0] = 0
        case("Embedding", dtype, ids=ids, embeddings=normal(r, 9, 4), input_dim=9,
             output_dim=4, mask_zero=dtype == "int64")
    x = normal(r, 2, 3, 4, scale=2.0)
    case("PReLU", "per-feature", x=x, alpha=normal(r, 3, 4))
    case("PReLU", "shared-steps", x=x, alpha=normal(r, 1, 4), shared_axes=[1])
    case("PReLU", "rank2", x=normal(r, 5, 4), alpha=normal(r, 4))
    case("Flatten", "rank4", x=normal(r, 2, 3, 4, 5))
    case("Flatten", "int", x=integers(r, 0, 9, 3, 2, 2))
    case("Reshape", "explicit", x=normal(r, 2, 12), target_shape=[3, 4])
    case("Reshape", "inferred", x=normal(r, 2, 3, 4), target_shape=[-1, 2])
    case("Reshape", "copy-dim", x=normal(r, 2, 3, 4), target_shape=[0, 2, 2])
    for rate in (0.0, 0.3, 1.0):
        case("Dropout", f"rate{rate}-inference", x=normal(r, 4, 5), rate=rate, training=False)
    case("Dropout", "rate0-training", x=normal(r, 4, 5), rate=0.0, training=True)
    case("Dropout", "noise-shape-inference", x=normal(r, 4, 5), rate=0.5, noise_shape=[-1, 1],
         training=False)


# ---- elementwise
BINARY_NUMBER = ("add", "subtract", "multiply", "maximum", "minimum", "equal", "not_equal",
                 "less", "less_equal", "greater", "greater_equal")


def _elementwise_cases() -> None:
    r = rng("elementwise")
    for name in BINARY_NUMBER:
        case(name, "float-broadcast", x=normal(r, 3, 1, 4), y=normal(r, 5, 4))
        xi = integers(r, -4, 5, 2, 6)
        case(name, "int-ties", x=xi, y=integers(r, -4, 5, 6))
    case("equal", "bool", x=booleans(r, 3, 4), y=booleans(r, 4))
    case("not_equal", "bool", x=booleans(r, 3, 4), y=booleans(r, 4))
    away = (uniform(r, 3, 4, low=0.5, high=2.0) * np.where(booleans(r, 3, 4), 1, -1)
            ).astype(np.float32)
    case("divide", "float", x=normal(r, 2, 3, 4), y=away)
    case("divide", "int", x=integers(r, -9, 9, 6), y=integers(r, 1, 5, 6) * np.int32(-1))
    case("divide", "int64", x=integers(r, -9, 9, 6, dtype="int64"),
         y=integers(r, 1, 5, 6, dtype="int64"))
    for name in ("floor_divide", "mod"):
        case(name, "float", x=normal(r, 3, 4, scale=4.0), y=away)
        xi = integers(r, -9, 10, 4, 6)
        yi = integers(r, 1, 4, 6) * np.where(booleans(r, 6, p=0.5), 1, -1).astype("int32")
        case(name, "int", x=xi, y=yi)
        case(name, "int64", x=xi.astype("int64"), y=yi.astype("int64"))
    # 1.0 / 0.1 rounds to 10.0, but 1.0 // 0.1 is 9.0 and 1.0 % 0.1 is 0.1 (Python's)
    edge_x = np.array([1.0, 0.7, -1.0, 7.0, 0.3, 0.0, -0.0, 5.0, -5.0], np.float32)
    edge_y = np.array([0.1, 0.1, 0.1, 0.7, -0.1, 0.3, 0.3, 0.0, 0.0], np.float32)
    case("floor_divide", "float-edges", x=edge_x, y=edge_y)
    case("mod", "float-edges", x=edge_x[:7], y=edge_y[:7])
    case("power", "float", x=uniform(r, 3, 4, low=0.2, high=3.0), y=normal(r, 4))
    case("power", "int", x=integers(r, -3, 4, 3, 4), y=integers(r, 0, 4, 4))
    for name in ("logical_and", "logical_or"):
        case(name, "broadcast", x=booleans(r, 3, 4, p=0.5), y=booleans(r, 4, p=0.5))
    case("logical_not", "plain", x=booleans(r, 3, 4, p=0.5))
    for xs, ys in (((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                   ((1, 3, 4), (2, 4, 5)), ((4,), (4, 2)), ((2, 3, 4), (4,)), ((4,), (4,)),
                   ((2, 1, 3, 4), (5, 4, 2))):
        case("matmul", f"{xs}@{ys}", x=normal(r, *xs), y=normal(r, *ys))
    case("matmul", "int", x=integers(r, -5, 5, 3, 4), y=integers(r, -5, 5, 4, 2))
    case("matmul", "int-1d", x=integers(r, -5, 5, 4), y=integers(r, -5, 5, 2, 4, 3))
    for name in ("negative", "abs", "square", "sign", "erf", "exp", "sin", "cos"):
        case(name, "float", x=normal(r, 3, 5, scale=2.0))
    for name in ("log", "sqrt", "rsqrt"):
        case(name, "positive", x=uniform(r, 3, 5, low=0.01, high=9.0))
    for name in ("negative", "abs", "square", "sign"):
        case(name, "int", x=integers(r, -4, 5, 3, 5))
    case("stop_gradient", "float", x=normal(r, 3, 4))
    case("stop_gradient", "int", x=integers(r, 0, 4, 3))
    wide = np.concatenate([np.array([-30.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 30.0]),
                           r.standard_normal(13) * 4]).astype(np.float32).reshape(4, 5)
    for name in ACTIVATIONS:
        if name != "softmax":
            case(name, "wide", x=wide)
    x = normal(r, 2, 3, 4, scale=3.0)
    where = booleans(r, 2, 3, 4)
    where[0, 1] = False  # a fully masked row is uniform
    for axis in (-1, 0, 1):
        case("softmax", f"axis{axis}", x=x, where=None, axis=axis)
        case("log_softmax", f"axis{axis}", x=x, axis=axis)
    case("softmax", "where", x=x, where=where, axis=-1)
    case("softmax", "where-broadcast", x=x, where=booleans(r, 3, 4), axis=-1)
    case("softmax", "where-axis1", x=x, where=where, axis=1)
    case("softmax", "large-scores", x=np.array([[-5e4, 0.0, -5e4 + 1.0]], np.float32),
         where=np.array([[True, False, True]]), axis=-1)
    case("where", "float-broadcast", condition=booleans(r, 3, 1, p=0.5), x=normal(r, 3, 4),
         y=normal(r, 4))
    case("where", "int", condition=booleans(r, 3, 4, p=0.5), x=integers(r, 0, 9, 3, 4),
         y=integers(r, 0, 9, 1))
    f = np.array([-2.7, -1.5, -0.5, 0.0, 0.5, 1.5, 2.7, 100.2], np.float32)
    for dtype in ("int32", "int64", "float32", "bool", "float16"):
        case("cast", f"float-{dtype}", x=f, dtype=dtype)
    case("cast", "int-float32", x=integers(r, -9, 9, 5), dtype="float32")
    case("cast", "int-bool", x=integers(r, -2, 3, 6), dtype="bool")
    case("cast", "bool-float32", x=booleans(r, 6, p=0.5), dtype="float32")
    case("cast", "bool-int32", x=booleans(r, 6, p=0.5), dtype="int32")
    case("clip", "float", x=normal(r, 3, 4, scale=2.0), min=-0.5, max=1.0)
    case("clip", "float-int-bounds", x=normal(r, 3, 4, scale=2.0), min=-1, max=1)
    case("clip", "int", x=integers(r, -9, 9, 8), min=-2, max=3)
    case("clip", "int-float-bounds", x=integers(r, -9, 9, 8), min=-2.5, max=3.5)
    case("clip", "empty-range", x=normal(r, 6), min=1.0, max=-1.0)
    case("one_hot", "in-range", x=integers(r, 0, 5, 2, 3), num_classes=5)
    case("one_hot", "out-of-range", x=np.array([-1, 0, 4, 5, 7], np.int64), num_classes=5)
    xn = normal(r, 3, 4)
    xn[1] = 0.0
    for axis in (-1, 0):
        case("l2_normalize", f"axis{axis}", x=xn, axis=axis, epsilon=1e-12)
    case("l2_normalize", "big-epsilon", x=xn, axis=-1, epsilon=0.5)
    case("constant", "float", value=[[1.5, -2.25], [0.1, 3.0]], dtype="float32", shape=[2, 2])
    case("constant", "int", value=[1, -2, 3, 4, 5, 6], dtype="int32", shape=[2, 3])
    case("constant", "float-to-int", value=[1.7, -2.7], dtype="int64", shape=[2])
    case("constant", "bool", value=[[True, False]], dtype="bool", shape=[1, 2])
    case("constant", "scalar", value=0.3, dtype="float32", shape=[])


# ---- attention
def _mha_params(r: np.random.Generator, q_dim: int, v_dim: int, k_dim: int, heads: int,
                key_dim: int, value_dim: int, out_dim: int, bias: bool) -> dict[str, Any]:
    p: dict[str, Any] = {
        "query_kernel": normal(r, q_dim, heads, key_dim, scale=0.5),
        "key_kernel": normal(r, k_dim, heads, key_dim, scale=0.5),
        "value_kernel": normal(r, v_dim, heads, value_dim, scale=0.5),
        "output_kernel": normal(r, heads, value_dim, out_dim, scale=0.5)}
    for name, shape in (("query_bias", (heads, key_dim)), ("key_bias", (heads, key_dim)),
                        ("value_bias", (heads, value_dim)), ("output_bias", (out_dim,))):
        p[name] = normal(r, *shape) if bias else None
    return p


def _attention_cases() -> None:
    r = rng("attention")
    b, t, d = 3, 5, 6
    x = normal(r, b, t, d)
    common = {"num_heads": 2, "key_dim": 3}
    params = _mha_params(r, d, d, d, 2, 3, 3, d, True)
    case("MultiHeadAttention", "self", query=x, value=x, **params, **common)
    case("MultiHeadAttention", "self-causal", query=x, value=x, **params, **common,
         use_causal_mask=True)
    padding = lengths_mask([5, 3, 1], t)
    # `value is query`: value_mask defaults to mask
    case("MultiHeadAttention", "self-mask", query=x, value=x, mask=padding, **params,
         **common)
    case("MultiHeadAttention", "self-mask-causal", query=x, value=x, mask=padding, **params,
         **common, use_causal_mask=True)
    attention = booleans(r, b, t, t, p=0.6)
    attention[1, 2] = False  # a query row with no allowed pair
    case("MultiHeadAttention", "attention-mask", query=x, value=x, attention_mask=attention,
         **params, **common)
    case("MultiHeadAttention", "inference-dropout", query=x, value=x, **params, **common,
         dropout=0.5, training=False)
    tv = 4
    value, key = normal(r, b, tv, 7), normal(r, b, tv, 2)
    cross = _mha_params(r, d, 7, 2, 2, 3, 4, 5, True)
    args = {"num_heads": 2, "key_dim": 3, "value_dim": 4, "output_shape": 5}
    case("MultiHeadAttention", "cross-key", query=x, value=value, key=key, **cross, **args)
    case("MultiHeadAttention", "cross-all-masks", query=x, value=value, key=key,
         attention_mask=booleans(r, b, t, tv), mask=padding,
         value_mask=lengths_mask([4, 2, 0], tv), **cross, **args)
    case("MultiHeadAttention", "cross-causal", query=x, value=value, key=key, **cross, **args,
         use_causal_mask=True)
    nobias = _mha_params(r, d, d, d, 3, 2, 2, d, False)
    case("MultiHeadAttention", "no-bias", query=x, value=normal(r, b, t, d), **nobias,
         num_heads=3, key_dim=2, use_bias=False)
    case("split_heads", "plain", x=normal(r, 2, 5, 6), heads=3)
    case("merge_heads", "plain", x=normal(r, 2, 3, 5, 2))
    case("causal_mask", "axis1", x=normal(r, 2, 4, 3))
    case("causal_mask", "axis-1", x=normal(r, 2, 4, 3), axis=-1)


# ---- conv
def _conv_cases() -> None:
    r = rng("conv")
    for padding in ("valid", "same", "causal", 2):
        for strides, dilation in ((1, 1), (2, 1), (1, 2), (2, 2), (3, 1)):
            for length in (9, 10):
                case("Conv1D", f"{padding}-s{strides}-d{dilation}-L{length}",
                     x=normal(r, 2, length, 3), kernel=normal(r, 3, 3, 4, scale=0.5),
                     bias=normal(r, 4), filters=4, kernel_size=3, strides=strides,
                     padding=padding, dilation_rate=dilation)
    case("Conv1D", "no-bias-relu", x=normal(r, 2, 8, 3), kernel=normal(r, 2, 3, 4),
         bias=None, filters=4, kernel_size=2, use_bias=False, activation="relu")
    for padding in ("valid", "same", 1):
        for strides, dilation in ((1, 1), ((2, 1), 1), (1, (1, 2)), (2, 2), ((1, 3), (2, 1))):
            case("Conv2D", f"{padding}-s{strides}-d{dilation}", x=normal(r, 2, 7, 8, 3),
                 kernel=normal(r, 3, 2, 3, 4, scale=0.5), bias=normal(r, 4), filters=4,
                 kernel_size=[3, 2], strides=strides, padding=padding, dilation_rate=dilation)
    case("Conv2D", "no-bias-tanh", x=normal(r, 1, 5, 5, 2), kernel=normal(r, 3, 3, 2, 3),
         bias=None, filters=3, kernel_size=3, use_bias=False, activation="tanh",
         padding="same")
    _grouped_conv_cases(r)
    _depthwise_cases(r)
    _transpose_cases(r)


def _grouped_conv_cases(r: np.random.Generator) -> None:
    for padding, strides, dilation in (("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2)):
        case("Conv1D", f"groups-{padding}-s{strides}-d{dilation}", x=normal(r, 2, 9, 6),
             kernel=normal(r, 3, 2, 9, scale=0.5), bias=normal(r, 9), filters=9, kernel_size=3,
             strides=strides, padding=padding, dilation_rate=dilation, groups=3)
    case("Conv2D", "groups-same-s2", x=normal(r, 2, 7, 6, 4),
         kernel=normal(r, 3, 3, 2, 6, scale=0.5), bias=normal(r, 6), filters=6,
         kernel_size=3, strides=2, padding="same", groups=2)
    case("Conv2D", "groups-depthwise-like", x=normal(r, 1, 5, 5, 3),
         kernel=normal(r, 2, 2, 1, 3), bias=None, filters=3, kernel_size=2, groups=3,
         use_bias=False)
    for padding, strides, dilation in (("valid", 1, 1), ("same", [1, 2, 2], 1), (1, 2, 1),
                                       ("same", 2, 2)):
        case("Conv3D", f"{padding}-s{strides}-d{dilation}", x=normal(r, 2, 5, 6, 7, 2),
             kernel=normal(r, 2, 3, 2, 2, 4, scale=0.5), bias=normal(r, 4), filters=4,
             kernel_size=[2, 3, 2], strides=strides, padding=padding, dilation_rate=dilation)
    case("Conv3D", "groups-relu", x=normal(r, 1, 4, 4, 4, 4), kernel=normal(r, 3, 3, 3, 2, 2),
         bias=normal(r, 2), filters=2, kernel_size=3, groups=2, padding="same",
         activation="relu")


def _depthwise_cases(r: np.random.Generator) -> None:
    for padding, strides, dilation in (("valid", 1, 1), ("same", 2, 1), ("same", 1, 2),
                                       ("valid", 2, 2), (1, 1, 1)):
        for m in (1, 2):
            label = f"{padding}-s{strides}-d{dilation}-m{m}"
            case("DepthwiseConv1D", label, x=normal(r, 2, 9, 3),
                 depthwise_kernel=normal(r, 3, 3, m), bias=normal(r, 3 * m), kernel_size=3,
                 strides=strides, padding=padding, dilation_rate=dilation, depth_multiplier=m)
            case("DepthwiseConv2D", label, x=normal(r, 2, 7, 8, 3),
                 depthwise_kernel=normal(r, 3, 2, 3, m), bias=normal(r, 3 * m),
                 kernel_size=[3, 2], strides=strides, padding=padding,
                 dilation_rate=dilation, depth_multiplier=m)
            case("SeparableConv1D", label, x=normal(r, 2, 9, 3),
                 depthwise_kernel=normal(r, 3, 3, m), pointwise_kernel=normal(r, 1, 3 * m, 4),
                 bias=normal(r, 4), filters=4, kernel_size=3, strides=strides, padding=padding,
                 dilation_rate=dilation, depth_multiplier=m)
            case("SeparableConv2D", label, x=normal(r, 2, 7, 8, 3),
                 depthwise_kernel=normal(r, 3, 2, 3, m),
                 pointwise_kernel=normal(r, 1, 1, 3 * m, 4), bias=normal(r, 4), filters=4,
                 kernel_size=[3, 2], strides=strides, padding=padding,
                 dilation_rate=dilation, depth_multiplier=m)
    case("DepthwiseConv2D", "no-bias-tanh", x=normal(r, 1, 5, 5, 2),
         depthwise_kernel=normal(r, 3, 3, 2, 1), bias=None, kernel_size=3, use_bias=False,
         activation="tanh")
    case("SeparableConv2D", "no-bias-relu", x=normal(r, 1, 5, 5, 2),
         depthwise_kernel=normal(r, 3, 3, 2, 1), pointwise_kernel=normal(r, 1, 1, 2, 3),
         bias=None, filters=3, kernel_size=3, use_bias=False, activation="relu")


def _transpose_cases(r: np.random.Generator) -> None:
    for padding in ("valid", "same"):
        for kernel, strides, out_pad, dilation in ((3, 1, None, 1), (3, 2, None, 1),
                                                   (3, 2, 1, 1), (2, 3, None, 1),
                                                   (4, 2, 0, 1), (1, 3, 2, 1), (3, 1, None, 2),
                                                   (2, 3, 2, 1)):
            label = f"{padding}-k{kernel}-s{strides}-op{out_pad}-d{dilation}"
            case("Conv1DTranspose", label, x=normal(r, 2, 5, 3),
                 kernel=normal(r, kernel, 4, 3, scale=0.5), bias=normal(r, 4), filters=4,
                 kernel_size=kernel, strides=strides, padding=padding, output_padding=out_pad,
                 dilation_rate=dilation)
        case("Conv2DTranspose", f"{padding}-mixed", x=normal(r, 2, 4, 5, 3),
             kernel=normal(r, 3, 2, 2, 3, scale=0.5), bias=normal(r, 2), filters=2,
             kernel_size=[3, 2], strides=[2, 3], padding=padding)
        case("Conv2DTranspose", f"{padding}-output-padding", x=normal(r, 2, 4, 5, 3),
             kernel=normal(r, 3, 3, 2, 3, scale=0.5), bias=normal(r, 2), filters=2,
             kernel_size=3, strides=2, padding=padding, output_padding=[1, 0])
        case("Conv2DTranspose", f"{padding}-dilated", x=normal(r, 1, 4, 4, 2),
             kernel=normal(r, 3, 3, 2, 2), bias=None, filters=2, kernel_size=3,
             padding=padding, dilation_rate=2, use_bias=False, activation="relu")
        case("Conv3DTranspose", f"{padding}-s2", x=normal(r, 1, 3, 4, 3, 2),
             kernel=normal(r, 3, 2, 3, 2, 2, scale=0.5), bias=normal(r, 2), filters=2,
             kernel_size=[3, 2, 3], strides=[2, 1, 2], padding=padding)
        case("Conv3DTranspose", f"{padding}-output-padding", x=normal(r, 1, 3, 3, 3, 2),
             kernel=normal(r, 2, 2, 2, 3, 2, scale=0.5), bias=normal(r, 3), filters=3,
             kernel_size=2, strides=2, padding=padding, output_padding=1)


# ---- pooling
def _pooling_cases() -> None:
    r = rng("pooling")
    for kind in ("Max", "Average"):
        for pool, strides in ((2, None), (3, 2), (3, 1), (2, 3)):
            for padding in ("valid", "same", 1):
                case(f"{kind}Pooling1D", f"p{pool}-s{strides}-{padding}", x=normal(r, 2, 9, 3),
                     pool_size=pool, strides=strides, padding=padding)
        for pool, strides in ((2, None), ([3, 2], [2, 1]), (3, 2)):
            for padding in ("valid", "same", 1):
                case(f"{kind}Pooling2D", f"p{pool}-s{strides}-{padding}",
                     x=normal(r, 2, 7, 6, 3), pool_size=pool, strides=strides, padding=padding)
        for pool, strides in ((2, None), ([3, 2, 2], [2, 1, 2]), (3, 2)):
            for padding in ("valid", "same", 1):
                case(f"{kind}Pooling3D", f"p{pool}-s{strides}-{padding}",
                     x=normal(r, 2, 5, 6, 4, 2), pool_size=pool, strides=strides,
                     padding=padding)
    case("MaxPooling1D", "pad-wider-than-pool", x=normal(r, 1, 4, 2), pool_size=2, strides=1,
         padding=3)
    case("AveragePooling1D", "pad-wider-than-pool", x=normal(r, 1, 4, 2), pool_size=2,
         strides=1, padding=3)
    x = normal(r, 3, 5, 4)
    mask = lengths_mask([5, 2, 0], 5)
    for name in ("GlobalAveragePooling1D", "GlobalMaxPooling1D"):
        case(name, "no-mask", x=x, mask=None)
        case(name, "mask", x=x, mask=mask)
        case(name, "mask-keepdims", x=x, mask=mask, keepdims=True)
    for name in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        case(name, "plain", x=normal(r, 2, 3, 4, 5))
        case(name, "keepdims", x=normal(r, 2, 3, 4, 5), keepdims=True)
    for name in ("GlobalAveragePooling3D", "GlobalMaxPooling3D"):
        case(name, "plain", x=normal(r, 2, 3, 4, 2, 5))
    for kind in ("Average", "Max"):
        for length, size in ((10, 3), (7, 7), (5, 8), (9, 1)):
            case(f"Adaptive{kind}Pooling1D", f"{length}-to-{size}", x=normal(r, 2, length, 3),
                 output_size=size)
        for shape, size in (((10, 7), [3, 4]), ((6, 6), 2), ((5, 9), [5, 2])):
            case(f"Adaptive{kind}Pooling2D", f"{shape}-to-{size}", x=normal(r, 2, *shape, 3),
                 output_size=size)
        case(f"Adaptive{kind}Pooling3D", "7x6x5-to-3x2x4", x=normal(r, 1, 7, 6, 5, 2),
             output_size=[3, 2, 4])


# ---- spatial
def _spatial_cases() -> None:
    r = rng("spatial")
    x1, x2, x3 = normal(r, 2, 7, 3), normal(r, 2, 6, 7, 2), normal(r, 1, 4, 5, 6, 2)
    for padding in (1, [2, 0]):
        case("ZeroPadding1D", f"{padding}", x=x1, padding=padding)
        case("Cropping1D", f"{padding}", x=x1, cropping=padding)
    case("ZeroPadding1D", "int-input", x=integers(r, 0, 9, 1, 3, 2), padding=[0, 2])
    for amounts in (1, [2, 0], [[1, 2], [0, 3]]):
        case("ZeroPadding2D", f"{amounts}", x=x2, padding=amounts)
        case("Cropping2D", f"{amounts}", x=x2, cropping=amounts)
    case("ZeroPadding2D", "int-input", x=integers(r, 0, 9, 1, 2, 2, 1), padding=[0, 1])
    for amounts in (1, [1, 0, 2], [[1, 0], [0, 2], [2, 1]]):
        case("ZeroPadding3D", f"{amounts}", x=x3, padding=amounts)
        case("Cropping3D", f"{amounts}", x=x3, cropping=amounts)
    case("UpSampling1D", "2", x=x1, size=2)
    case("UpSampling1D", "3-int", x=integers(r, 0, 9, 2, 3, 2), size=3)
    for size in (2, [3, 2], [1, 4]):
        for interpolation in ("nearest", "bilinear"):
            case("UpSampling2D", f"{size}-{interpolation}", x=x2, size=size,
                 interpolation=interpolation)
    image = uniform(r, 2, 11, 13, 3, high=255.0)
    for height, width in ((5, 6), (11, 13), (20, 17), (4, 20), (1, 1)):
        for interpolation in ("nearest", "bilinear"):
            for crop in (False, True):
                case("Resizing", f"{height}x{width}-{interpolation}-crop{crop}", x=image,
                     height=height, width=width, interpolation=interpolation,
                     crop_to_aspect_ratio=crop)
    case("Resizing", "int-input", x=integers(r, 0, 255, 1, 6, 6, 1), height=3, width=4)
    for height, width in ((5, 6), (11, 13), (10, 4), (12, 8), (20, 30)):
        case("CenterCrop", f"{height}x{width}", x=image, height=height, width=width)


# ---- preprocess
def _preprocess_cases() -> None:
    r = rng("preprocess")
    case("Rescaling", "float", x=normal(r, 2, 3, 4), scale=1 / 127.5, offset=-1.0)
    case("Rescaling", "int", x=integers(r, 0, 255, 2, 3, 4, dtype="int64"), scale=0.5)
    x = normal(r, 3, 4, 5, scale=3.0) + 2.0
    variance = uniform(r, 5, low=0.5, high=4.0)
    for invert in (False, True):
        case("Normalization", f"args-last-invert{invert}", x=x, adapt_mean=None,
             adapt_variance=None, axis=-1, mean=[float(v) for v in normal(r, 5)],
             variance=[float(v) for v in variance], invert=invert)
        case("Normalization", f"state-last-invert{invert}", x=x, adapt_mean=normal(r, 5),
             adapt_variance=variance, invert=invert)
    case("Normalization", "state-two-axes", x=x, adapt_mean=normal(r, 4, 5),
         adapt_variance=uniform(r, 4, 5, low=0.1, high=2.0), axis=[1, 2])
    case("Normalization", "scalar-args", x=x, adapt_mean=None, adapt_variance=None, axis=None,
         mean=2.0, variance=9.0)
    case("Normalization", "zero-variance", x=x, adapt_mean=normal(r, 5),
         adapt_variance=np.zeros(5, np.float32))
    case("Normalization", "axis1-int-input", x=integers(r, 0, 9, 3, 4, 5), adapt_mean=None,
         adapt_variance=None, axis=1, mean=[1.0, 2.0, 3.0, 4.0], variance=[1.0, 4.0, 0.25, 2.0])


# ---- norm
def _norm_cases() -> None:
    r = rng("norm")
    x = normal(r, 3, 4, 6, scale=2.0) + 1.5
    for center, scale in ((True, True), (False, True), (True, False), (False, False)):
        case("LayerNormalization", f"center{center}-scale{scale}", x=x,
             gamma=normal(r, 6) if scale else None, beta=normal(r, 6) if center else None,
             center=center, scale=scale)
    case("LayerNormalization", "epsilon", x=x, gamma=normal(r, 6), beta=normal(r, 6),
         epsilon=1e-5)
    for shape in ((8, 5), (2, 3, 4, 5)):
        for center, scale in ((True, True), (False, False)):
            for training in (False, True):
                stats = {"moving_mean": normal(r, 5),
                         "moving_variance": uniform(r, 5, low=0.5, high=2.0)}
                case("BatchNormalization", f"rank{len(shape)}-{center}-{training}",
                     variables=("moving_mean", "moving_variance"),
                     x=normal(r, *shape, scale=2.0) + 0.5,
                     gamma=normal(r, 5) if scale else None,
                     beta=normal(r, 5) if center else None, **stats, center=center,
                     scale=scale, momentum=0.9, epsilon=1e-3, training=training)
    case("BatchNormalization", "plain-tensors-inference", x=normal(r, 6, 5),
         gamma=normal(r, 5), beta=normal(r, 5), moving_mean=normal(r, 5),
         moving_variance=uniform(r, 5, low=0.5, high=2.0), training=False)


# ---- recurrent
def _lstm_cases() -> None:
    r = rng("recurrent")
    b, t, d, u = 4, 6, 3, 5
    x = normal(r, b, t, d)
    params = {"kernel": normal(r, d, 4 * u, scale=0.5),
              "recurrent_kernel": normal(r, u, 4 * u, scale=0.5), "bias": normal(r, 4 * u)}
    mask = lengths_mask([6, 4, 1, 0], t)
    mask[1, 0] = False  # a masked step before valid ones
    for masked in (False, True):
        for seq, state in ((False, False), (True, False), (False, True), (True, True)):
            for backwards in (False, True):
                case("LSTM", f"mask{masked}-seq{seq}-state{state}-back{backwards}", x=x,
                     mask=mask if masked else None, **params, units=u, return_sequences=seq,
                     return_state=state, go_backwards=backwards)
    case("LSTM", "no-bias", x=x, mask=None, kernel=params["kernel"],
         recurrent_kernel=params["recurrent_kernel"], bias=None, units=u, use_bias=False,
         return_sequences=True)
    case("LSTM", "no-bias-masked", x=x, mask=mask, kernel=params["kernel"],
         recurrent_kernel=params["recurrent_kernel"], bias=None, units=u, use_bias=False,
         return_sequences=True)
    # valid steps in several blocks (torch's step loop) and left padding (one block)
    holes = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1],
                      [0, 1, 0, 0, 0, 0]], bool)
    for seq, backwards in ((True, False), (False, False), (True, True)):
        case("LSTM", f"holes-seq{seq}-back{backwards}", x=x, mask=holes, **params, units=u,
             return_sequences=seq, go_backwards=backwards)
    long = normal(r, 2, 30, d)
    case("LSTM", "long", x=long, mask=None, **params, units=u, return_sequences=True)


def _recurrent_params(r: np.random.Generator, kind: str, d: int, u: int,
                      reset_after: bool = True, prefix: str = "") -> dict[str, np.ndarray]:
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind] * u
    bias_shape = (2, gates) if kind == "GRU" and reset_after else (gates,)
    return {f"{prefix}kernel": normal(r, d, gates, scale=0.5),
            f"{prefix}recurrent_kernel": normal(r, u, gates, scale=0.5),
            f"{prefix}bias": normal(r, *bias_shape, scale=0.5)}


def _gru_and_simple_rnn_cases() -> None:
    r = rng("recurrent-2")
    b, t, d, u = 4, 6, 3, 5
    x = normal(r, b, t, d)
    mask = lengths_mask([6, 4, 1, 0], t)
    mask[1, 0] = False  # a masked step before valid ones
    holes = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1],
                      [0, 1, 0, 0, 0, 0]], bool)
    h0 = normal(r, b, u)
    flags = ((False, False, False), (True, True, False), (True, False, True),
             (False, True, True))
    for reset_after in (True, False):
        params = _recurrent_params(r, "GRU", d, u, reset_after)
        for masked in (None, mask, holes):
            for seq, state, back in flags:
                label = {None: "plain", id(mask): "mask", id(holes): "holes"}.get(
                    None if masked is None else id(masked))
                case("GRU", f"reset{reset_after}-{label}-seq{seq}-state{state}-back{back}",
                     x=x, mask=masked, **params, units=u, reset_after=reset_after,
                     return_sequences=seq, return_state=state, go_backwards=back)
        case("GRU", f"reset{reset_after}-initial-state-mask", x=x, mask=mask,
             initial_state=h0, **params, units=u, reset_after=reset_after,
             return_sequences=True, return_state=True)
        case("GRU", f"reset{reset_after}-no-bias", x=x, mask=None,
             kernel=params["kernel"], recurrent_kernel=params["recurrent_kernel"], bias=None,
             units=u, use_bias=False, reset_after=reset_after, return_sequences=True)
    case("GRU", "initial-state-listed", x=x, mask=None, initial_state=h0[None],
         **_recurrent_params(r, "GRU", d, u), units=u, return_sequences=True)
    for activation in ("tanh", "relu", "sigmoid"):  # sigmoid has no fused torch kernel
        params = _recurrent_params(r, "SimpleRNN", d, u)
        for masked, label in ((None, "plain"), (mask, "mask"), (holes, "holes")):
            case("SimpleRNN", f"{activation}-{label}", x=x, mask=masked, **params, units=u,
                 activation=activation, return_sequences=True)
        case("SimpleRNN", f"{activation}-state-back", x=x, mask=mask, initial_state=h0,
             **params, units=u, activation=activation, return_state=True, go_backwards=True)
    case("SimpleRNN", "no-bias", x=x, mask=None, kernel=params["kernel"],
         recurrent_kernel=params["recurrent_kernel"], bias=None, units=u, use_bias=False)
    lstm = _recurrent_params(r, "LSTM", d, u)
    state = np.stack([h0, normal(r, b, u)])
    for masked, label in ((None, "plain"), (mask, "mask"), (holes, "holes")):
        case("LSTM", f"initial-state-{label}", x=x, mask=masked, initial_state=state, **lstm,
             units=u, return_sequences=True)
    case("LSTM", "initial-state-returned", x=x, mask=mask, initial_state=state, **lstm,
         units=u, return_state=True, go_backwards=True)


def _bidirectional_cases() -> None:
    r = rng("bidirectional")
    b, t, d, u = 3, 5, 4, 3
    x = normal(r, b, t, d)
    mask = lengths_mask([5, 3, 0], t)
    for kind in ("LSTM", "GRU", "SimpleRNN"):
        params = {**_recurrent_params(r, kind, d, u, prefix="forward_"),
                  **_recurrent_params(r, kind, d, u, prefix="backward_")}
        for merge in ("concat", "sum", "mul", "ave", "none"):
            case("Bidirectional", f"{kind}-{merge}-seq", x=x, mask=mask, **params, layer=kind,
                 units=u, merge_mode=merge, return_sequences=True)
        count = 2 if kind == "LSTM" else 1
        case("Bidirectional", f"{kind}-last-state", x=x, mask=None,
             initial_state=normal(r, 2 * count, b, u), **params, layer=kind, units=u,
             return_state=True)
        case("Bidirectional", f"{kind}-none-state-mask", x=x, mask=mask, **params, layer=kind,
             units=u, merge_mode="none", return_state=True)
    gru = {**_recurrent_params(r, "GRU", d, u, False, prefix="forward_"),
           **_recurrent_params(r, "GRU", d, u, False, prefix="backward_")}
    case("Bidirectional", "GRU-reset-before", x=x, mask=mask, **gru, layer="GRU", units=u,
         reset_after=False, return_sequences=True)


# ---- reduce
def _reduce_cases() -> None:
    r = rng("reduce")
    x = normal(r, 2, 3, 4, scale=2.0)
    where = booleans(r, 2, 3, 4)
    where[1, 2] = False  # a fully masked slice along the last axis
    for name in ("sum", "mean", "max", "min", "logsumexp"):
        for axis in (None, -1, 1, [0, 2], (0, 1, 2)):
            for keepdims in (False, True):
                case(name, f"axis{axis}-keep{keepdims}", x=x, where=None, axis=axis,
                     keepdims=keepdims)
                case(name, f"axis{axis}-keep{keepdims}-where", x=x, where=where, axis=axis,
                     keepdims=keepdims)
        case(name, "where-broadcast", x=x, where=booleans(r, 3, 1), axis=1)
        case(name, "empty-axes", x=x, where=where, axis=[])
        case(name, "int", x=integers(r, -9, 9, 3, 4), axis=-1)
        case(name, "int-where", x=integers(r, -9, 9, 3, 4), where=where[0], axis=[0, 1])
    case("sum", "int8-keeps-dtype", x=integers(r, -9, 9, 3, 4, dtype="int8"), axis=0)
    ties = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-1, -5, -1, -7]], np.int32)
    case("argmax", "int-ties", x=ties, axis=-1)
    case("argmax", "int-axis0", x=ties, axis=0)
    case("argmax", "float", x=normal(r, 2, 3, 4), axis=1)
    case("argmax", "signed-zeros", x=np.array([[-0.0, 0.0, -1.0]], np.float32), axis=-1)


# ---- shape
def _shape_cases() -> None:
    r = rng("shape")
    x = normal(r, 2, 3, 4)
    case("reshape", "explicit", x=x, shape=[6, 4])
    case("reshape", "inferred", x=x, shape=[-1, 2])
    case("reshape", "copy-dims", x=x, shape=[0, 0, 2, 2])
    case("reshape", "int", x=integers(r, 0, 9, 2, 6), shape=[3, 4])
    case("transpose", "default", x=x)
    case("transpose", "default-2d", x=normal(r, 3, 5))
    case("transpose", "perm", x=x, perm=[2, 0, 1])
    case("concat", "last", xs=[x, normal(r, 2, 3, 2), normal(r, 2, 3, 1)], axis=-1)
    case("concat", "first", xs=[x, normal(r, 1, 3, 4)], axis=0)
    case("concat", "bool", xs=[booleans(r, 2, 2), booleans(r, 2, 3)], axis=1)
    case("stack", "axis0", xs=[x, x * 2, x * 3], axis=0)
    case("stack", "axis-1", xs=[x, x * 2], axis=-1)
    case("stack", "scalars", xs=[np.float32(1.5), np.float32(-2.0)], axis=0)
    case("expand_dims", "axis1", x=x, axis=1)
    case("expand_dims", "axis-1", x=x, axis=-1)
    case("squeeze", "axis1", x=normal(r, 2, 1, 3), axis=1)
    case("squeeze", "axis-1", x=normal(r, 2, 3, 1), axis=-1)
    case("positions", "axis1", x=x)
    case("positions", "axis-1", x=x, axis=-1)
    case("zeros_like", "float", x=x)
    case("zeros_like", "int", x=integers(r, 1, 9, 3))
    case("ones_like", "float", x=x)
    case("ones_like", "bool", x=booleans(r, 3))
    full = ("slice", None, None, None)
    for label, items in (
            ("index", [("index", 0)]),
            ("negative-index", [full, ("index", -1)]),
            ("slices", [full, ("slice", 1, None, None)]),
            ("step", [("slice", None, None, 2), ("slice", 2, 0, None), ("slice", -3, None, 2)]),
            ("ellipsis-last", [("ellipsis",), ("index", -1)]),
            ("ellipsis-middle", [("index", 1), ("ellipsis",), ("slice", 1, 3, None)]),
            ("newaxis", [full, ("newaxis",), ("index", 2)]),
            ("out-of-range-slice", [("slice", 1, 10, None)])):
        case("getitem", label, x=x, items=items)
    case("mask_of", "raises", x=x)


# ---- random
def _random_cases() -> None:
    r = rng("random")
    case("sample_normal", "inference", mean=normal(r, 3, 4), logvar=normal(r, 3, 4),
         training=False)
    case("GaussianNoise", "inference", x=normal(r, 3, 4), stddev=0.5, training=False)
    case("GaussianDropout", "inference", x=normal(r, 3, 4), rate=0.5, training=False)
    for rank in (1, 2, 3):
        case(f"SpatialDropout{rank}D", "inference", x=normal(r, 2, *[3] * rank, 4), rate=0.5,
             training=False)
    _augment_cases(r)


def _augment_cases(r: np.random.Generator) -> None:
    image = uniform(r, 2, 6, 8, 3, high=255.0)
    geometry = {"fill_mode": "constant", "interpolation": "nearest", "fill_value": 1.0}
    case("RandomFlip", "inference", x=image, mode="horizontal")
    case("RandomRotation", "inference", x=image, factor=0.2)
    case("RandomZoom", "inference", x=image, height_factor=[-0.2, 0.3], **geometry)
    case("RandomTranslation", "inference-int", x=integers(r, 0, 255, 2, 6, 8, 3),
         height_factor=0.2, width_factor=0.1)
    for height, width in ((4, 4), (6, 8), (3, 7), (8, 10), (6, 5)):
        case("RandomCrop", f"inference-{height}x{width}", x=image, height=height, width=width)
    # not larger than the input in both axes: Keras' deterministic fallback in training too
    for height, width in ((6, 8), (6, 5), (7, 4), (8, 10)):
        case("RandomCrop", f"training-fallback-{height}x{width}", x=image, height=height,
             width=width, training=True)


# ---- losses and metrics
def _weighting(r: np.random.Generator, shape: tuple[int, ...],
               masked: bool = True) -> Iterable[tuple[str, dict[str, Any]]]:
    """Variants of the optional where / sample_weight / mask inputs."""
    mask = booleans(r, *shape, p=0.7)
    mask.reshape(-1)[0] = True
    yield "plain", {}
    yield "where", {"where": booleans(r, *shape, p=0.6)}
    yield "sample-weight", {"sample_weight": uniform(r, *shape, low=0.0, high=2.0)}
    # a total weight below 1: the reduction divides by it (floored at 1e-12 only)
    yield "tiny-weights", {"sample_weight": uniform(r, *shape, low=0.001, high=0.01)}
    if masked:
        yield "mask", {"mask": mask}
    yield "all", {"where": booleans(r, *shape, p=0.8), "mask": mask,
                  "sample_weight": uniform(r, *shape, low=0.0, high=2.0)}
    yield "all-invalid", {"where": np.zeros(shape, bool)}


def _loss_cases() -> None:
    r = rng("losses")
    b, t, c = 4, 3, 5
    logits = normal(r, b, c, scale=2.0)
    probs = uniform(r, b, c, low=0.05, high=1.0)  # normalised by the loss
    ids = integers(r, 0, c, b)
    for label, weights in _weighting(r, (b,)):
        for from_logits in (False, True):
            pred = logits if from_logits else probs
            case("crossentropy", f"ids-{label}-logits{from_logits}", pred=pred, target=ids,
                 from_logits=from_logits, **weights)
            soft = uniform(r, b, c)
            soft = (soft / soft.sum(-1, keepdims=True)).astype(np.float32)
            case("crossentropy", f"probs-{label}-logits{from_logits}", pred=pred,
                 target=soft, from_logits=from_logits, **weights)
    for from_logits in (False, True):
        pred = logits if from_logits else probs
        case("crossentropy", f"smoothing-logits{from_logits}", pred=pred, target=ids,
             from_logits=from_logits, label_smoothing=0.1)
        case("crossentropy", f"class-weight-logits{from_logits}", pred=pred,
             target=ids.astype("int64"), from_logits=from_logits,
             class_weight=[0.5, 1.0, 2.0, 0.0, 3.0], sample_weight=uniform(r, b))
        case("crossentropy", f"probs-smoothing-logits{from_logits}", pred=pred,
             target=np.eye(c, dtype=np.float32)[ids], from_logits=from_logits,
             label_smoothing=0.2)
    seq_logits = normal(r, b, t, c)
    seq_ids = integers(r, 0, c, b, t)
    seq_mask = lengths_mask([3, 2, 1, 0], t)
    padded_ids = np.where(seq_mask, seq_ids, -1).astype(np.int32)  # -1 where padded
    case("crossentropy", "sequence-mask-padding-ids", pred=seq_logits, target=padded_ids,
         mask=seq_mask, from_logits=True, class_weight=[1.0, 2.0, 0.5, 1.0, 1.0])
    case("crossentropy", "sequence-where-smoothing", pred=seq_logits, target=padded_ids,
         where=seq_mask, from_logits=True, label_smoothing=0.1)
    soft_seq = np.eye(c, dtype=np.float32)[seq_ids]
    case("crossentropy", "sequence-probs-batch-weight", pred=seq_logits, target=soft_seq,
         from_logits=True, sample_weight=uniform(r, b))
    case("crossentropy", "sequence-probs-mask", pred=seq_logits, target=soft_seq,
         from_logits=True, mask=seq_mask)
    case("crossentropy", "sequence-probs-plain", pred=seq_logits, target=soft_seq,
         from_logits=True)

    pred, target = normal(r, b, t, 2), normal(r, b, t, 2)
    for name, extra in (("mse", {}), ("mae", {}), ("huber", {"delta": 1.0}),
                        ("huber", {"delta": 0.3})):
        for label, weights in _weighting(r, (b, t)):
            case(name, f"{label}{extra}", pred=pred, target=target, **weights, **extra)
        case(name, f"batch-weight{extra}", pred=pred, target=target,
             sample_weight=uniform(r, b), **extra)
        case(name, f"batch-weight-step-mask{extra}", pred=pred, target=target,
             sample_weight=uniform(r, b, 1), mask=seq_mask, **extra)
    bce_logits = normal(r, b, t, scale=4.0)
    bce_logits[0, 0], bce_logits[0, 1] = 40.0, -40.0
    bce_target = booleans(r, b, t, p=0.5).astype(np.float32)
    for label, weights in _weighting(r, (b, t)):
        case("binary_crossentropy", f"logits-{label}", pred=bce_logits, target=bce_target,
             from_logits=True, **weights)
        case("binary_crossentropy", f"probs-{label}", pred=uniform(r, b, t),
             target=bce_target, **weights)
    case("binary_crossentropy", "probs-clipped", pred=np.array([[0.0, 1.0, 0.5]], np.float32),
         target=np.array([[1.0, 0.0, 0.3]], np.float32))
    case("binary_crossentropy", "per-batch", pred=uniform(r, b, t), target=bce_target,
         sample_weight=uniform(r, b))
    mean, logvar = normal(r, b, t, 3), normal(r, b, t, 3, scale=0.5)
    for label, weights in _weighting(r, (b, t)):
        case("kl_normal", label, pred=mean, target=logvar, **weights)
    case("kl_normal", "batch", pred=mean[:, 0], target=logvar[:, 0])
    case("l1", "plain", x=normal(r, 3, 4))
    case("l2", "plain", x=normal(r, 3, 4))


def _metric_cases() -> None:
    r = rng("metrics")
    b, t, c = 6, 3, 4
    logits = normal(r, b, c)
    logits[0, :2] = 1.0  # a tie: the first index wins
    ids = integers(r, 0, c, b)
    for label, weights in _weighting(r, (b,)):
        weights.pop("sample_weight", None)
        case("accuracy", f"ids-{label}", pred=logits, target=ids, **weights)
        case("accuracy", f"one-hot-{label}", pred=logits, target=np.eye(c, dtype=np.float32)[
            integers(r, 0, c, b)], **weights)
    seq = normal(r, b, t, c)
    case("accuracy", "sequence-mask", pred=seq, target=integers(r, 0, c, b, t, dtype="int64"),
         mask=lengths_mask([3, 3, 2, 1, 0, 2], t))
    pred = uniform(r, b, t)
    target = booleans(r, b, t, p=0.5).astype(np.float32)
    for label, weights in _weighting(r, (b, t)):
        weights.pop("sample_weight", None)
        case("binary_accuracy", label, pred=pred, target=target, **weights)
    case("binary_accuracy", "threshold", pred=pred, target=target, threshold=0.3)
    case("binary_accuracy", "per-sample-mask", pred=pred, target=target,
         mask=booleans(r, b, p=0.5))


def _numeric_cases() -> None:
    r = rng("numeric")
    a, b = normal(r, 2, 3, 4), normal(r, 2, 4, 5)
    for equation, operands in (("bij,bjk->bik", (a, b)), ("bij,bjk", (a, b)),
                               ("...j,...jk->...k", (a, normal(r, 3, 4, 5))), ("bij->ji", (a,)),
                               ("ii->i", (normal(r, 3, 3),)), ("i,j->ij", (normal(r, 3),
                                                                          normal(r, 4))),
                               ("bij, bkj -> bik", (a, normal(r, 2, 5, 4)))):
        case("einsum", equation.replace(" ", ""), operands=list(operands), subscripts=equation)
    case("einsum", "int", operands=[integers(r, -3, 4, 3, 4), integers(r, -3, 4, 4, 2)],
         subscripts="ij,jk->ik")
    x = normal(r, 3, 4, 5)
    for axis in (None, 0, 1, -1):
        for exclusive, reverse in ((False, False), (True, False), (False, True), (True, True)):
            case("cumsum", f"axis{axis}-exclusive{exclusive}-reverse{reverse}", x=x, axis=axis,
                 exclusive=exclusive, reverse=reverse)
    case("cumsum", "int", x=integers(r, -9, 9, 4, 6), axis=1, exclusive=True)
    for k in (-1, 0, 2):
        for name in ("tril", "triu"):
            case(name, f"k{k}", x=normal(r, 2, 4, 5), k=k)
    for name in ("tril", "triu"):
        case(name, "bool", x=booleans(r, 3, 3), k=0)
        case(name, "int-wide", x=integers(r, 1, 9, 3, 6), k=1)
    for label, kwargs in (("stop", dict(start=5)), ("float", dict(start=0.0, stop=1.0, step=0.1)),
                          ("negative-step", dict(start=3, stop=-4, step=-2)),
                          ("empty", dict(start=3, stop=1)),
                          ("float-to-int", dict(start=0.0, stop=5.0, step=1.5, dtype="int32")),
                          ("float64", dict(start=-1.0, stop=1.0, step=0.3, dtype="float64"))):
        case("arange", label, **kwargs)
    distinct = r.permutation(60).reshape(3, 4, 5).astype(np.float32) / 7
    case("top_k", "float", x=distinct, k=3)
    case("top_k", "all", x=distinct, k=5, sorted=False)
    case("top_k", "int-ties", x=np.array([[3, 1, 3, 2], [0, 0, 0, 0]], np.int32), k=2)


for _build in (_core_cases, _elementwise_cases, _attention_cases, _conv_cases,
               _pooling_cases, _spatial_cases, _preprocess_cases, _norm_cases, _lstm_cases,
               _gru_and_simple_rnn_cases, _bidirectional_cases, _reduce_cases, _shape_cases,
               _random_cases, _numeric_cases, _loss_cases, _metric_cases):
    _build()

# Ops whose implementation must raise (the compiler resolves them).
RAISES = {"mask_of": RuntimeError}


# ---------------------------------------------------------------- running a case
class Converter:
    """NumPy arrays to one backend's tensors; the same array object becomes the same tensor
    object (MultiHeadAttention tells self-attention by `value is query`)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.made: dict[int, Any] = {}

    def tensor(self, array: np.ndarray | np.generic) -> Any:
        key = id(array)
        if key not in self.made:
            if self.backend == "torch":
                self.made[key] = torch.from_numpy(np.array(array))
            else:
                self.made[key] = tf.convert_to_tensor(np.array(array))
        return self.made[key]

    def value(self, v: Any) -> Any:
        if isinstance(v, (np.ndarray, np.generic)):
            return self.tensor(v)
        if isinstance(v, list) and v and all(isinstance(e, (np.ndarray, np.generic))
                                             for e in v):
            return [self.value(e) for e in v]
        return v

    def arguments(self, c: Case) -> dict[str, Any]:
        """The case's keyword arguments for this backend. In Keras, a layer's parameters are
        keras.Variables, as a model passes them; the case's updatable state is a
        keras.Variable (torch: a tensor, updated in place)."""
        kwargs = {k: self.value(v) for k, v in c.kwargs.items()}
        if self.backend == "keras":
            params = {p.name for p in OPS[c.op].params if p.role == "weight"}
            for name, v in c.kwargs.items():
                if isinstance(v, np.ndarray) and (name in params or name in c.variables):
                    kwargs[name] = keras.Variable(np.array(v), trainable=name in params)
        return kwargs


def to_numpy(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return tuple(to_numpy(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    return np.asarray(value)


def run_case(c: Case, backend: str) -> tuple[Any, dict[str, np.ndarray]]:
    """The outputs as NumPy, and the values of the case's variables after the call."""
    kwargs = Converter(backend).arguments(c)
    out = BACKENDS[backend]()[c.op](**kwargs)
    return to_numpy(out), {name: to_numpy(kwargs[name]) for name in c.variables}


def assert_same(torch_value: Any, keras_value: Any, what: str) -> None:
    if isinstance(torch_value, tuple):
        assert isinstance(keras_value, tuple) and len(keras_value) == len(torch_value), \
            f"{what}: torch gives {len(torch_value)} outputs, keras {keras_value!r}"
        for i, (a, b) in enumerate(zip(torch_value, keras_value, strict=True)):
            assert_same(a, b, f"{what} output {i}")
        return
    assert not isinstance(keras_value, tuple), f"{what}: keras gives a tuple"
    a, b = np.asarray(torch_value), np.asarray(keras_value)
    assert a.shape == b.shape, f"{what}: shapes torch {a.shape} vs keras {b.shape}"
    assert a.dtype == b.dtype, f"{what}: dtypes torch {a.dtype} vs keras {b.dtype}"
    if a.dtype.kind in "biu":
        np.testing.assert_array_equal(b, a, err_msg=what)
    else:
        np.testing.assert_allclose(b.astype(np.float64), a.astype(np.float64), rtol=TOL,
                                   atol=TOL, err_msg=what)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_backends_agree(c: Case) -> None:
    if c.op in RAISES:
        for backend in BACKENDS:
            with pytest.raises(RAISES[c.op]):
                run_case(c, backend)
        return
    torch_out, torch_vars = run_case(c, "torch")
    keras_out, keras_vars = run_case(c, "keras")
    assert_same(torch_out, keras_out, c.id)
    for name in c.variables:
        assert_same(torch_vars[name], keras_vars[name], f"{c.id} {name} after the call")


def test_every_op_is_exercised() -> None:
    assert {c.op for c in CASES} == set(OPS)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


# ---------------------------------------------------------------- gradients
# Ops whose backward pass is more than the framework's own elementwise derivatives: loops,
# masks selected away, subsampled or padded windows, folded normalisation.
GRADIENT_OPS = ("LSTM", "MultiHeadAttention", "Conv1D", "Conv2D", "AveragePooling1D",
                "MaxPooling2D", "GlobalMaxPooling1D", "BatchNormalization",
                "LayerNormalization", "crossentropy", "binary_crossentropy", "huber",
                "kl_normal", "softmax", "l2_normalize", "stop_gradient", "logsumexp", "mean",
                "Embedding", "Dense", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                "DepthwiseConv2D", "SeparableConv1D", "AdaptiveAveragePooling2D",
                "AdaptiveMaxPooling1D", "UpSampling2D", "Resizing", "GRU", "SimpleRNN",
                "Bidirectional", "cumsum", "PReLU")
# recurrent variants picked by hand (each costs a trace of its loop's gradient)
RECURRENT_GRADIENT_VARIANTS = {
    "GRU": ("resetTrue-mask-seqTrue-stateTrue-backFalse",
            "resetFalse-holes-seqFalse-stateTrue-backTrue", "resetTrue-initial-state-mask"),
    "SimpleRNN": ("sigmoid-mask", "tanh-state-back"),
    "Bidirectional": ("LSTM-concat-seq", "GRU-none-state-mask"),
}
# the LSTM's variants are picked by hand (each costs a trace of its loop's gradient)
LSTM_GRADIENT_VARIANTS = ("maskFalse-seqTrue-stateTrue-backFalse",
                          "maskTrue-seqTrue-stateTrue-backTrue", "holes-seqTrue-backFalse",
                          "no-bias-masked")
GRADIENT_CASES_PER_OP = 4


def _differentiable(c: Case) -> list[str]:
    return [k for k, v in c.kwargs.items()
            if isinstance(v, np.ndarray) and v.dtype == np.float32 and k not in c.variables]


def _gradient_cases() -> list[Case]:
    """Up to GRADIENT_CASES_PER_OP variants of each op in GRADIENT_OPS, spread over its
    cases, among those with a float input."""
    picked = []
    for op in GRADIENT_OPS:
        cases = [c for c in CASES if c.op == op and _differentiable(c)]
        if op == "LSTM":
            cases = [c for c in cases if c.variant in LSTM_GRADIENT_VARIANTS]
        if op in RECURRENT_GRADIENT_VARIANTS:
            cases = [c for c in cases if c.variant in RECURRENT_GRADIENT_VARIANTS[op]]
        step = max(1, -(-len(cases) // GRADIENT_CASES_PER_OP))
        picked += cases[::step]
    return picked


GRADIENT_CASES = _gradient_cases()


def _cotangents(c: Case, outputs: Any) -> list[np.ndarray]:
    """Fixed random weights for each output: the gradient of sum(output * weight)."""
    r = rng("cotangent", c.id)
    outs = outputs if isinstance(outputs, tuple) else (outputs,)
    return [r.standard_normal(np.shape(o)).astype(np.float32) for o in outs]


def _torch_gradients(c: Case, weights: list[np.ndarray]) -> dict[str, np.ndarray]:
    kwargs = Converter("torch").arguments(c)
    leaves = {k: kwargs[k].requires_grad_() for k in _differentiable(c)}
    out = load_torch()[c.op](**kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    total = sum((o * torch.from_numpy(w)).sum() for o, w in zip(outs, weights, strict=True))
    if not total.requires_grad:  # stop_gradient: nothing flows back
        return {k: np.zeros_like(c.kwargs[k]) for k in leaves}
    grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return {k: np.zeros_like(c.kwargs[k]) if g is None else g.numpy()
            for k, g in zip(leaves, grads, strict=True)}


def _keras_gradients(c: Case, weights: list[np.ndarray]) -> dict[str, np.ndarray]:
    kwargs = Converter("keras").arguments(c)
    # a keras.Variable's gradient is its tf.Variable's (watched when read, being trainable)
    leaves = {k: kwargs[k].value if isinstance(kwargs[k], keras.Variable) else kwargs[k]
              for k in _differentiable(c)}
    with tf.GradientTape() as tape:
        tape.watch([v for v in leaves.values() if not isinstance(v, tf.Variable)])
        out = load_keras()[c.op](**kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        total = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(outs, weights, strict=True)])
    grads = tape.gradient(total, list(leaves.values()))
    return {k: np.zeros_like(c.kwargs[k]) if g is None else tf.convert_to_tensor(g).numpy()
            for k, g in zip(leaves, grads, strict=True)}


@pytest.mark.parametrize("c", GRADIENT_CASES, ids=lambda c: c.id)
def test_gradients_agree(c: Case) -> None:
    weights = _cotangents(c, run_case(c, "torch")[0])
    torch_grads = _torch_gradients(c, weights)
    keras_grads = _keras_gradients(c, weights)
    assert torch_grads.keys() == keras_grads.keys()
    for name, g in torch_grads.items():
        assert_same(g, keras_grads[name], f"{c.id} d/d{name}")


def test_every_gradient_op_is_exercised() -> None:
    assert {c.op for c in GRADIENT_CASES} == set(GRADIENT_OPS)


# ---------------------------------------------------------------- random ops in training
def _each_backend(op: str, **kwargs: np.ndarray | float | bool) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)  # the Keras ops draw from Keras' global generator
    return {backend: run_case(Case(op, "training", dict(kwargs)), backend)[0]
            for backend in BACKENDS}


@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_dropout_in_training(rate: float) -> None:
    x = uniform(rng("dropout"), 200, 50, low=1.0, high=2.0)
    for backend, y in _each_backend("Dropout", x=x, rate=rate, training=True).items():
        assert y.shape == x.shape and y.dtype == np.float32, backend
        dropped = y == 0
        # every kept value is scaled by 1 / (1 - rate)
        np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-6,
                                   err_msg=backend)
        assert abs(dropped.mean() - rate) < 0.02, (backend, dropped.mean())


def test_dropout_rate_one_drops_everything() -> None:
    x = uniform(rng("dropout-1"), 4, 5, low=1.0, high=2.0)
    for backend, y in _each_backend("Dropout", x=x, rate=1.0, training=True).items():
        np.testing.assert_array_equal(y, np.zeros_like(x), err_msg=backend)


def test_gaussian_noise_in_training() -> None:
    x = normal(rng("noise"), 200, 50)
    for backend, y in _each_backend("GaussianNoise", x=x, stddev=0.3, training=True).items():
        noise = (y.astype(np.float64) - x) / 0.3
        assert y.shape == x.shape and y.dtype == np.float32, backend
        assert abs(noise.mean()) < 0.03 and abs(noise.std() - 1) < 0.03, backend


def test_dropout_noise_shape_in_training() -> None:
    x = uniform(rng("dropout-noise"), 300, 4, 6, low=1.0, high=2.0)
    for backend, y in _each_backend("Dropout", x=x, rate=0.4, noise_shape=[-1, 1, 6],
                                    training=True).items():
        dropped = y == 0
        # one draw per (sample, channel), shared along axis 1
        assert (dropped == dropped[:, :1, :]).all(), backend
        np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.6, rtol=1e-6, err_msg=backend)
        assert abs(dropped.mean() - 0.4) < 0.04, (backend, dropped.mean())


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_spatial_dropout_drops_whole_channels(rank: int) -> None:
    x = uniform(rng("spatial-dropout", rank), 200, *[3] * rank, 5, low=1.0, high=2.0)
    for backend, y in _each_backend(f"SpatialDropout{rank}D", x=x, rate=0.3,
                                    training=True).items():
        dropped = (y == 0).reshape(200, -1, 5)
        assert (dropped == dropped[:, :1]).all(), backend
        assert abs(dropped.mean() - 0.3) < 0.04, (backend, dropped.mean())
        kept = ~(y == 0)
        np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6, err_msg=backend)


def test_gaussian_dropout_in_training() -> None:
    x = uniform(rng("gaussian-dropout"), 200, 50, low=1.0, high=2.0)
    for backend, y in _each_backend("GaussianDropout", x=x, rate=0.2, training=True).items():
        noise = (y.astype(np.float64) / x - 1) / np.sqrt(0.2 / 0.8)
        assert abs(noise.mean()) < 0.03 and abs(noise.std() - 1) < 0.03, backend


def _images(*key: Any) -> np.ndarray:
    return uniform(rng("images", *key), 64, 6, 8, 2, low=0.0, high=1.0)


def test_random_flip_in_training() -> None:
    x = _images("flip")
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        for backend, y in _each_backend("RandomFlip", x=x, mode=mode, training=True).items():
            options = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
            if mode == "horizontal":
                options = options[:2]
            elif mode == "vertical":
                options = [options[0], options[2]]
            which = np.array([[np.array_equal(y[b], o[b]) for o in options]
                              for b in range(len(x))])
            assert which.any(axis=1).all(), (backend, mode)  # every image is one of them
            counts = which.argmax(axis=1)
            # each option is drawn (64 images: a missing one has probability < 1e-7)
            assert set(counts) == set(range(len(options))), (backend, mode)


GEOMETRIC = {"RandomRotation": {"factor": 0.2}, "RandomZoom": {"height_factor": 0.3},
             "RandomTranslation": {"height_factor": 0.3, "width_factor": 0.3}}


@pytest.mark.parametrize("op", list(GEOMETRIC))
def test_geometric_augmentation_in_training(op: str) -> None:
    """Random per image, in the input's range (bilinear, reflected), deterministic for a
    seed, and the identity in inference."""
    x = _images(op)
    args = {**GEOMETRIC[op], "fill_mode": "reflect", "interpolation": "bilinear",
            "fill_value": 0.0}
    first = _each_backend(op, x=x, training=True, **args)
    again = _each_backend(op, x=x, training=True, **args)
    for backend, y in first.items():
        assert y.shape == x.shape and y.dtype == np.float32, backend
        assert (y >= -1e-6).all() and (y <= 1 + 1e-6).all(), backend
        changed = [not np.allclose(y[b], x[b]) for b in range(len(x))]
        assert sum(changed) > len(x) // 2, backend
        # per-image draws: no two images moved by the same transform
        deltas = {np.round(float(np.abs(y[b] - x[b]).mean()), 5) for b in range(len(x))}
        assert len(deltas) > len(x) // 2, backend
        np.testing.assert_array_equal(y, again[backend], err_msg=f"{backend}: seed")


def test_random_crop_in_training() -> None:
    x = np.arange(2 * 8 * 10 * 1, dtype=np.float32).reshape(2, 8, 10, 1)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        keras.utils.set_random_seed(seed)
        for backend in BACKENDS:
            y = run_case(Case("RandomCrop", "training", {"x": x, "height": 5, "width": 4,
                                                         "training": True}), backend)[0]
            top, left = divmod(int(y[0, 0, 0, 0]), 10)
            # one window for the whole batch, inside the image
            np.testing.assert_array_equal(y, x[:, top:top + 5, left:left + 4], err_msg=backend)
            seen.add((backend, top, left))
    for backend in BACKENDS:
        assert len({(top, left) for b, top, left in seen if b == backend}) > 3, backend


def test_sample_normal_in_training() -> None:
    r = rng("sample")
    mean, logvar = normal(r, 200, 50), normal(r, 200, 50, scale=0.5)
    results = _each_backend("sample_normal", mean=mean, logvar=logvar, training=True)
    for backend, z in results.items():
        eps = (z.astype(np.float64) - mean) / np.exp(logvar.astype(np.float64) / 2)
        assert z.shape == mean.shape and z.dtype == np.float32, backend
        assert abs(eps.mean()) < 0.03 and abs(eps.std() - 1) < 0.03, backend


def test_attention_dropout_in_training() -> None:
    """Dropout on the attention weights: training changes the output, inference does not."""
    r = rng("attention-dropout")
    x = normal(r, 2, 6, 4)
    params = _mha_params(r, 4, 4, 4, 2, 3, 3, 4, True)
    for backend in BACKENDS:
        fn = BACKENDS[backend]()["MultiHeadAttention"]
        convert = Converter(backend)
        kwargs = {k: convert.value(v) for k, v in params.items()}
        q = convert.tensor(x)
        common = {"query": q, "value": q, "num_heads": 2, "key_dim": 3, "dropout": 0.5}
        inference = to_numpy(fn(**kwargs, **common, training=False))
        training = to_numpy(fn(**kwargs, **common, training=True))
        assert training.shape == inference.shape == (2, 6, 4), backend
        assert not np.allclose(training, inference), backend


def _simple_rnn_in_training(backend: str, x: np.ndarray, initial_state: np.ndarray | None,
                            kernel: np.ndarray, recurrent_kernel: np.ndarray,
                            **rates: float) -> np.ndarray:
    convert = Converter(backend)
    out = BACKENDS[backend]()["SimpleRNN"](
        x=convert.tensor(x), mask=None,
        initial_state=None if initial_state is None else convert.tensor(initial_state),
        kernel=convert.tensor(kernel), recurrent_kernel=convert.tensor(recurrent_kernel),
        bias=None, units=kernel.shape[1], use_bias=False, activation="linear",
        return_sequences=True, training=True, **rates)
    return np.asarray(to_numpy(out))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_recurrent_input_dropout_is_one_mask_for_every_step(backend: str) -> None:
    """SimpleRNN(linear, kernel I, recurrent_kernel 0) outputs its dropped input: a step
    repeated over time must be dropped the same way at every step."""
    r = rng("rnn-dropout")
    x = np.repeat(uniform(r, 200, 1, 8, low=1.0, high=2.0), 4, axis=1)
    eye = np.eye(8, dtype=np.float32)
    out = _simple_rnn_in_training(backend, x, None, eye, np.zeros_like(eye), dropout=0.5)
    for step in range(1, 4):
        np.testing.assert_array_equal(out[:, step], out[:, 0])
    kept = out[:, 0] != 0
    np.testing.assert_allclose(out[:, 0][kept], 2 * x[:, 0][kept], rtol=1e-6)
    assert abs(kept.mean() - 0.5) < 0.03, kept.mean()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_recurrent_dropout_is_one_mask_for_every_step(backend: str) -> None:
    """SimpleRNN(linear, kernel 0, recurrent_kernel I) from h0 = 1 gives h_t = m^t: the
    fed-back state is dropped by one mask m in {0, 2} at every step."""
    eye = np.eye(8, dtype=np.float32)
    out = _simple_rnn_in_training(backend, np.zeros((200, 4, 8), np.float32),
                                  np.ones((200, 8), np.float32), np.zeros_like(eye), eye,
                                  recurrent_dropout=0.5)
    kept = out[:, 0] != 0
    for step in range(4):
        np.testing.assert_allclose(out[:, step], np.where(kept, 2.0 ** (step + 1), 0.0))
    assert abs(kept.mean() - 0.5) < 0.03, kept.mean()


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "Bidirectional"])
def test_recurrent_dropout_acts_in_training_only(kind: str) -> None:
    r = rng("rnn-dropout", kind)
    x = normal(r, 3, 5, 4)
    if kind == "Bidirectional":
        params: dict[str, Any] = {
            **_recurrent_params(r, "GRU", 4, 3, prefix="forward_"),
            **_recurrent_params(r, "GRU", 4, 3, prefix="backward_"), "layer": "GRU"}
    else:
        params = _recurrent_params(r, kind, 4, 3)
    for backend in BACKENDS:
        fn = BACKENDS[backend]()[kind]
        convert = Converter(backend)
        kwargs = {k: convert.value(v) for k, v in params.items()}
        common = {"x": convert.tensor(x), "units": 3, "return_sequences": True,
                  "dropout": 0.4, "recurrent_dropout": 0.4}
        inference = to_numpy(fn(**kwargs, **common, training=False))
        plain = to_numpy(fn(**kwargs, **{**common, "dropout": 0.0, "recurrent_dropout": 0.0},
                            training=True))
        training = to_numpy(fn(**kwargs, **common, training=True))
        np.testing.assert_allclose(plain, inference, rtol=1e-6, atol=1e-6, err_msg=backend)
        assert training.shape == inference.shape, backend
        assert not np.allclose(training, inference), backend


def test_batch_normalization_plain_tensors_are_not_updated_in_keras() -> None:
    """Moving statistics given as tensors (not Variables) cannot be assigned: skipped."""
    r = rng("bn-plain")
    moving_mean, moving_variance = normal(r, 3), uniform(r, 3, low=0.5, high=1.5)
    mean_t, var_t = tf.constant(moving_mean), tf.constant(moving_variance)
    fn = load_keras()["BatchNormalization"]
    y = fn(x=tf.constant(normal(r, 8, 3)), gamma=None, beta=None, moving_mean=mean_t,
           moving_variance=var_t, training=True)
    assert y.shape == (8, 3)
    np.testing.assert_array_equal(mean_t.numpy(), moving_mean)
    np.testing.assert_array_equal(var_t.numpy(), moving_variance)


# ---------------------------------------------------------------- traced (graph) calls
def test_keras_ops_trace_with_an_unknown_batch() -> None:
    """Inside a Keras model's traced call the batch axis is unknown: the shape-handling ops
    and the LSTM loop must work with dynamic sizes and agree with the eager result."""
    impls = load_keras()
    r = rng("traced")
    x = normal(r, 3, 5, 4)
    mask = lengths_mask([5, 2, 0], 5)
    lstm = {"kernel": normal(r, 4, 12), "recurrent_kernel": normal(r, 3, 12),
            "bias": normal(r, 12), "units": 3}
    mha = _mha_params(r, 4, 4, 4, 2, 2, 2, 4, True)
    conv_kernel = normal(r, 3, 4, 2)
    gru = _recurrent_params(r, "GRU", 4, 3, reset_after=False)
    bidirectional = {**_recurrent_params(r, "GRU", 4, 3, prefix="forward_"),
                     **_recurrent_params(r, "GRU", 4, 3, prefix="backward_")}

    def program(x: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, ...]:
        h = impls["LSTM"](x=x, mask=mask, return_sequences=True, training=False, **lstm)
        h2, state, _ = impls["LSTM"](x=x, mask=None, return_sequences=True, return_state=True,
                                     training=False, **lstm)
        g = impls["GRU"](x=x, mask=mask, units=3, reset_after=False, training=False, **gru)
        both = impls["Bidirectional"](x=x, mask=mask, layer="GRU", units=3,
                                      return_sequences=True, training=False, **bidirectional)
        a = impls["MultiHeadAttention"](query=x, value=x, mask=mask, num_heads=2, key_dim=2,
                                        use_causal_mask=True, training=False, **mha)
        flat = impls["Flatten"](x=a)
        shaped = impls["Reshape"](x=flat, target_shape=[-1, 2])
        heads = impls["merge_heads"](x=impls["split_heads"](x=a, heads=2))
        pos = impls["positions"](x=x)
        pooled = impls["GlobalAveragePooling1D"](x=x, mask=mask)
        conv = impls["Conv1D"](x=x, kernel=conv_kernel, filters=2, kernel_size=3,
                               padding="same", strides=2, dilation_rate=2, use_bias=False)
        return h, h2, state, g, both, a, shaped, heads, pos, pooled, conv

    spec = (tf.TensorSpec((None, 5, 4), tf.float32), tf.TensorSpec((None, 5), tf.bool))
    traced = tf.function(program, input_signature=spec, autograph=False)
    graph_out = traced(tf.constant(x), tf.constant(mask))
    eager_out = program(tf.constant(x), tf.constant(mask))
    for i, (g, e) in enumerate(zip(graph_out, eager_out, strict=True)):
        assert_same(g.numpy(), e.numpy(), f"output {i}")
    concrete = traced.get_concrete_function()
    assert concrete.structured_outputs[0].shape.as_list() == [None, 5, 3]
