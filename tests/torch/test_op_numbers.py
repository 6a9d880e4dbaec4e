"""The PyTorch op implementations against independent NumPy computations of each op's
canonical definition in the registry (graphdsl/ops/*.py).

Every op is covered: each test names the ops it checks with ``@covers``, and
``test_every_op_has_a_numeric_test`` compares that set with the registry. Inputs are
float64 wherever the implementation allows it, so the tolerance is tight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from graphdsl.backends.torch.ops import load_all
from graphdsl.ops import all_ops
from graphdsl.ops.specs import ACTIVATIONS, default_spec

pytestmark = pytest.mark.torch

IMPLS = load_all()
COVERED: set[str] = set()
TOL = 1e-5


def covers(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    COVERED.update(names)
    return lambda fn: fn


def run(name: str, **kwargs: Any) -> Any:
    """Call an implementation; random ops run in inference mode unless told otherwise."""
    from graphdsl.ops import get

    op = get(name)
    if op is not None and op.random:
        kwargs.setdefault("training", False)
    return IMPLS[name](**kwargs)


def T(a: Any, dtype: Any = None) -> torch.Tensor:  # noqa: N802 (reads as a constructor)
    return torch.from_numpy(np.array(a, dtype=dtype))


def close(actual: Any, expected: Any, tol: float = TOL) -> None:
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().numpy()
    np.testing.assert_allclose(actual, np.asarray(expected), rtol=tol, atol=tol)


def same(actual: torch.Tensor, expected: Any) -> None:
    """Exact equality of values, shapes and (NumPy-named) dtype."""
    expected = np.asarray(expected)
    got = actual.numpy()
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    np.testing.assert_array_equal(got, expected)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- NumPy references
ERF = np.vectorize(math.erf)


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


NP_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "gelu": lambda x: 0.5 * x * (1 + ERF(x / math.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                  * (x + 0.044715 * x ** 3))),
    "tanh": np.tanh,
    "sigmoid": np_sigmoid,
    "softmax": np_softmax,
    "silu": lambda x: x * np_sigmoid(x),
    "swish": lambda x: x * np_sigmoid(x),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "relu6": lambda x: np.clip(x, 0, 6),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772
                                                    * (np.exp(x) - 1)),
    "softsign": lambda x: x / (1 + np.abs(x)),
}


def test_reference_activations_match_the_spec_table() -> None:
    assert set(NP_ACTIVATIONS) == set(ACTIVATIONS)


# ---------------------------------------------------------------- activations
ACTIVATION_X = np.array([[-30.0, -3.0, -1.0, -0.5, 0.0], [0.3, 1.0, 2.5, 6.0, 30.0]])


@covers(*(n for n in ACTIVATIONS if n != "softmax"))
@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if n != "softmax"])
def test_activation_functions(name: str) -> None:
    close(run(name, x=T(ACTIVATION_X)), NP_ACTIVATIONS[name](ACTIVATION_X))


def test_exact_and_tanh_gelu_differ() -> None:
    # the two gelus must not be the same function (0.8413 vs 0.8412 at 1)
    x = T([1.0])
    assert abs(float(run("gelu", x=x)) - float(run("gelu_tanh", x=x))) > 1e-4
    close(run("gelu", x=x), [0.8413447460685429])


@covers("Activation")
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_layer(name: str) -> None:
    spec = default_spec("activation", name)
    close(run("Activation", x=T(ACTIVATION_X), activation=spec),
          NP_ACTIVATIONS[name](ACTIVATION_X))
    # the backend may pass the bare name too
    close(run("Activation", x=T(ACTIVATION_X), activation=name),
          NP_ACTIVATIONS[name](ACTIVATION_X))


# ---------------------------------------------------------------- elementwise
BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply,
    "maximum": np.maximum, "minimum": np.minimum, "equal": np.equal,
    "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
}


@covers(*BINARY)
@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("dtype", ["float64", "int32"])
def test_binary_broadcasting(name: str, dtype: str) -> None:
    x = np.array([[-3, 0, 2], [5, -1, 4]], dtype=dtype)
    y = np.array([2, 0, -1], dtype=dtype)
    same(run(name, x=T(x), y=T(y)), BINARY[name](x, y))
    same(run(name, x=T(y), y=T(x)), BINARY[name](y, x))


@covers("divide")
def test_divide() -> None:
    x = np.array([[7.0, -7.0], [1.0, 3.0]])
    y = np.array([2.0, -4.0])
    close(run("divide", x=T(x), y=T(y)), x / y)
    # integers give float32 (true division)
    out = run("divide", x=T([7, -7], "int32"), y=T([2, 2], "int32"))
    assert out.dtype == torch.float32
    close(out, [3.5, -3.5])


@covers("floor_divide", "mod")
@pytest.mark.parametrize("dtype", ["float64", "int32", "int64"])
def test_floor_divide_and_mod_follow_python(dtype: str) -> None:
    x = np.array([7, -7, 7, -7, 0, 5], dtype=dtype)
    y = np.array([2, 2, -2, -2, 3, 5], dtype=dtype)
    same(run("floor_divide", x=T(x), y=T(y)), np.floor_divide(x, y))
    same(run("mod", x=T(x), y=T(y)), np.mod(x, y))
    # the sign of y, like Python: -7 % 3 == 2 and 7 % -3 == -2
    same(run("mod", x=T([-7, 7], dtype), y=T([3, -3], dtype)), np.array([2, -2], dtype=dtype))
    xf = np.array([5.5, -5.5])
    close(run("mod", x=T(xf), y=T([2.0, 2.0])), [1.5, 0.5])


@covers("power")
def test_power() -> None:
    x = np.array([[1.5, 2.0], [0.5, 3.0]])
    y = np.array([2.0, -1.5])
    close(run("power", x=T(x), y=T(y)), x ** y)
    same(run("power", x=T([2, 3], "int32"), y=T([3, 2], "int32")),
         np.array([8, 9], dtype="int32"))


@covers("logical_and", "logical_or", "logical_not")
def test_logic() -> None:
    a = np.array([[True, False], [True, True]])
    b = np.array([True, False])
    same(run("logical_and", x=T(a), y=T(b)), a & b)
    same(run("logical_or", x=T(a), y=T(b)), a | b)
    same(run("logical_not", x=T(a)), ~a)


@covers("matmul")
@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                                    ((1, 3, 4), (2, 4, 5)), ((4,), (4, 2)), ((2, 3, 4), (4,)),
                                    ((4,), (4,))])
def test_matmul(shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    r = rng(1)
    x, y = r.normal(size=shapes[0]), r.normal(size=shapes[1])
    out = run("matmul", x=T(x), y=T(y))
    assert tuple(out.shape) == np.matmul(x, y).shape
    close(out, np.matmul(x, y))


UNARY = {
    "negative": np.negative, "abs": np.abs, "square": np.square, "exp": np.exp,
    "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "sign": np.sign,
    "erf": ERF, "sin": np.sin, "cos": np.cos,
}


@covers(*UNARY)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name: str) -> None:
    x = np.array([[0.25, 1.0, 2.0], [3.5, 0.01, 9.0]])
    if name in ("negative", "abs", "square", "sign", "erf", "sin", "cos"):
        x = x * np.array([1, -1, 1])
    close(run(name, x=T(x)), UNARY[name](x))


def test_integer_unary_keeps_the_dtype() -> None:
    x = np.array([-3, 0, 4], dtype="int32")
    for name in ("negative", "abs", "square", "sign"):
        same(run(name, x=T(x)), UNARY[name](x).astype("int32"))


@covers("stop_gradient")
def test_stop_gradient() -> None:
    x = T([1.0, -2.0, 3.0]).requires_grad_()
    y = run("stop_gradient", x=x)
    close(y, [1.0, -2.0, 3.0])
    (y * x).sum().backward()
    # d/dx (sg(x) * x) = sg(x): no gradient flows through the stopped factor
    close(x.grad, [1.0, -2.0, 3.0])


@covers("softmax", "log_softmax")
def test_softmax_and_log_softmax() -> None:
    x = rng(2).normal(size=(2, 3, 4)) * 3
    for axis in (-1, 0, 1):
        close(run("softmax", x=T(x), where=None, axis=axis), np_softmax(x, axis))
        close(run("log_softmax", x=T(x), axis=axis), np.log(np_softmax(x, axis)))
    # with `where`: masked entries become -1e9 first; a fully masked row is uniform
    where = np.array([[True, False, True, False], [False, False, False, False],
                      [True, True, True, True]])
    out = run("softmax", x=T(x), where=T(where), axis=-1).numpy()
    expected = np_softmax(np.where(where, x, -1e9), -1)
    close(out, expected)
    assert np.all(out[:, 0, [1, 3]] == 0.0)  # exactly zero weight
    close(out[:, 1], np.full((2, 4), 0.25))
    # the fill is -1e9, not merely "very negative": valid scores of -5e4 still win
    low = np.array([[-5e4, 0.0, -5e4 + 1.0]])
    close(run("softmax", x=T(low), where=T([[True, False, True]]), axis=-1),
          [[1 / (1 + np.e), 0.0, np.e / (1 + np.e)]])


@covers("where")
def test_where() -> None:
    c = np.array([[True, False, True]])
    x = np.array([[1.0], [2.0]])
    y = np.array([10.0, 20.0, 30.0])
    same(run("where", condition=T(c), x=T(x), y=T(y)), np.where(c, x, y))


@covers("cast")
def test_cast() -> None:
    same(run("cast", x=T([-1.7, -0.5, 0.5, 1.7, 2.0]), dtype="int32"),
         np.array([-1, 0, 0, 1, 2], dtype="int32"))
    same(run("cast", x=T([True, False]), dtype="float32"), np.array([1.0, 0.0], "float32"))
    same(run("cast", x=T([0, 3], "int32"), dtype="bool"), np.array([False, True]))
    for dtype in ("float16", "float64", "int8", "int16", "int64", "uint8"):
        same(run("cast", x=T([1.0, 2.0]), dtype=dtype), np.array([1, 2], dtype=dtype))
    assert run("cast", x=T([1.0]), dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        run("cast", x=T([1.0]), dtype="float128")


@covers("clip")
def test_clip() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.7, 3.0])
    close(run("clip", x=T(x), min=-1.0, max=0.5), np.minimum(np.maximum(x, -1.0), 0.5))
    same(run("clip", x=T([-5, 0, 9], "int32"), min=-1, max=4), np.array([-1, 0, 4], "int32"))


@covers("one_hot")
def test_one_hot() -> None:
    ids = np.array([[0, 2], [3, -1]], dtype="int32")  # 3 and -1 are out of range for 3 classes
    expected = np.zeros((2, 2, 3), dtype="float32")
    expected[0, 0, 0] = expected[0, 1, 2] = 1.0
    same(run("one_hot", x=T(ids), num_classes=3), expected)


@covers("l2_normalize")
def test_l2_normalize() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-8, 0.0]])
    out = run("l2_normalize", x=T(x), axis=-1, epsilon=1e-12)
    close(out, x / np.sqrt(np.maximum((x ** 2).sum(-1, keepdims=True), 1e-12)), 1e-9)
    close(out[0], [0.6, 0.8])
    close(run("l2_normalize", x=T(x), axis=0, epsilon=1e-12),
          x / np.sqrt(np.maximum((x ** 2).sum(0, keepdims=True), 1e-12)), 1e-9)


@covers("constant")
def test_constant() -> None:
    same(run("constant", value=[[1, 2], [3, 4]], dtype="int32", shape=[2, 2]),
         np.array([[1, 2], [3, 4]], dtype="int32"))
    same(run("constant", value=0.5, dtype="float32", shape=[]), np.array(0.5, "float32"))
    same(run("constant", value=[True, False], dtype="bool", shape=[2]), np.array([True, False]))


# ---------------------------------------------------------------- reductions
REDUCE_X = np.array([[[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], [[0.5, 7.0, -1.0], [2.0, 2.0, 8.0]]])
REDUCE_WHERE = np.array([[[True, False, True], [False, False, False]],
                         [[True, True, True], [False, True, False]]])
AXES: list[Any] = [None, 0, -1, [0, 2], [1]]


def np_reduce(name: str, x: np.ndarray, where: np.ndarray | None, axis: Any,
              keepdims: bool) -> np.ndarray:
    ax = tuple(axis) if isinstance(axis, list) else axis
    m = np.ones_like(x, dtype=bool) if where is None else np.broadcast_to(where, x.shape)
    if name == "sum":
        return np.sum(np.where(m, x, 0), axis=ax, keepdims=keepdims)
    if name == "mean":
        total = np.sum(np.where(m, x, 0), axis=ax, keepdims=keepdims)
        return total / np.maximum(np.sum(m, axis=ax, keepdims=keepdims), 1)
    if name == "max":
        return np.max(np.where(m, x, -np.inf), axis=ax, keepdims=keepdims)
    if name == "min":
        return np.min(np.where(m, x, np.inf), axis=ax, keepdims=keepdims)
    e = np.where(m, np.exp(x), 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(e, axis=ax, keepdims=keepdims))


@covers("sum", "mean", "max", "min", "logsumexp")
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "logsumexp"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_reductions(name: str, axis: Any, keepdims: bool, masked: bool) -> None:
    where = REDUCE_WHERE if masked else None
    out = run(name, x=T(REDUCE_X), where=T(where) if masked else None, axis=axis,
              keepdims=keepdims)
    expected = np_reduce(name, REDUCE_X, where, axis, keepdims)
    assert tuple(out.shape) == np.shape(expected)
    close(out, expected)


def test_reductions_with_a_broadcast_mask_and_integers() -> None:
    x = np.arange(12, dtype="int32").reshape(3, 4)
    where = np.array([True, False, True, False])  # broadcast along the rows
    same(run("sum", x=T(x), where=T(where), axis=-1, keepdims=False),
         np.where(where, x, 0).sum(-1).astype("int32"))
    same(run("max", x=T(x), where=T(where), axis=None, keepdims=False), np.array(10, "int32"))
    same(run("min", x=T(x), where=T(where), axis=0, keepdims=False),
         np.array([0, np.iinfo("int32").max, 2, np.iinfo("int32").max], "int32"))
    out = run("mean", x=T(x), where=T(where), axis=1, keepdims=False)
    assert out.dtype == torch.float32
    close(out, [1.0, 5.0, 9.0])


@covers("argmax")
def test_argmax() -> None:
    x = np.array([[1.0, 3.0, 3.0], [-1.0, -2.0, -1.0]])
    same(run("argmax", x=T(x), axis=-1), np.array([1, 0], dtype="int32"))  # first maximum
    same(run("argmax", x=T(x), axis=0), np.argmax(x, axis=0).astype("int32"))


# ---------------------------------------------------------------- shapes
@covers("reshape", "Reshape", "Flatten")
def test_reshapes() -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    same(run("reshape", x=T(x), shape=[0, -1]), x.reshape(2, 12))
    same(run("reshape", x=T(x), shape=[4, 0, 2]), x.reshape(4, 3, 2))
    same(run("reshape", x=T(x), shape=[-1]), x.reshape(-1))
    same(run("Reshape", x=T(x), target_shape=[4, -1]), x.reshape(2, 4, 3))
    same(run("Reshape", x=T(x), target_shape=[0, 2, 2]), x.reshape(2, 3, 2, 2))
    same(run("Flatten", x=T(x)), x.reshape(2, 12))
    same(run("Flatten", x=T(x[:, :, 0])), x[:, :, 0].reshape(2, 3))


@covers("transpose")
def test_transpose() -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    same(run("transpose", x=T(x), perm=None), np.swapaxes(x, -1, -2))
    same(run("transpose", x=T(x), perm=[2, 0, 1]), np.transpose(x, [2, 0, 1]))


@covers("concat", "stack")
def test_concat_and_stack() -> None:
    a, b = np.arange(6.0).reshape(2, 3), -np.arange(6.0).reshape(2, 3)
    c = np.ones((2, 1))
    same(run("concat", xs=[T(a), T(b), T(c)], axis=-1), np.concatenate([a, b, c], axis=-1))
    same(run("concat", xs=[T(a), T(b)], axis=0), np.concatenate([a, b], axis=0))
    for axis in (0, 1, 2, -1):
        same(run("stack", xs=[T(a), T(b)], axis=axis), np.stack([a, b], axis=axis))


@covers("expand_dims", "squeeze")
def test_expand_and_squeeze() -> None:
    x = np.arange(6.0).reshape(2, 3)
    for axis in (0, 1, 2, -1):
        same(run("expand_dims", x=T(x), axis=axis), np.expand_dims(x, axis))
    y = x.reshape(2, 1, 3)
    same(run("squeeze", x=T(y), axis=1), np.squeeze(y, 1))
    with pytest.raises(ValueError, match="cannot squeeze"):
        run("squeeze", x=T(y), axis=0)


@covers("positions", "zeros_like", "ones_like")
def test_positions_and_likes() -> None:
    x = np.zeros((2, 5, 3), dtype="float32")
    same(run("positions", x=T(x), axis=1), np.arange(5, dtype="int32"))
    same(run("positions", x=T(x), axis=-1), np.arange(3, dtype="int32"))
    ids = np.array([[4, 5]], dtype="int32")
    same(run("zeros_like", x=T(ids)), np.zeros_like(ids))
    same(run("ones_like", x=T(x)), np.ones_like(x))


@covers("mask_of")
def test_mask_of_is_resolved_by_the_compiler() -> None:
    with pytest.raises(RuntimeError, match="compile time"):
        run("mask_of", x=T([1.0]))


GETITEM_CASES: list[tuple[list[tuple[Any, ...]], Any]] = [
    ([("index", 0)], np.s_[0]),
    ([("slice", None, None, None), ("index", -1)], np.s_[:, -1]),
    ([("ellipsis",), ("slice", 1, None, None)], np.s_[..., 1:]),
    ([("slice", None, None, None), ("slice", 1, -1, 2), ("index", 2)], np.s_[:, 1:-1:2, 2]),
    ([("newaxis",), ("index", 1), ("ellipsis",), ("newaxis",)], np.s_[None, 1, ..., None]),
    ([("slice", -1, None, None), ("ellipsis",), ("slice", None, 2, None)], np.s_[-1:, ..., :2]),
    ([("slice", None, None, 3)], np.s_[::3]),
]


@covers("getitem")
@pytest.mark.parametrize("items,index", GETITEM_CASES, ids=[str(i) for i, _ in GETITEM_CASES])
def test_getitem(items: list[tuple[Any, ...]], index: Any) -> None:
    x = np.arange(3 * 5 * 4.0).reshape(3, 5, 4)
    same(run("getitem", x=T(x), items=items), x[index])


# ---------------------------------------------------------------- core layers
@covers("Dense")
@pytest.mark.parametrize("activation", ["linear", "relu", "softmax", "gelu"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense(activation: str, use_bias: bool) -> None:
    r = rng(3)
    x, kernel, bias = r.normal(size=(2, 3, 4)), r.normal(size=(4, 5)), r.normal(size=5)
    out = run("Dense", x=T(x), kernel=T(kernel), bias=T(bias) if use_bias else None, units=5,
              activation=default_spec("activation", activation), use_bias=use_bias)
    expected = x @ kernel + (bias if use_bias else 0)
    close(out, NP_ACTIVATIONS[activation](expected))


@covers("Embedding")
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_embedding(dtype: str) -> None:
    table = rng(4).normal(size=(6, 3))
    ids = np.array([[0, 5, 2], [2, 2, 1]], dtype=dtype)
    out = run("Embedding", ids=T(ids), embeddings=T(table), input_dim=6, output_dim=3,
              mask_zero=True)
    same(out, table[ids])
    with pytest.raises(IndexError):
        run("Embedding", ids=T([6], dtype), embeddings=T(table), input_dim=6, output_dim=3,
            mask_zero=False)


@covers("Dropout")
def test_dropout() -> None:
    x = torch.ones(200, 500, dtype=torch.float64)
    same(run("Dropout", x=x, rate=0.3, training=False), np.ones((200, 500)))
    torch.manual_seed(0)
    out = run("Dropout", x=x, rate=0.3, training=True).numpy()
    kept = out != 0
    assert set(np.unique(out)) <= {0.0, 1 / 0.7}
    assert abs(kept.mean() - 0.7) < 0.01  # 100 000 draws: the std is 0.0014
    same(run("Dropout", x=x[:2, :2], rate=0.0, training=True), np.ones((2, 2)))


# ---------------------------------------------------------------- convolution
def np_pads(length: int, k: int, s: int, d: int, padding: Any) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        out = -(-length // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - length, 0)
        return (total // 2, total - total // 2)
    if padding == "causal":
        return ((k - 1) * d, 0)
    return (padding, padding)


def np_conv1d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, s: int, padding: Any,
              d: int) -> np.ndarray:
    b, length, _ = x.shape
    k, _, filters = kernel.shape
    lo, hi = np_pads(length, k, s, d, padding)
    xp = np.pad(x, ((0, 0), (lo, hi), (0, 0)))
    out_len = (length + lo + hi - (k - 1) * d - 1) // s + 1
    y = np.zeros((b, out_len, filters))
    for t in range(out_len):
        for j in range(k):
            y[:, t] += xp[:, t * s + j * d] @ kernel[j]
    return y + (bias if bias is not None else 0)


def np_conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None,
              s: tuple[int, int], padding: Any, d: tuple[int, int]) -> np.ndarray:
    b, h, w, _ = x.shape
    kh, kw, _, filters = kernel.shape
    (top, bottom), (left, right) = (np_pads(h, kh, s[0], d[0], padding),
                                    np_pads(w, kw, s[1], d[1], padding))
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (h + top + bottom - (kh - 1) * d[0] - 1) // s[0] + 1
    ow = (w + left + right - (kw - 1) * d[1] - 1) // s[1] + 1
    y = np.zeros((b, oh, ow, filters))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for c in range(kw):
                    y[:, i, j] += xp[:, i * s[0] + a * d[0], j * s[1] + c * d[1]] @ kernel[a, c]
    return y + (bias if bias is not None else 0)


def test_same_padding_is_tensorflows() -> None:
    # TensorFlow: out = ceil(L / s); the odd cell goes after (right / bottom)
    assert np_pads(6, 3, 2, 1, "same") == (0, 1)
    assert np_pads(5, 3, 2, 1, "same") == (1, 1)
    assert np_pads(7, 4, 1, 1, "same") == (1, 2)
    assert np_pads(7, 3, 1, 2, "same") == (2, 2)
    assert np_pads(5, 3, 1, 2, "causal") == (4, 0)


CONV1D_CASES = [(p, s, d) for p in ("valid", "same", "causal", 2) for s in (1, 2)
                for d in (1, 2)]


@covers("Conv1D")
@pytest.mark.parametrize("padding,strides,dilation", CONV1D_CASES, ids=str)
@pytest.mark.parametrize("length", [7, 8])
def test_conv1d(padding: Any, strides: int, dilation: int, length: int) -> None:
    r = rng(5)
    x, kernel, bias = r.normal(size=(2, length, 3)), r.normal(size=(3, 3, 4)), r.normal(size=4)
    out = run("Conv1D", x=T(x), kernel=T(kernel), bias=T(bias), filters=4, kernel_size=3,
              strides=strides, padding=padding, dilation_rate=dilation, activation="linear",
              use_bias=True)
    expected = np_conv1d(x, kernel, bias, strides, padding, dilation)
    if padding in ("same", "causal"):
        assert expected.shape[1] == -(-length // strides)
    assert tuple(out.shape) == expected.shape
    close(out, expected)


def test_conv1d_causal_output_ignores_the_future() -> None:
    r = rng(6)
    x, kernel = r.normal(size=(1, 6, 2)), r.normal(size=(3, 2, 2))
    base = run("Conv1D", x=T(x), kernel=T(kernel), bias=None, filters=2, kernel_size=3,
               padding="causal", dilation_rate=2, activation="linear", use_bias=False)
    x2 = x.copy()
    x2[:, 4:] += 100.0
    changed = run("Conv1D", x=T(x2), kernel=T(kernel), bias=None, filters=2, kernel_size=3,
                  padding="causal", dilation_rate=2, activation="linear", use_bias=False)
    close(base[:, :4], changed[:, :4].numpy())


CONV2D_CASES = [("valid", (1, 1), (1, 1)), ("valid", (2, 1), (1, 2)), ("same", (1, 1), (1, 1)),
                ("same", (2, 2), (1, 1)), ("same", (1, 2), (2, 1)), (1, (1, 1), (1, 1)),
                (1, (2, 2), (1, 1))]


@covers("Conv2D")
@pytest.mark.parametrize("padding,strides,dilation", CONV2D_CASES, ids=str)
def test_conv2d(padding: Any, strides: tuple[int, int], dilation: tuple[int, int]) -> None:
    r = rng(7)
    x, kernel, bias = r.normal(size=(2, 6, 5, 3)), r.normal(size=(3, 2, 3, 4)), r.normal(size=4)
    out = run("Conv2D", x=T(x), kernel=T(kernel), bias=T(bias), filters=4, kernel_size=[3, 2],
              strides=list(strides), padding=padding, dilation_rate=list(dilation),
              activation=default_spec("activation", "relu"), use_bias=True)
    expected = np.maximum(np_conv2d(x, kernel, bias, strides, padding, dilation), 0)
    assert tuple(out.shape) == expected.shape
    close(out, expected)


def np_pool(x: np.ndarray, kind: str, sizes: tuple[int, ...], strides: tuple[int, ...],
            padding: Any) -> np.ndarray:
    """Channels-last pooling over the real cells of each window (1-D or 2-D)."""
    spatial = x.shape[1:-1]
    pads = [np_pads(n, k, s, 1, padding) for n, k, s in zip(spatial, sizes, strides, strict=True)]
    outs = [(n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(spatial, pads, sizes, strides,
                                                                     strict=True)]
    y = np.zeros((x.shape[0], *outs, x.shape[-1]))
    for index in np.ndindex(*outs):
        window = []
        for axis, i in enumerate(index):
            start = i * strides[axis] - pads[axis][0]
            window.append(slice(max(start, 0), min(start + sizes[axis], spatial[axis])))
        cells = x[(slice(None), *window)].reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *index)] = cells.max(1) if kind == "max" else cells.mean(1)
    return y


POOL1D_CASES = [(2, None, "valid"), (3, 1, "valid"), (2, None, "same"), (3, 2, "same"),
                (3, 1, "same")]


@covers("MaxPooling1D", "AveragePooling1D")
@pytest.mark.parametrize("pool,strides,padding", POOL1D_CASES, ids=str)
@pytest.mark.parametrize("kind", ["max", "average"])
def test_pooling1d(pool: int, strides: int | None, padding: str, kind: str) -> None:
    x = rng(8).normal(size=(2, 7, 3)) - 5.0  # negative: a zero pad would win a max
    name = "MaxPooling1D" if kind == "max" else "AveragePooling1D"
    out = run(name, x=T(x), pool_size=pool, strides=strides, padding=padding)
    expected = np_pool(x, kind, (pool,), (strides or pool,), padding)
    assert tuple(out.shape) == expected.shape
    close(out, expected)


def test_average_pooling_same_ignores_padded_cells() -> None:
    x = np.array([[[1.0], [2.0], [3.0], [4.0], [5.0]]])
    out = run("AveragePooling1D", x=T(x), pool_size=2, strides=None, padding="same")
    close(out[0, :, 0], [1.5, 3.5, 5.0])  # last window: [5, pad] -> 5, not 2.5


POOL2D_CASES = [(2, None, "valid"), ([3, 2], [1, 2], "valid"), (2, None, "same"),
                ([3, 3], [2, 2], "same"), ([2, 3], 1, "same")]


@covers("MaxPooling2D", "AveragePooling2D")
@pytest.mark.parametrize("pool,strides,padding", POOL2D_CASES, ids=str)
@pytest.mark.parametrize("kind", ["max", "average"])
def test_pooling2d(pool: Any, strides: Any, padding: str, kind: str) -> None:
    x = rng(9).normal(size=(2, 5, 7, 3)) - 5.0
    name = "MaxPooling2D" if kind == "max" else "AveragePooling2D"
    out = run(name, x=T(x), pool_size=pool, strides=strides, padding=padding)

    def pair(v: Any) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else tuple(v)

    expected = np_pool(x, kind, pair(pool), pair(strides if strides is not None else pool),
                       padding)
    assert tuple(out.shape) == expected.shape
    close(out, expected)


@covers("GlobalAveragePooling1D", "GlobalMaxPooling1D")
def test_global_pooling1d_with_mask() -> None:
    x = rng(10).normal(size=(3, 4, 2))
    m = np.array([[True, True, False, False], [True, True, True, True],
                  [False, False, False, False]])
    close(run("GlobalAveragePooling1D", x=T(x), mask=None), x.mean(1))
    close(run("GlobalMaxPooling1D", x=T(x), mask=None), x.max(1))
    mf = m[..., None]
    close(run("GlobalAveragePooling1D", x=T(x), mask=T(m)),
          (x * mf).sum(1) / np.maximum(mf.sum(1), 1))
    out = run("GlobalMaxPooling1D", x=T(x), mask=T(m))
    close(out, np.where(mf, x, -1e9).max(1))
    close(out[2], [-1e9, -1e9])  # every step masked


@covers("GlobalAveragePooling2D", "GlobalMaxPooling2D")
def test_global_pooling2d() -> None:
    x = rng(11).normal(size=(2, 3, 4, 5))
    close(run("GlobalAveragePooling2D", x=T(x)), x.mean((1, 2)))
    close(run("GlobalMaxPooling2D", x=T(x)), x.max((1, 2)))


@covers("ZeroPadding2D")
def test_zero_padding2d() -> None:
    x = rng(12).normal(size=(2, 3, 4, 2))
    same(run("ZeroPadding2D", x=T(x), padding=1), np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
    same(run("ZeroPadding2D", x=T(x), padding=[2, 0]),
         np.pad(x, ((0, 0), (2, 2), (0, 0), (0, 0))))


# ---------------------------------------------------------------- normalisation
@covers("LayerNormalization")
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False),
                                          (False, False)])
def test_layer_normalization(center: bool, scale: bool) -> None:
    r = rng(13)
    x, gamma, beta = r.normal(size=(2, 3, 5)) * 4 + 1, r.normal(size=5), r.normal(size=5)
    out = run("LayerNormalization", x=T(x), gamma=T(gamma) if scale else None,
              beta=T(beta) if center else None, axis=-1, epsilon=1e-3, center=center,
              scale=scale)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased
    expected = (x - mean) / np.sqrt(var + 1e-3)
    close(out, expected * (gamma if scale else 1) + (beta if center else 0))


@covers("BatchNormalization")
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4), (2, 3, 3, 4)])
def test_batch_normalization(shape: tuple[int, ...]) -> None:
    r = rng(14)
    x = r.normal(size=shape) * 3 + 2
    gamma, beta = r.normal(size=4), r.normal(size=4)
    mm0, mv0 = r.normal(size=4), r.uniform(0.5, 2.0, size=4)
    moving_mean, moving_variance = T(mm0), T(mv0)
    args = dict(gamma=T(gamma), beta=T(beta), moving_mean=moving_mean,
                moving_variance=moving_variance, axis=-1, momentum=0.9, epsilon=1e-3,
                center=True, scale=True)
    axes = tuple(range(len(shape) - 1))
    mean, var = x.mean(axes), x.var(axes)  # NumPy's var is the biased one
    out = run("BatchNormalization", x=T(x), training=True, **args)
    close(out, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta)
    # the buffers passed in were updated in place, Keras' rule, biased variance
    close(moving_mean, 0.9 * mm0 + 0.1 * mean)
    close(moving_variance, 0.9 * mv0 + 0.1 * var)
    # inference uses the moving statistics and changes nothing
    mm1, mv1 = moving_mean.numpy().copy(), moving_variance.numpy().copy()
    out = run("BatchNormalization", x=T(x), training=False, **args)
    close(out, (x - mm1) / np.sqrt(mv1 + 1e-3) * gamma + beta)
    close(moving_mean, mm1)
    close(moving_variance, mv1)
    # without gamma and beta
    plain = run("BatchNormalization", x=T(x), training=False, **{
        **args, "gamma": None, "beta": None, "center": False, "scale": False})
    close(plain, (x - mm1) / np.sqrt(mv1 + 1e-3))


def test_batch_normalization_gradient_flows_through_batch_statistics() -> None:
    x = T(rng(15).normal(size=(5, 3))).requires_grad_()
    out = run("BatchNormalization", x=x, gamma=None, beta=None, moving_mean=torch.zeros(3,
              dtype=torch.float64), moving_variance=torch.ones(3, dtype=torch.float64),
              axis=-1, momentum=0.99, epsilon=1e-3, center=False, scale=False, training=True)
    out.sum().backward()
    # the normalised values of a channel sum to 0 whatever x is: the gradient is ~0
    assert x.grad is not None
    close(x.grad, np.zeros((5, 3)), 1e-6)


# ---------------------------------------------------------------- LSTM
def np_lstm(x: np.ndarray, mask: np.ndarray | None, kernel: np.ndarray, rec: np.ndarray,
            bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b, steps, _ = x.shape
    units = rec.shape[0]
    h, c = np.zeros((b, units)), np.zeros((b, units))
    outputs = []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ rec + (bias if bias is not None else 0)
        i = np_sigmoid(z[:, :units])
        f = np_sigmoid(z[:, units:2 * units])
        g = np.tanh(z[:, 2 * units:3 * units])
        o = np_sigmoid(z[:, 3 * units:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        keep = np.ones((b, 1), bool) if mask is None else mask[:, t:t + 1]
        c = np.where(keep, c_new, c)
        h = np.where(keep, h_new, h)
        outputs.append(h)
    return np.stack(outputs, 1), h, c


LSTM_MASKS = {
    "none": None,
    "right-padded": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool),
    "holes": np.array([[0, 1, 0, 1, 1], [1, 1, 1, 1, 0], [0, 0, 0, 0, 0]], bool),
}


@covers("LSTM")
@pytest.mark.parametrize("mask_name", list(LSTM_MASKS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
def test_lstm(mask_name: str, go_backwards: bool, use_bias: bool) -> None:
    r = rng(16)
    units = 4
    x = r.normal(size=(3, 5, 3))
    kernel, rec = r.normal(size=(3, 4 * units)) * 0.5, r.normal(size=(units, 4 * units)) * 0.5
    bias = r.normal(size=4 * units)
    mask = LSTM_MASKS[mask_name]
    args = dict(x=T(x), mask=T(mask) if mask is not None else None, kernel=T(kernel),
                recurrent_kernel=T(rec), bias=T(bias) if use_bias else None, units=units,
                go_backwards=go_backwards, unit_forget_bias=True, use_bias=use_bias)
    xs, ms = (x[:, ::-1], mask[:, ::-1] if mask is not None else None) if go_backwards else (x,
                                                                                            mask)
    seq, h, c = np_lstm(xs, ms, kernel, rec, bias if use_bias else None)
    out, h_out, c_out = run("LSTM", return_sequences=True, return_state=True, **args)
    close(out, seq)
    close(h_out, h)
    close(c_out, c)
    last = run("LSTM", return_sequences=False, return_state=False, **args)
    close(last, h)
    only_state = run("LSTM", return_sequences=False, return_state=True, **args)
    assert isinstance(only_state, tuple) and len(only_state) == 3
    close(only_state[0], h)


def np_recurrent(kind: str, x: np.ndarray, mask: np.ndarray | None, kernel: np.ndarray,
                 rec: np.ndarray, bias: np.ndarray | None, h0: np.ndarray | None = None,
                 reset_after: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """GRU (Keras' z, r, h) or SimpleRNN (tanh) by the registry's definition, step by step:
    (outputs, final h); a masked step keeps h and repeats the previous output (0 first)."""
    b, steps, _ = x.shape
    units = rec.shape[0]
    h = np.zeros((b, units)) if h0 is None else h0
    previous = np.zeros((b, units))
    outputs = []
    for t in range(steps):
        if kind == "SimpleRNN":
            h_new = np.tanh(x[:, t] @ kernel + h @ rec + (0 if bias is None else bias))
        else:
            bx = 0 if bias is None else (bias[0] if reset_after else bias)
            xz, xr, xh = np.split(x[:, t] @ kernel + bx, 3, axis=-1)
            if reset_after:
                inner = h @ rec + (0 if bias is None else bias[1])
                hz, hr, hh = np.split(inner, 3, axis=-1)
                z, r = np_sigmoid(xz + hz), np_sigmoid(xr + hr)
                candidate = np.tanh(xh + r * hh)
            else:
                z = np_sigmoid(xz + h @ rec[:, :units])
                r = np_sigmoid(xr + h @ rec[:, units:2 * units])
                candidate = np.tanh(xh + (r * h) @ rec[:, 2 * units:])
            h_new = z * h + (1 - z) * candidate
        keep = np.ones((b, 1), bool) if mask is None else mask[:, t:t + 1]
        h = np.where(keep, h_new, h)
        previous = np.where(keep, h_new, previous)
        outputs.append(previous)
    return np.stack(outputs, 1), h


@covers("GRU", "SimpleRNN")
@pytest.mark.parametrize("kind", ["GRU-reset_after", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("mask_name", list(LSTM_MASKS))
@pytest.mark.parametrize("initial", [False, True])
def test_gru_and_simple_rnn(kind: str, mask_name: str, initial: bool) -> None:
    kind, _, flag = kind.partition("-")
    reset_after = flag == "reset_after"
    r = rng(31)
    units = 4
    gates = (3 if kind == "GRU" else 1) * units
    x = r.normal(size=(3, 5, 3))
    kernel, rec = r.normal(size=(3, gates)) * 0.5, r.normal(size=(units, gates)) * 0.5
    bias = r.normal(size=(2, gates) if reset_after else (gates,))
    h0 = r.normal(size=(3, units)) if initial else None
    mask = LSTM_MASKS[mask_name]
    extra = {"reset_after": reset_after} if kind == "GRU" else {}
    for go_backwards in (False, True):
        xs, ms = (x[:, ::-1], mask[:, ::-1] if mask is not None else None) if go_backwards \
            else (x, mask)
        seq, h = np_recurrent(kind, xs, ms, kernel, rec, bias, h0, reset_after)
        out, h_out = run(kind, x=T(x), mask=T(mask) if mask is not None else None,
                         initial_state=T(h0) if initial else None, kernel=T(kernel),
                         recurrent_kernel=T(rec), bias=T(bias), units=units,
                         return_sequences=True, return_state=True, go_backwards=go_backwards,
                         **extra)
        close(out, seq)
        close(h_out, h)


@covers("Bidirectional")
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", "none"])
def test_bidirectional(merge_mode: str) -> None:
    r = rng(32)
    units = 3
    x = r.normal(size=(3, 5, 2))
    mask = LSTM_MASKS["right-padded"]
    weights = {f"{side}_{name}": r.normal(size=shape) * 0.5 for side in ("forward", "backward")
               for name, shape in (("kernel", (2, 3 * units)), ("recurrent_kernel",
                                                                (units, 3 * units)),
                                   ("bias", (2, 3 * units)))}
    forward, _ = np_recurrent("GRU", x, mask, *(weights[f"forward_{n}"] for n in
                                                ("kernel", "recurrent_kernel", "bias")))
    backward, _ = np_recurrent("GRU", x[:, ::-1], mask[:, ::-1],
                               *(weights[f"backward_{n}"] for n in
                                 ("kernel", "recurrent_kernel", "bias")))
    backward = backward[:, ::-1]
    forward, backward = forward * mask[..., None], backward * mask[..., None]  # Keras' zeros
    expected = {"concat": lambda: np.concatenate([forward, backward], -1),
                "sum": lambda: forward + backward, "mul": lambda: forward * backward,
                "ave": lambda: (forward + backward) / 2,
                "none": lambda: (forward, backward)}[merge_mode]()
    out = run("Bidirectional", x=T(x), mask=T(mask), layer="GRU", units=units,
              merge_mode=merge_mode, return_sequences=True,
              **{k: T(v) for k, v in weights.items()})
    if merge_mode == "none":
        close(out[0], expected[0])
        close(out[1], expected[1])
    else:
        close(out, expected)


def test_lstm_masked_steps_repeat_the_last_output() -> None:
    r = rng(17)
    x = r.normal(size=(1, 4, 2))
    mask = np.array([[False, True, False, True]])
    out = run("LSTM", x=T(x), mask=T(mask), kernel=T(r.normal(size=(2, 8))),
              recurrent_kernel=T(r.normal(size=(2, 8))), bias=T(r.normal(size=8)), units=2,
              return_sequences=True, return_state=False, go_backwards=False,
              unit_forget_bias=True, use_bias=True).numpy()
    close(out[0, 0], [0.0, 0.0])  # no valid step yet: the initial state
    close(out[0, 2], out[0, 1])
    assert not np.allclose(out[0, 3], out[0, 2])


def test_lstm_masked_and_fused_paths_agree_on_a_full_mask() -> None:
    r = rng(18)
    args = dict(x=T(r.normal(size=(2, 6, 3))), kernel=T(r.normal(size=(3, 12))),
                recurrent_kernel=T(r.normal(size=(3, 12))), bias=T(r.normal(size=12)), units=3,
                return_sequences=True, return_state=False, go_backwards=False,
                unit_forget_bias=True, use_bias=True)
    fused = run("LSTM", mask=None, **args)
    looped = run("LSTM", mask=torch.ones(2, 6, dtype=torch.bool), **args)
    close(fused, looped.numpy(), 1e-10)


def test_lstm_padded_masks_match_the_step_loop_with_gradients() -> None:
    # One valid block per row (right or left padding, empty and full rows) takes a fused
    # path unless the final c is asked for; both must give the same values and gradients.
    r = rng(30)
    mask = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0],
                     [1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0]], bool)
    x0 = r.normal(size=(5, 6, 3))
    weights0 = [r.normal(size=(3, 8)), r.normal(size=(2, 8)), r.normal(size=8)]
    cotangent = T(r.normal(size=(5, 6, 2)))
    for go_backwards in (False, True):
        results = []
        for return_state in (False, True):
            x = T(x0).requires_grad_()
            weights = [T(w).requires_grad_() for w in weights0]
            out = run("LSTM", x=x, mask=T(mask), kernel=weights[0], recurrent_kernel=weights[1],
                      bias=weights[2], units=2, return_sequences=True, return_state=return_state,
                      go_backwards=go_backwards, unit_forget_bias=True, use_bias=True)
            seq = out[0] if return_state else out
            (seq * cotangent).sum().backward()
            results.append([seq.detach().numpy()] + [t.grad.numpy() for t in (x, *weights)])
        xs, ms = (x0[:, ::-1], mask[:, ::-1]) if go_backwards else (x0, mask)
        close(results[0][0], np_lstm(xs, ms, *weights0)[0])
        for fast, loop in zip(*results, strict=True):
            close(fast, loop, 1e-10)


def test_lstm_gradients_reach_every_parameter() -> None:
    r = rng(19)
    params = [T(r.normal(size=s)).requires_grad_() for s in ((3, 8), (2, 8), (8,))]
    for mask in (None, T(np.array([[1, 1, 0], [1, 0, 0]], bool))):
        out = run("LSTM", x=T(r.normal(size=(2, 3, 3))), mask=mask, kernel=params[0],
                  recurrent_kernel=params[1], bias=params[2], units=2, return_sequences=True,
                  return_state=False, go_backwards=False, unit_forget_bias=True, use_bias=True)
        out.sum().backward()
        for p in params:
            assert p.grad is not None and torch.all(torch.isfinite(p.grad))
            assert float(p.grad.abs().sum()) > 0
            p.grad = None


# ---------------------------------------------------------------- attention
def np_mha(query: np.ndarray, value: np.ndarray, key: np.ndarray | None,
           attention_mask: np.ndarray | None, mask: np.ndarray | None,
           value_mask: np.ndarray | None, causal: bool, w: dict[str, np.ndarray],
           key_dim: int) -> tuple[np.ndarray, np.ndarray]:
    key = value if key is None else key
    q = np.einsum("btd,dhk->bhtk", query, w["query_kernel"]) + w["query_bias"][None, :, None]
    k = np.einsum("btd,dhk->bhtk", key, w["key_kernel"]) + w["key_bias"][None, :, None]
    v = np.einsum("btd,dhk->bhtk", value, w["value_kernel"]) + w["value_bias"][None, :, None]
    scores = np.einsum("bhik,bhjk->bhij", q, k) / math.sqrt(key_dim)
    b, tq, tv = query.shape[0], query.shape[1], value.shape[1]
    allowed = np.ones((b, tq, tv), bool)
    if attention_mask is not None:
        allowed &= attention_mask
    if causal:
        allowed &= np.arange(tv)[None, :] <= np.arange(tq)[:, None]
    if mask is not None:
        allowed &= mask[:, :, None]
    if value_mask is not None:
        allowed &= value_mask[:, None, :]
    weights = np_softmax(np.where(allowed[:, None], scores, -1e9), -1)
    o = np.einsum("bhij,bhjv->bhiv", weights, v)
    return np.einsum("bhiv,hvf->bif", o, w["output_kernel"]) + w["output_bias"], weights


def mha_weights(r: np.random.Generator, dq: int, dv: int, dk: int, heads: int, key_dim: int,
                value_dim: int, out: int) -> dict[str, np.ndarray]:
    return {
        "query_kernel": r.normal(size=(dq, heads, key_dim)),
        "query_bias": r.normal(size=(heads, key_dim)),
        "key_kernel": r.normal(size=(dk, heads, key_dim)),
        "key_bias": r.normal(size=(heads, key_dim)),
        "value_kernel": r.normal(size=(dv, heads, value_dim)),
        "value_bias": r.normal(size=(heads, value_dim)),
        "output_kernel": r.normal(size=(heads, value_dim, out)),
        "output_bias": r.normal(size=out),
    }


MHA_CASES = ["plain", "causal", "padding", "padding+causal", "attention_mask", "cross",
             "cross+causal", "fully-masked-rows"]


@covers("MultiHeadAttention")
@pytest.mark.parametrize("case", MHA_CASES)
def test_multi_head_attention(case: str) -> None:
    r = rng(20)
    b, tq, d, heads, key_dim = 2, 5, 6, 3, 4
    cross = case.startswith("cross")
    tv = 4 if cross else tq
    value_dim, out_dim = (3, 7) if cross else (key_dim, d)
    query = r.normal(size=(b, tq, d))
    value = r.normal(size=(b, tv, 5)) if cross else query
    key = r.normal(size=(b, tv, 2)) if cross else None
    w = mha_weights(r, d, value.shape[-1], (key if key is not None else value).shape[-1],
                    heads, key_dim, value_dim, out_dim)
    causal = "causal" in case
    attention_mask = mask = value_mask = None
    if "padding" in case:
        mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
        value_mask = mask
    if case == "attention_mask":
        attention_mask = r.uniform(size=(b, tq, tv)) > 0.4
        attention_mask[:, :, 0] = True
    if case == "fully-masked-rows":
        attention_mask = r.uniform(size=(b, tq, tv)) > 0.4
        attention_mask[0, 1] = False
        value_mask = np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)  # batch 1: nothing
    expected, weights = np_mha(query, value, key, attention_mask, mask, value_mask, causal, w,
                               key_dim)
    out = run("MultiHeadAttention", query=T(query), value=T(value),
              key=T(key) if key is not None else None,
              attention_mask=T(attention_mask) if attention_mask is not None else None,
              mask=T(mask) if mask is not None else None,
              value_mask=T(value_mask) if value_mask is not None else None,
              **{k: T(v) for k, v in w.items()}, num_heads=heads, key_dim=key_dim,
              value_dim=value_dim if cross else None, dropout=0.0, use_bias=True,
              output_shape=out_dim if cross else None, use_causal_mask=causal)
    assert tuple(out.shape) == (b, tq, out_dim)
    close(out, expected)
    if case == "padding+causal":
        # disallowed pairs have exactly zero weight
        assert np.all(weights[0, :, 2, 3:] == 0.0)
        assert np.all(weights[:, :, 1, 2:] == 0.0)


def test_attention_ignores_masked_values_exactly() -> None:
    r = rng(21)
    query = r.normal(size=(1, 4, 6))
    w = mha_weights(r, 6, 6, 6, 2, 3, 3, 6)
    value_mask = np.array([[True, True, False, False]])
    args = dict(key=None, attention_mask=None, mask=None, value_mask=T(value_mask),
                **{k: T(v) for k, v in w.items()}, num_heads=2, key_dim=3, value_dim=None,
                dropout=0.0, use_bias=True, output_shape=None, use_causal_mask=False)
    value = r.normal(size=(1, 4, 6))
    base = run("MultiHeadAttention", query=T(query), value=T(value), **args)
    value[:, 2:] = r.normal(size=(1, 2, 6)) * 100
    moved = run("MultiHeadAttention", query=T(query), value=T(value), **args)
    close(base, moved.numpy(), 1e-12)


def test_attention_without_bias_and_with_dropout() -> None:
    r = rng(22)
    query = r.normal(size=(2, 3, 4))
    w = mha_weights(r, 4, 4, 4, 2, 2, 2, 4)
    args = dict(query=T(query), value=T(query), key=None, attention_mask=None, mask=None,
                value_mask=None, num_heads=2, key_dim=2, value_dim=None, use_bias=False,
                output_shape=None, use_causal_mask=False)
    weights = {k: T(v) for k, v in w.items()}
    zero_bias = {**w, **{k: np.zeros_like(v) for k, v in w.items() if k.endswith("bias")}}
    expected, _ = np_mha(query, query, None, None, None, None, False, zero_bias, 2)
    close(run("MultiHeadAttention", **args, **weights, dropout=0.0), expected)
    close(run("MultiHeadAttention", **args, **weights, dropout=0.5, training=False), expected)
    torch.manual_seed(0)
    dropped = run("MultiHeadAttention", **args, **weights, dropout=0.5, training=True)
    assert not np.allclose(dropped.numpy(), expected)


@covers("split_heads", "merge_heads")
def test_split_and_merge_heads() -> None:
    x = np.arange(2 * 3 * 8.0).reshape(2, 3, 8)
    split = run("split_heads", x=T(x), heads=4)
    same(split, np.transpose(x.reshape(2, 3, 4, 2), (0, 2, 1, 3)))
    same(run("merge_heads", x=split), x)


@covers("causal_mask")
def test_causal_mask() -> None:
    x = np.zeros((2, 4, 3))
    same(run("causal_mask", x=T(x), axis=1), np.tril(np.ones((4, 4), bool)))
    same(run("causal_mask", x=T(x), axis=-1), np.tril(np.ones((3, 3), bool)))


def test_float32_paths_of_the_sequence_layers() -> None:
    # Models run in float32: the fused LSTM, its padded-mask path and SDPA attention with
    # masks must hold the float32 tolerance against the float64 NumPy references.
    r = rng(31)
    x = r.normal(size=(3, 5, 4)) * 0.5
    kernel, rec, bias = (r.normal(size=(4, 12)) * 0.3, r.normal(size=(3, 12)) * 0.3,
                         r.normal(size=12) * 0.3)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]], bool)
    for m in (None, mask):
        out = run("LSTM", x=T(x, "float32"), mask=T(m) if m is not None else None,
                  kernel=T(kernel, "float32"), recurrent_kernel=T(rec, "float32"),
                  bias=T(bias, "float32"), units=3, return_sequences=True, return_state=False,
                  go_backwards=False, unit_forget_bias=True, use_bias=True)
        assert out.dtype == torch.float32
        close(out, np_lstm(x.astype("float32").astype(float), m, kernel.astype("float32"),
                           rec.astype("float32"), bias.astype("float32"))[0])
    query = r.normal(size=(2, 5, 6)).astype("float32")
    w = {k: v.astype("float32") * 0.5 for k, v in mha_weights(r, 6, 6, 6, 2, 4, 4, 6).items()}
    pad = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], bool)
    for causal in (False, True):
        for m in (None, pad):
            expected, _ = np_mha(query.astype(float), query.astype(float), None, None, m, m,
                                 causal, {k: v.astype(float) for k, v in w.items()}, 4)
            out = run("MultiHeadAttention", query=T(query), value=T(query), key=None,
                      attention_mask=None, mask=T(m) if m is not None else None,
                      value_mask=T(m) if m is not None else None,
                      **{k: T(v) for k, v in w.items()}, num_heads=2, key_dim=4,
                      value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                      use_causal_mask=causal)
            assert out.dtype == torch.float32
            close(out, expected)


# ---------------------------------------------------------------- random
@covers("sample_normal")
def test_sample_normal() -> None:
    mean = np.array([[1.0, -2.0]] * 40000)
    logvar = np.array([[0.0, np.log(9.0)]] * 40000)
    same(run("sample_normal", mean=T(mean), logvar=T(logvar), training=False), mean)
    torch.manual_seed(0)
    z = run("sample_normal", mean=T(mean), logvar=T(logvar), training=True).numpy()
    close(z.mean(0), [1.0, -2.0], 0.05)  # std of the mean: 0.005 and 0.015
    close(z.std(0), [1.0, 3.0], 0.05)


@covers("GaussianNoise")
def test_gaussian_noise() -> None:
    x = np.full((200, 200), 2.0)
    same(run("GaussianNoise", x=T(x), stddev=0.5, training=False), x)
    torch.manual_seed(0)
    y = run("GaussianNoise", x=T(x), stddev=0.5, training=True).numpy()
    assert abs(y.mean() - 2.0) < 0.01
    assert abs(y.std() - 0.5) < 0.01


# ---------------------------------------------------------------- losses
def np_reduce_loss(losses: np.ndarray, weight: np.ndarray | None,
                   valid: np.ndarray | None) -> float:
    w = np.ones_like(losses) if weight is None else np.broadcast_to(weight, losses.shape)
    m = np.ones_like(losses) if valid is None else np.broadcast_to(valid, losses.shape)
    wm = w * m
    return float(np.where(wm != 0, losses * wm, 0).sum() / max(wm.sum(), 1e-12))


def np_log_probs(pred: np.ndarray, from_logits: bool) -> np.ndarray:
    if from_logits:
        return np.log(np_softmax(pred))
    p = pred / pred.sum(-1, keepdims=True)
    return np.log(np.clip(p, 1e-7, 1 - 1e-7))


CE_CASES = [(logits, smoothing, weighted) for logits in (True, False)
            for smoothing in (0.0, 0.2) for weighted in (False, True)]


@covers("crossentropy")
@pytest.mark.parametrize("from_logits,smoothing,weighted", CE_CASES, ids=str)
def test_crossentropy_with_class_ids(from_logits: bool, smoothing: float, weighted: bool) -> None:
    r = rng(23)
    b, t, classes = 3, 4, 5
    pred = r.normal(size=(b, t, classes))
    if not from_logits:
        pred = np.exp(pred) * 3  # unnormalised positive scores: the op normalises them
    target = r.integers(0, classes, size=(b, t)).astype("int32")
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    target[~mask] = -1  # padding ids must never be used as indices
    target[2, 3] = 99
    mask[2, 3] = False
    where = np.array([[True], [True], [False]])  # [B, 1]: drops the third sequence
    sample_weight = r.uniform(0.5, 2.0, size=(b, t)) if weighted else None
    class_weight = [1.0, 2.0, 0.5, 3.0, 1.5] if weighted else None
    out = run("crossentropy", pred=T(pred), target=T(target), where=T(where),
              sample_weight=T(sample_weight) if weighted else None, mask=T(mask),
              from_logits=from_logits, label_smoothing=smoothing, class_weight=class_weight)
    valid = mask & where
    safe = np.where(valid, target, 0)
    q = np.eye(classes)[safe] * (1 - smoothing) + smoothing / classes
    losses = -(q * np_log_probs(pred, from_logits)).sum(-1)
    w = np.ones((b, t))
    if weighted:
        assert sample_weight is not None
        w = sample_weight * np.asarray(class_weight)[safe]
    close(out, np_reduce_loss(losses, w, valid))


def test_crossentropy_unweighted_is_the_plain_mean() -> None:
    r = rng(24)
    pred = r.normal(size=(6, 4))
    target = r.integers(0, 4, size=6)
    out = run("crossentropy", pred=T(pred), target=T(target), where=None, sample_weight=None,
              mask=None, from_logits=True, label_smoothing=0.0, class_weight=None)
    close(out, -np.log(np_softmax(pred))[np.arange(6), target].mean())


def test_crossentropy_clips_probabilities() -> None:
    pred = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = run("crossentropy", pred=T(pred), target=T([1, 1]), where=None, sample_weight=None,
              mask=None, from_logits=False, label_smoothing=0.0, class_weight=None)
    close(out, (-np.log(1e-7) - np.log(1 - 1e-7)) / 2)


def test_crossentropy_masked_positions_change_nothing() -> None:
    r = rng(25)
    pred = T(r.normal(size=(2, 3, 4))).requires_grad_()
    mask = T(np.array([[1, 1, 0], [1, 0, 0]], bool))
    target = T(np.array([[0, 3, 7], [1, -5, 2]], dtype="int64"))
    out = run("crossentropy", pred=pred, target=target, where=None, sample_weight=None,
              mask=mask, from_logits=True, label_smoothing=0.0, class_weight=None)
    out.backward()
    assert pred.grad is not None
    assert torch.all(pred.grad[~mask] == 0)
    # all masked: 0 / 1e-12 = 0, no NaN
    none = run("crossentropy", pred=pred.detach(), target=target, where=None,
               sample_weight=None, mask=torch.zeros(2, 3, dtype=torch.bool), from_logits=True,
               label_smoothing=0.0, class_weight=None)
    assert float(none) == 0.0


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_crossentropy_with_probability_targets(from_logits: bool, smoothing: float) -> None:
    r = rng(26)
    b, t, classes = 3, 4, 5
    pred = r.normal(size=(b, t, classes))
    if not from_logits:
        pred = np_softmax(pred)
    target = np_softmax(r.normal(size=(b, t, classes)) * 2)
    where = np.array([True, False, True])  # per-sample shape [B]: average over T first
    sample_weight = np.array([1.0, 5.0, 0.25])
    out = run("crossentropy", pred=T(pred), target=T(target), where=T(where),
              sample_weight=T(sample_weight), mask=None, from_logits=from_logits,
              label_smoothing=smoothing, class_weight=None)
    q = target * (1 - smoothing) + smoothing / classes
    losses = -(q * np_log_probs(pred, from_logits)).sum(-1).mean(-1)
    close(out, np_reduce_loss(losses, sample_weight, where))


@covers("binary_crossentropy")
@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_crossentropy(from_logits: bool) -> None:
    r = rng(27)
    pred = r.normal(size=(4, 3)) * 3
    pred[0, 0], pred[1, 1] = 100.0, -100.0  # extreme logits stay finite
    if not from_logits:
        pred = np_sigmoid(pred)
        pred[2, 2] = 0.0
    target = (r.uniform(size=(4, 3)) > 0.5).astype(float)
    target[0, 0], target[1, 1] = 0.0, 1.0
    where = np.array([True, True, False, True])
    out = run("binary_crossentropy", pred=T(pred), target=T(target), where=T(where),
              sample_weight=None, mask=None, from_logits=from_logits)
    if from_logits:
        e = np.maximum(pred, 0) - pred * target + np.log1p(np.exp(-np.abs(pred)))
    else:
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        e = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    assert np.isfinite(float(out))
    close(out, np_reduce_loss(e.mean(-1), None, where))


@covers("mse", "mae", "huber")
@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
@pytest.mark.parametrize("weighting", ["none", "where", "sample_weight", "mask", "all",
                                       "column"])
def test_regression_losses(name: str, weighting: str) -> None:
    r = rng(28)
    pred, target = r.normal(size=(4, 3, 2)) * 2, r.normal(size=(4, 3, 2))
    d = pred - target
    e = {"mse": d ** 2, "mae": np.abs(d),
         "huber": np.where(np.abs(d) <= 0.7, 0.5 * d ** 2, 0.7 * (np.abs(d) - 0.35))}[name]
    where = sample_weight = mask = None
    if weighting in ("where", "all"):
        where = np.array([True, False, True, True])
    if weighting in ("sample_weight", "all"):
        sample_weight = np.array([0.5, 1.0, 2.0, 0.0])
    if weighting == "mask":
        mask = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], bool)  # per [B, T]
    if weighting == "all":
        mask = np.array([True, True, False, True])
    if weighting == "column":
        sample_weight = np.array([[1.0], [2.0], [0.0], [3.0]])  # [B, 1]
    rank = next((a.ndim for a in (where, sample_weight, mask) if a is not None), 1)
    losses = e.mean(axis=tuple(range(rank, e.ndim)))
    valid = None
    if where is not None or mask is not None:
        valid = (where if where is not None else True) & (mask if mask is not None else True)
    extra = {"delta": 0.7} if name == "huber" else {}
    out = run(name, pred=T(pred), target=T(target), where=T(where) if where is not None else None,
              sample_weight=T(sample_weight) if sample_weight is not None else None,
              mask=T(mask) if mask is not None else None, **extra)
    close(out, np_reduce_loss(losses, sample_weight, valid))


def test_unweighted_regression_loss_is_the_plain_mean() -> None:
    pred, target = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[0.0, 0.0], [0.0, 1.0]])
    out = run("mse", pred=T(pred), target=T(target), where=None, sample_weight=None, mask=None)
    close(out, ((pred - target) ** 2).mean())


@covers("kl_normal")
def test_kl_normal() -> None:
    r = rng(29)
    mean, logvar = r.normal(size=(4, 3)), r.normal(size=(4, 3))
    sample_weight = np.array([1.0, 0.5, 2.0, 1.0])
    out = run("kl_normal", pred=T(mean), target=T(logvar), where=None,
              sample_weight=T(sample_weight), mask=None)
    # closed form of KL(N(m, s^2) || N(0, 1)) = 0.5 (s^2 + m^2 - 1 - log s^2), summed
    kl = 0.5 * (np.exp(logvar) + mean ** 2 - 1 - logvar).sum(-1)
    close(out, (kl * sample_weight).sum() / sample_weight.sum())
    zero = run("kl_normal", pred=T(np.zeros((2, 3))), target=T(np.zeros((2, 3))), where=None,
               sample_weight=None, mask=None)
    assert float(zero) == 0.0


@covers("l1", "l2")
def test_penalties() -> None:
    x = np.array([[1.0, -2.0], [0.5, -0.25]])
    close(run("l1", x=T(x)), np.abs(x).sum())
    close(run("l2", x=T(x)), (x ** 2).sum())


# ---------------------------------------------------------------- metrics
@covers("accuracy")
def test_accuracy() -> None:
    pred = np.array([[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [[0.6, 0.4], [0.4, 0.6], [0.5, 0.1]]])
    ids = np.array([[1, 1, 1], [0, 0, 5]], dtype="int32")
    correct = pred.argmax(-1) == ids
    hits, count = run("accuracy", pred=T(pred), target=T(ids), where=None, mask=None)
    close(hits, correct.sum())
    close(count, 6)
    mask = np.array([[True, True, False], [True, True, False]])
    where = np.array([[True], [False]])
    hits, count = run("accuracy", pred=T(pred), target=T(ids), where=T(where), mask=T(mask))
    close(hits, (correct & mask & where).sum())
    close(count, (mask & where).sum())
    one_hot = np.eye(2)[np.clip(ids, 0, 1)]
    hits, count = run("accuracy", pred=T(pred), target=T(one_hot), where=None, mask=T(mask))
    close(hits, ((pred.argmax(-1) == one_hot.argmax(-1)) & mask).sum())
    close(count, mask.sum())


@covers("binary_accuracy")
def test_binary_accuracy() -> None:
    pred = np.array([[0.2, 0.7, 0.55], [0.9, 0.1, 0.5], [0.4, 0.6, 0.8]])
    target = np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    correct = (pred > 0.6) == (target > 0.5)
    hits, count = run("binary_accuracy", pred=T(pred), target=T(target), where=None, mask=None,
                      threshold=0.6)
    close(hits, correct.sum())
    close(count, 9)
    where = np.array([True, False, True])  # per-sample [B]: every element of a sample
    hits, count = run("binary_accuracy", pred=T(pred), target=T(target), where=T(where),
                      mask=None, threshold=0.6)
    close(hits, correct[where].sum())
    close(count, 6)


# ---------------------------------------------------------------- numeric and PReLU
@covers("PReLU")
def test_prelu() -> None:
    x = rng(33).normal(size=(2, 3, 4))
    alpha = rng(34).normal(size=(1, 4))  # shared over axis 1
    close(run("PReLU", x=T(x), alpha=T(alpha), shared_axes=[1]),
          np.where(x > 0, x, alpha * x))


@covers("einsum")
@pytest.mark.parametrize("equation", ["bij,bjk->bik", "bij,bjk", "...j,jk->...k", "ii->i",
                                      "ij->", "i,j"])
def test_einsum(equation: str) -> None:
    r = rng(35)
    shapes = {"bij,bjk->bik": [(2, 3, 4), (2, 4, 5)], "bij,bjk": [(2, 3, 4), (2, 4, 5)],
              "...j,jk->...k": [(2, 3, 4), (4, 5)], "ii->i": [(3, 3)], "ij->": [(3, 4)],
              "i,j": [(3,), (4,)]}[equation]
    operands = [r.normal(size=s) for s in shapes]
    close(run("einsum", operands=[T(o) for o in operands], subscripts=equation),
          np.einsum(equation, *operands))


@covers("cumsum")
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum(axis: int | None, exclusive: bool, reverse: bool) -> None:
    x = rng(36).integers(-9, 9, size=(3, 4)).astype("int32")
    flat = x.reshape(-1) if axis is None else x
    along = 0 if axis is None else axis
    data = np.flip(flat, along) if reverse else flat
    total = np.cumsum(data, axis=along) - (data if exclusive else 0)
    expected = (np.flip(total, along) if reverse else total).astype("int32")
    same(run("cumsum", x=T(x), axis=axis, exclusive=exclusive, reverse=reverse), expected)


@covers("tril", "triu")
@pytest.mark.parametrize("k", [-1, 0, 2])
def test_tril_triu(k: int) -> None:
    x = rng(37).normal(size=(2, 4, 5))
    close(run("tril", x=T(x), k=k), np.tril(x, k))
    close(run("triu", x=T(x), k=k), np.triu(x, k))


@covers("arange")
def test_arange() -> None:
    same(run("arange", start=5), np.arange(5, dtype="int32"))
    same(run("arange", start=3, stop=-4, step=-2), np.arange(3, -4, -2, dtype="int32"))
    same(run("arange", start=0.0, stop=1.0, step=0.1),
         np.arange(0.0, 1.0, 0.1).astype("float32"))
    same(run("arange", start=0.0, stop=5.0, step=1.5, dtype="int32"),
         np.array([0, 1, 3, 4], "int32"))  # 0, 1.5, 3, 4.5 truncated
    same(run("arange", start=2, stop=2), np.zeros((0,), "int32"))


@covers("top_k")
def test_top_k() -> None:
    x = np.array([[3, 1, 3, 2], [0, 5, 0, -1]], dtype="int32")
    values, indices = run("top_k", x=T(x), k=3)
    same(values, np.array([[3, 3, 2], [5, 0, 0]], "int32"))
    same(indices, np.array([[0, 2, 3], [1, 0, 2]], "int32"))  # ties: the lower index first


# ---------------------------------------------------------------- coverage of this file
def _covered_elsewhere() -> set[str]:
    """COVERED of test_op_numbers_images.py (loaded by path: with --import-mode=importlib
    the tests folder is not on sys.path)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("test_op_numbers_images.py")
    spec = importlib.util.spec_from_file_location("_graphdsl_op_numbers_images", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.COVERED)


def test_every_op_has_a_numeric_test() -> None:
    registry = {op.name for op in all_ops()}
    covered = COVERED | _covered_elsewhere()
    assert registry == covered, (f"ops without a numeric test: {sorted(registry - covered)}; "
                                 f"unknown names: {sorted(covered - registry)}")
