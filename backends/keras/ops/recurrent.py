"""LSTM, GRU, SimpleRNN and Bidirectional in Keras' layout (graphdsl/ops/recurrent.py):
the layouts and gate orders keras.layers.LSTM, GRU and SimpleRNN use themselves.

Every step's input projection ``x @ kernel + bias`` is one product before the loop; the
loop (``ops.scan`` over the time-major steps) then only adds the recurrent product.
With a mask, at a masked step the state keeps its value and the step's output repeats the
previous output (0 before any valid step); without one the loop skips the selects.

``go_backwards`` reverses the steps (and the mask) first; like Keras, the returned sequence
is then in the processing order, i.e. reversed.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from keras import ops

from graphdsl.ops.recurrent import KINDS

from . import impl
from .core import activate, drop_out


def _cell(kind: str, z: tf.Tensor, states: tuple[tf.Tensor, ...], recurrent_kernel: tf.Tensor,
          recurrent_bias: tf.Tensor | None, keep_h: tf.Tensor | None, activation: Any,
          reset_after: bool) -> tuple[tf.Tensor, ...]:
    """One step from the input projection z = x_t @ kernel (+ input bias): the new state."""
    h = states[0]
    fed = h * keep_h if keep_h is not None else h  # recurrent dropout
    if kind == "LSTM":
        i, f, g, o = ops.split(z + ops.matmul(fed, recurrent_kernel), 4, axis=-1)
        c = ops.sigmoid(f) * states[1] + ops.sigmoid(i) * ops.tanh(g)
        return ops.sigmoid(o) * ops.tanh(c), c
    if kind == "SimpleRNN":
        return (activate(z + ops.matmul(fed, recurrent_kernel), activation),)
    x_z, x_r, x_h = ops.split(z, 3, axis=-1)
    if reset_after:
        inner = ops.matmul(fed, recurrent_kernel)
        if recurrent_bias is not None:
            inner = inner + recurrent_bias
        h_z, h_r, h_h = ops.split(inner, 3, axis=-1)
        update, reset = ops.sigmoid(x_z + h_z), ops.sigmoid(x_r + h_r)
        candidate = ops.tanh(x_h + reset * h_h)
    else:
        units = ops.shape(recurrent_kernel)[0]  # a traced loop may not know it statically
        u_zr, u_h = recurrent_kernel[:, :2 * units], recurrent_kernel[:, 2 * units:]
        h_z, h_r = ops.split(ops.matmul(fed, u_zr), 2, axis=-1)
        update, reset = ops.sigmoid(x_z + h_z), ops.sigmoid(x_r + h_r)
        candidate = ops.tanh(x_h + ops.matmul(reset * fed, u_h))
    return (update * h + (1 - update) * candidate,)


def _loop(kind: str, projected: tf.Tensor, states: tuple[tf.Tensor, ...],
          keep: tf.Tensor | None, recurrent_kernel: tf.Tensor, recurrent_bias: tf.Tensor | None,
          keep_h: tf.Tensor | None, activation: Any,
          reset_after: bool) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
    """projected [T, B, gates] (time-major), keep bool [T, B, 1] or None -> (the output of
    every step [T, B, u], the final states)."""

    def step(carry: tuple[tf.Tensor, ...], inputs: Any) -> tuple[Any, Any]:
        previous, states = carry[0], carry[1:]
        z, k = (inputs[..., :-1], inputs[..., -1:] > 0.5) if keep is not None else (inputs, None)
        new = _cell(kind, z, states, recurrent_kernel, recurrent_bias, keep_h, activation,
                    reset_after)
        if k is not None:
            new = tuple(ops.where(k, n, s) for n, s in zip(new, states, strict=True))
            previous = ops.where(k, new[0], previous)
        else:
            previous = new[0]
        # (Keras' TensorFlow scan stacks outputs shaped like the carry: the whole carry)
        return (previous, *new), (previous, *new)

    # the mask rides along as one more column (Keras' TensorFlow scan fails on two
    # sequences whose length is not static)
    steps = projected if keep is None else \
        ops.concatenate([projected, ops.cast(keep, projected.dtype)], axis=-1)
    carry, stacked = ops.scan(step, (ops.zeros_like(states[0]), *states), steps)
    return stacked[0], tuple(carry[1:])


# Called eagerly, the loop runs as a graph compiled once per input signature (an eager
# while loop would dispatch every op of every step from Python, ten times slower); inside a
# traced call it is inlined into the caller's graph.
_compiled_loop = tf.function(_loop, reduce_retracing=True, autograph=False)


def _run_loop(*args: Any) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
    return (_compiled_loop if tf.executing_eagerly() else _loop)(*args)


_run_loop.portable = _loop  # type: ignore[attr-defined]  # what an export copies instead


def _initial_states(kind: str, x: tf.Tensor, units: int,
                    initial_state: tf.Tensor | None) -> tuple[tf.Tensor, ...]:
    count = KINDS[kind][1]
    if initial_state is None:
        zeros = ops.zeros((ops.shape(x)[0], units), dtype=x.dtype)
        return (zeros,) * count
    initial_state = ops.convert_to_tensor(initial_state)
    if len(initial_state.shape) == 2:
        return (initial_state,)
    return tuple(initial_state[k] for k in range(count))


def run_recurrent(kind: str, *, x: tf.Tensor, mask: tf.Tensor | None,
                  initial_state: tf.Tensor | None, kernel: tf.Tensor,
                  recurrent_kernel: tf.Tensor, bias: tf.Tensor | None, units: int,
                  return_sequences: bool, return_state: bool, go_backwards: bool,
                  use_bias: bool, dropout: float, recurrent_dropout: float, training: bool,
                  activation: Any = "tanh",
                  reset_after: bool = True) -> tf.Tensor | tuple[tf.Tensor, ...]:
    """One recurrent layer of kind LSTM, GRU or SimpleRNN (the registry's definition)."""
    x = ops.convert_to_tensor(x)
    states = _initial_states(kind, x, units, initial_state)
    if training and dropout > 0:
        x = x * drop_out(ops.ones_like(x[:, :1]), dropout)  # one mask for every step
    keep_h = drop_out(ops.ones_like(states[0]), recurrent_dropout) \
        if training and recurrent_dropout > 0 else None
    # time-major [T, B, ...]: the input is transposed (not its wider projection)
    steps_first = ops.transpose(x, (1, 0, 2))
    keep = None
    if mask is not None:
        keep = ops.transpose(ops.cast(mask, "bool"))[..., None]  # [T, B, 1]
    if go_backwards:
        steps_first = ops.flip(steps_first, axis=0)
        keep = ops.flip(keep, axis=0) if keep is not None else None
    projected = ops.matmul(steps_first, kernel)  # every step's input projection at once
    recurrent_bias = None
    if use_bias and bias is not None:
        if kind == "GRU" and reset_after:
            projected, recurrent_bias = projected + bias[0], ops.convert_to_tensor(bias[1])
        else:
            projected = projected + bias
    outputs, final = _run_loop(kind, projected, states, keep,
                               ops.convert_to_tensor(recurrent_kernel), recurrent_bias, keep_h,
                               getattr(activation, "name", activation), reset_after)
    if return_sequences:
        result = ops.transpose(outputs, (1, 0, 2))
    elif x.shape[1] == 0:
        result = final[0]
    else:
        result = outputs[-1]  # the last output
    return (result, *final) if return_state else result


@impl("LSTM")
def lstm(*, x: tf.Tensor, mask: tf.Tensor | None = None, initial_state: tf.Tensor | None = None,
         kernel: tf.Tensor, recurrent_kernel: tf.Tensor, bias: tf.Tensor | None = None,
         units: int, return_sequences: bool = False, return_state: bool = False,
         go_backwards: bool = False, unit_forget_bias: bool = True, use_bias: bool = True,
         dropout: float = 0.0, recurrent_dropout: float = 0.0,
         training: bool) -> tf.Tensor | tuple[tf.Tensor, ...]:
    # unit_forget_bias only shapes the bias' initial value (the lstm_bias initialiser).
    return run_recurrent("LSTM", x=x, mask=mask, initial_state=initial_state, kernel=kernel,
                         recurrent_kernel=recurrent_kernel, bias=bias, units=units,
                         return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, use_bias=use_bias, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, training=training)


@impl("GRU")
def gru(*, x: tf.Tensor, mask: tf.Tensor | None = None, initial_state: tf.Tensor | None = None,
        kernel: tf.Tensor, recurrent_kernel: tf.Tensor, bias: tf.Tensor | None = None,
        units: int, return_sequences: bool = False, return_state: bool = False,
        go_backwards: bool = False, reset_after: bool = True, use_bias: bool = True,
        dropout: float = 0.0, recurrent_dropout: float = 0.0,
        training: bool) -> tf.Tensor | tuple[tf.Tensor, ...]:
    return run_recurrent("GRU", x=x, mask=mask, initial_state=initial_state, kernel=kernel,
                         recurrent_kernel=recurrent_kernel, bias=bias, units=units,
                         return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, use_bias=use_bias, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, training=training,
                         reset_after=reset_after)


@impl("SimpleRNN")
def simple_rnn(*, x: tf.Tensor, mask: tf.Tensor | None = None,
               initial_state: tf.Tensor | None = None, kernel: tf.Tensor,
               recurrent_kernel: tf.Tensor, bias: tf.Tensor | None = None, units: int,
               return_sequences: bool = False, return_state: bool = False,
               go_backwards: bool = False, activation: Any = "tanh", use_bias: bool = True,
               dropout: float = 0.0, recurrent_dropout: float = 0.0,
               training: bool) -> tf.Tensor | tuple[tf.Tensor, ...]:
    return run_recurrent("SimpleRNN", x=x, mask=mask, initial_state=initial_state,
                         kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias,
                         units=units, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards,
                         use_bias=use_bias, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, training=training,
                         activation=activation)


def merge(mode: str, forward: tf.Tensor, backward: tf.Tensor) -> Any:
    if mode == "concat":
        return ops.concatenate([forward, backward], axis=-1)
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    if mode == "ave":
        return (forward + backward) / 2
    return (forward, backward)


@impl("Bidirectional")
def bidirectional(*, x: tf.Tensor, mask: tf.Tensor | None = None,
                  initial_state: tf.Tensor | None = None, forward_kernel: tf.Tensor,
                  forward_recurrent_kernel: tf.Tensor, forward_bias: tf.Tensor | None = None,
                  backward_kernel: tf.Tensor, backward_recurrent_kernel: tf.Tensor,
                  backward_bias: tf.Tensor | None = None, layer: str, units: int,
                  merge_mode: str = "concat", return_sequences: bool = False,
                  return_state: bool = False, use_bias: bool = True,
                  unit_forget_bias: bool = True, reset_after: bool = True,
                  activation: Any = "tanh", dropout: float = 0.0,
                  recurrent_dropout: float = 0.0,
                  training: bool) -> tf.Tensor | tuple[tf.Tensor, ...]:
    count = KINDS[layer][1]
    common: dict[str, Any] = dict(
        x=x, mask=mask, units=units, return_sequences=return_sequences, return_state=True,
        use_bias=use_bias, dropout=dropout, recurrent_dropout=recurrent_dropout,
        training=training, activation=activation, reset_after=reset_after)
    halves: tuple[Any, Any] = (None, None)
    if initial_state is not None:
        initial_state = ops.convert_to_tensor(initial_state)
        halves = (initial_state[:count], initial_state[count:])
    forward, *forward_states = run_recurrent(
        layer, initial_state=halves[0], kernel=forward_kernel,
        recurrent_kernel=forward_recurrent_kernel, bias=forward_bias, go_backwards=False,
        **common)
    backward, *backward_states = run_recurrent(
        layer, initial_state=halves[1], kernel=backward_kernel,
        recurrent_kernel=backward_recurrent_kernel, bias=backward_bias, go_backwards=True,
        **common)
    if return_sequences:
        backward = ops.flip(backward, axis=1)  # back to the input's order
        if mask is not None:  # Keras' Bidirectional: zeros at masked steps
            keep = ops.cast(mask, "bool")[..., None]
            forward = ops.where(keep, forward, ops.zeros_like(forward))
            backward = ops.where(keep, backward, ops.zeros_like(backward))
    merged = merge(merge_mode, forward, backward)
    outputs = merged if isinstance(merged, tuple) else (merged,)
    if return_state:
        outputs = (*outputs, *forward_states, *backward_states)
    return outputs[0] if len(outputs) == 1 else outputs
