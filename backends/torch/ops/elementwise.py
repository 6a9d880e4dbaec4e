"""Elementwise arithmetic, comparisons, logic and activations, with NumPy broadcasting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import impl
from .core import ACTIVATION_NAMES, activate

# graphdsl dtype names -> torch dtypes
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


Binary = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _register_binary(name: str, fn: Binary) -> None:
    def op(*, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(x, y)

    op.__name__ = op.__qualname__ = name
    impl(name)(op)


def _true_divide(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # integers divide to float32 (the registry's rule), whatever torch's default dtype is
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if not y.is_floating_point():
        y = y.to(torch.float32)
    return torch.true_divide(x, y)


_BINARY: dict[str, Binary] = {
    "add": torch.add,
    "subtract": torch.sub,
    "multiply": torch.mul,
    "divide": _true_divide,
    "floor_divide": torch.floor_divide,  # floor(x / y)
    "mod": torch.remainder,  # the sign of y, like Python
    "power": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "equal": torch.eq,
    "not_equal": torch.ne,
    "less": torch.lt,
    "less_equal": torch.le,
    "greater": torch.gt,
    "greater_equal": torch.ge,
    "logical_and": torch.logical_and,
    "logical_or": torch.logical_or,
    "matmul": torch.matmul,
}
for _name, _binary in _BINARY.items():
    _register_binary(_name, _binary)


def _register_unary(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    def op(*, x: torch.Tensor) -> torch.Tensor:
        return fn(x)

    op.__name__ = op.__qualname__ = name
    impl(name)(op)


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "negative": torch.neg,
    "abs": torch.abs,
    "square": lambda x: x * x,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "sign": torch.sign,
    "erf": torch.erf,
    "sin": torch.sin,
    "cos": torch.cos,
    "logical_not": torch.logical_not,
    "stop_gradient": torch.Tensor.detach,  # forward: x; backward: no gradient
}
for _name, _unary in _UNARY.items():
    _register_unary(_name, _unary)


def _activation_op(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: activate(x, name)


# Every activation but softmax is also a function of one tensor (softmax takes an axis).
for _name in ACTIVATION_NAMES:
    if _name != "softmax":
        _register_unary(_name, _activation_op(_name))

# What softmax puts at masked-out entries (the registry's canonical value).
SOFTMAX_MASKED_FILL = -1e9


@impl("softmax")
def softmax(*, x: torch.Tensor, where: torch.Tensor | None = None,
            axis: int = -1) -> torch.Tensor:
    if where is not None:
        x = torch.where(where, x, torch.full((), SOFTMAX_MASKED_FILL, dtype=x.dtype,
                                             device=x.device))
    return torch.softmax(x, dim=axis)


@impl("log_softmax")
def log_softmax(*, x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    return torch.log_softmax(x, dim=axis)


@impl("where")
def where(*, condition: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.where(condition, x, y)


@impl("cast")
def cast(*, x: torch.Tensor, dtype: str) -> torch.Tensor:
    # bool -> 0/1; float -> int truncates toward zero (torch's conversion)
    return x.to(torch_dtype(dtype))


@impl("clip")
def clip(*, x: torch.Tensor, min: Any, max: Any) -> torch.Tensor:  # noqa: A002 (registry names)
    # the result keeps x's dtype, as the registry's type rule says
    return torch.clamp(x, min, max).to(x.dtype)


@impl("one_hot")
def one_hot(*, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    # ids outside [0, num_classes) match no class and give all zeros
    classes = torch.arange(num_classes, device=x.device)
    return (x.unsqueeze(-1) == classes).to(torch.float32)


@impl("l2_normalize")
def l2_normalize(*, x: torch.Tensor, axis: int = -1, epsilon: float = 1e-12) -> torch.Tensor:
    squares = (x * x).sum(dim=axis, keepdim=True)
    return x * torch.rsqrt(squares.clamp_min(epsilon))


@impl("constant")
def constant(*, value: Any, dtype: str, shape: Any) -> torch.Tensor:
    """The literal as a new tensor on the CPU; the caller moves it where it is used."""
    return torch.tensor(value, dtype=torch_dtype(dtype)).reshape(tuple(shape))
