"""Elementwise arithmetic, comparisons, logic and activations, with NumPy broadcasting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

from . import impl
from .core import ACTIVATION_NAMES, activate

# graphdsl dtype names, which are Keras' own dtype names
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "bool")


def keras_dtype(name: str) -> str:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return name


def is_float(x: tf.Tensor) -> bool:
    return bool(x.dtype.is_floating)


Binary = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _register_binary(name: str, fn: Binary) -> None:
    def op(*, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return fn(x, y)

    op.__name__ = op.__qualname__ = name
    impl(name)(op)


def _true_divide(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    # integers divide to float32 (the registry's rule)
    x, y = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    if not is_float(x):
        x = ops.cast(x, "float32")
    if not is_float(y):
        y = ops.cast(y, "float32")
    return ops.true_divide(x, y)


def _floor_divide(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Python's (and NumPy's, and torch's) x // y. For floats it is computed from the exact
    remainder, so that x == (x // y) * y + x % y: 1.0 // 0.1 is 9.0 although 1.0 / 0.1
    rounds to 10.0 (TensorFlow's floordiv, floor(x / y), would give 10.0)."""
    x, y = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    if not (is_float(x) or is_float(y)):
        return ops.floor_divide(x, y)  # integers: TensorFlow's floordiv is Python's
    ratio = x / y
    remainder = tf.truncatemod(x, y)  # fmod: the exact remainder, with the sign of x
    quotient = (x - remainder) / y  # an integer up to rounding
    quotient = ops.where(ops.logical_and(remainder != 0, (y < 0) != (remainder < 0)),
                         quotient - 1, quotient)
    floor = ops.floor(quotient)
    floor = ops.where(quotient - floor > 0.5, floor + 1, floor)
    # a zero quotient takes the sign of x / y (finite here): ratio * 0 is that signed zero
    floor = ops.where(quotient == 0, ratio * 0.0, floor)
    return ops.where(y == 0, ratio, floor)  # division by zero: IEEE's x / y


def _matmul(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """numpy.matmul. ops.matmul computes integer products in float32 (inexact beyond 2**24),
    so integers multiply in their own dtype, with NumPy's promotion of 1-D operands."""
    x, y = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    if is_float(x) or is_float(y):
        return ops.matmul(x, y)
    x2 = x[None, :] if len(x.shape) == 1 else x
    y2 = y[:, None] if len(y.shape) == 1 else y
    # [..., n, k, 1] * [..., 1, k, m] summed over k: exact in the integer dtype
    out = ops.sum(ops.expand_dims(x2, -1) * ops.expand_dims(y2, -3), axis=-2)
    if len(x.shape) == 1:
        out = ops.squeeze(out, axis=-2)
    if len(y.shape) == 1:
        out = ops.squeeze(out, axis=-1)
    return out


_BINARY: dict[str, Binary] = {
    "add": ops.add,
    "subtract": ops.subtract,
    "multiply": ops.multiply,
    "divide": _true_divide,
    "floor_divide": _floor_divide,  # Python's //
    "mod": ops.mod,  # Python's %: fmod(x, y), plus y when the signs differ
    "power": ops.power,
    "maximum": ops.maximum,
    "minimum": ops.minimum,
    "equal": ops.equal,
    "not_equal": ops.not_equal,
    "less": ops.less,
    "less_equal": ops.less_equal,
    "greater": ops.greater,
    "greater_equal": ops.greater_equal,
    "logical_and": ops.logical_and,
    "logical_or": ops.logical_or,
    "matmul": _matmul,
}
for _name, _binary in _BINARY.items():
    _register_binary(_name, _binary)


def _register_unary(name: str, fn: Callable[[tf.Tensor], tf.Tensor]) -> None:
    def op(*, x: tf.Tensor) -> tf.Tensor:
        return fn(x)

    op.__name__ = op.__qualname__ = name
    impl(name)(op)


_UNARY: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "negative": ops.negative,
    "abs": ops.absolute,
    "square": lambda x: x * x,
    "exp": ops.exp,
    "log": ops.log,
    "sqrt": ops.sqrt,
    "rsqrt": ops.rsqrt,
    "sign": ops.sign,
    "erf": ops.erf,
    "sin": ops.sin,
    "cos": ops.cos,
    "logical_not": ops.logical_not,
    "stop_gradient": ops.stop_gradient,  # forward: x; backward: no gradient
}
for _name, _unary in _UNARY.items():
    _register_unary(_name, _unary)


def _activation_op(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    return lambda x: activate(x, name)


# Every activation but softmax is also a function of one tensor (softmax takes an axis).
for _name in ACTIVATION_NAMES:
    if _name != "softmax":
        _register_unary(_name, _activation_op(_name))

# What softmax puts at masked-out entries (the registry's canonical value).
SOFTMAX_MASKED_FILL = -1e9


def filled(x: tf.Tensor, where: tf.Tensor | None, fill: float | int) -> tf.Tensor:
    """x where the mask holds, ``fill`` (in x's dtype) elsewhere; x itself without a mask."""
    if where is None:
        return x
    return ops.where(where, x, ops.convert_to_tensor(fill, dtype=x.dtype))


@impl("softmax")
def softmax(*, x: tf.Tensor, where: tf.Tensor | None = None, axis: int = -1) -> tf.Tensor:
    return ops.softmax(filled(x, where, SOFTMAX_MASKED_FILL), axis=axis)


@impl("log_softmax")
def log_softmax(*, x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    return ops.log_softmax(x, axis=axis)


@impl("where")
def where(*, condition: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return ops.where(condition, x, y)


@impl("cast")
def cast(*, x: tf.Tensor, dtype: str) -> tf.Tensor:
    # bool -> 0/1; float -> int truncates toward zero (tf.cast's conversion)
    return ops.cast(x, keras_dtype(dtype))


@impl("clip")
def clip(*, x: tf.Tensor, min: Any, max: Any) -> tf.Tensor:  # noqa: A002 (registry names)
    # minimum(maximum(x, min), max) in the promoted dtype (integer x with float bounds
    # clips as floats), then back to x's dtype, as the registry's type rule says
    x = ops.convert_to_tensor(x)
    compute = x
    if not is_float(x) and (isinstance(min, float) or isinstance(max, float)):
        compute = ops.cast(x, "float32")
    low = ops.convert_to_tensor(min, dtype=compute.dtype)
    high = ops.convert_to_tensor(max, dtype=compute.dtype)
    return ops.cast(ops.minimum(ops.maximum(compute, low), high), x.dtype)


@impl("one_hot")
def one_hot(*, x: tf.Tensor, num_classes: int) -> tf.Tensor:
    # ids outside [0, num_classes) match no class and give all zeros
    x = ops.convert_to_tensor(x)
    classes = ops.arange(num_classes, dtype=x.dtype)
    return ops.cast(ops.equal(x[..., None], classes), "float32")


@impl("l2_normalize")
def l2_normalize(*, x: tf.Tensor, axis: int = -1, epsilon: float = 1e-12) -> tf.Tensor:
    squares = ops.sum(x * x, axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squares, epsilon))


@impl("constant")
def constant(*, value: Any, dtype: str, shape: Any) -> tf.Tensor:
    """The literal as a new tensor. The value goes through NumPy (float64 for floats) and is
    then cast, so floats given for an integer dtype truncate, as torch.tensor does."""
    return ops.reshape(ops.cast(np.asarray(value), keras_dtype(dtype)), tuple(shape))
