"""Core layers: Dense, Embedding, Dropout, Activation, Flatten, Reshape.

Also home of :func:`activate`, the one implementation of the named activations
(graphdsl/ops/specs.py ACTIVATIONS) that every layer with an ``activation`` argument and
every activation-named function op uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from graphdsl.ops.arith import resolve_shape

from . import impl

# Keras' default negative slope for leaky_relu (specs.py says 0.2).
LEAKY_RELU_SLOPE = 0.2

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": F.relu,
    "gelu": F.gelu,  # exact: 0.5 x (1 + erf(x / sqrt(2)))
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "silu": F.silu,
    "swish": F.silu,
    "elu": F.elu,  # alpha 1: x if x > 0 else exp(x) - 1
    "softplus": F.softplus,
    "leaky_relu": lambda x: F.leaky_relu(x, LEAKY_RELU_SLOPE),
    "relu6": F.relu6,
    "hard_sigmoid": F.hardsigmoid,  # relu6(x + 3) / 6
    "hard_silu": F.hardswish,  # x relu6(x + 3) / 6
    "hard_swish": F.hardswish,
    "mish": F.mish,
    "selu": F.selu,
    "softsign": F.softsign,
}

ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def activate(x: torch.Tensor, activation: Any) -> torch.Tensor:
    """Apply a named activation. ``activation`` is its name or a checked activation Spec."""
    name = getattr(activation, "name", activation)
    if name is None:
        return x
    try:
        fn = _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}") \
            from None
    return fn(x)


@impl("Dense")
def dense(*, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None,
          units: int, activation: Any = "linear", use_bias: bool = True) -> torch.Tensor:
    # kernel is [in, units]; F.linear takes the transposed [units, in] weight (a view).
    return activate(F.linear(x, kernel.mT, bias if use_bias else None), activation)


@impl("Embedding")
def embedding(*, ids: torch.Tensor, embeddings: torch.Tensor, input_dim: int, output_dim: int,
              mask_zero: bool = False) -> torch.Tensor:
    # The padding mask of mask_zero is a separate `not_equal` node the compiler makes.
    if ids.dtype not in (torch.int32, torch.int64):
        ids = ids.long()
    return F.embedding(ids, embeddings)


def drop_out(x: torch.Tensor, rate: float, noise_shape: Sequence[int] | None) -> torch.Tensor:
    """Inverted dropout with one draw per position of noise_shape (1: shared along the axis;
    -1: the input's size), broadcast over x."""
    if noise_shape is None:
        return F.dropout(x, p=rate, training=True)
    if rate <= 0:
        return x
    if rate >= 1:
        return torch.zeros_like(x)
    shape = [d if n == -1 else n for n, d in zip(noise_shape, x.shape, strict=True)]
    keep = torch.rand(shape, dtype=x.dtype, device=x.device) >= rate
    return torch.where(keep, x / (1.0 - rate), torch.zeros((), dtype=x.dtype, device=x.device))


@impl("Dropout")
def dropout(*, x: torch.Tensor, rate: float, noise_shape: Sequence[int] | None = None,
            training: bool) -> torch.Tensor:
    return drop_out(x, rate, noise_shape) if training else x


@impl("Activation")
def activation_layer(*, x: torch.Tensor, activation: Any) -> torch.Tensor:
    return activate(x, activation)


@impl("Flatten")
def flatten(*, x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


@impl("Reshape")
def reshape_layer(*, x: torch.Tensor, target_shape: Sequence[int]) -> torch.Tensor:
    return x.reshape(x.shape[0], *resolve_shape(x.shape[1:], target_shape))


@impl("PReLU")
def prelu(*, x: torch.Tensor, alpha: torch.Tensor,
          shared_axes: Sequence[int] | None = None) -> torch.Tensor:
    # alpha is x's shape without the batch axis (1 on shared axes): it broadcasts
    return F.relu(x) - alpha * F.relu(-x)
