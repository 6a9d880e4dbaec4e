"""LSTM in Keras' layout: kernel [in, 4u], recurrent_kernel [u, 4u], one bias [4u], gate
blocks i, f, c, o (keras.layers.LSTM's own layout and order).

Every step's input projection ``x @ kernel + bias`` is one product before the loop; the
loop (a ``tf.while_loop`` over time-major TensorArrays) then only adds
``h @ recurrent_kernel``. With a mask, at a masked step h and c keep their values and the
step's output repeats the last h (0 before any valid step); without one the loop skips
the selects.

``go_backwards`` reverses the steps (and the mask) first; like Keras, the returned sequence
is then in the processing order, i.e. reversed.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from . import impl


def _cell(z: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One LSTM step from the pre-activations z = [i, f, c~, o]: the new (h, c)."""
    i, f, g, o = tf.split(z, 4, axis=-1)
    c_new = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c_new), c_new


def _loop(projected: tf.Tensor, recurrent_kernel: tf.Tensor,
          keep: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """projected [T, B, 4u] (time-major), keep bool [T, B, 1] or None -> (h for every step
    [T, B, u], last h, last c)."""
    steps = tf.shape(projected)[0]
    units = tf.shape(recurrent_kernel)[0]
    zeros = tf.zeros(tf.stack([tf.shape(projected)[1], units]), dtype=projected.dtype)
    inputs = tf.TensorArray(projected.dtype, size=steps).unstack(projected)
    keeps = tf.TensorArray(tf.bool, size=steps).unstack(keep) if keep is not None else None
    outputs = tf.TensorArray(projected.dtype, size=steps)

    def step(t: tf.Tensor, h: tf.Tensor, c: tf.Tensor,
             outputs: tf.TensorArray) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.TensorArray]:
        h_new, c_new = _cell(inputs.read(t) + tf.matmul(h, recurrent_kernel), c)
        if keeps is not None:
            k = keeps.read(t)
            h_new, c_new = tf.where(k, h_new, h), tf.where(k, c_new, c)
        return t + 1, h_new, c_new, outputs.write(t, h_new)

    _, h, c, outputs = tf.while_loop(lambda t, *_: t < steps, step,
                                     (tf.constant(0), zeros, zeros, outputs),
                                     swap_memory=True)
    return outputs.stack(), h, c


# Called eagerly, the loop runs as a graph compiled once per input signature (an eager
# while loop would dispatch every op of every step from Python, ten times slower); inside a
# traced call it is inlined into the caller's graph.
_compiled_loop = tf.function(_loop, reduce_retracing=True, autograph=False)


@impl("LSTM")
def lstm(*, x: tf.Tensor, mask: tf.Tensor | None = None, kernel: tf.Tensor,
         recurrent_kernel: tf.Tensor, bias: tf.Tensor | None = None, units: int,
         return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
         unit_forget_bias: bool = True,
         use_bias: bool = True) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    # unit_forget_bias only shapes the bias' initial value (the lstm_bias initialiser).
    # time-major [T, B, ...]: the input is transposed (not its 4x wider projection)
    steps_first = ops.transpose(x, (1, 0, 2))
    keep = None
    if mask is not None:
        keep = ops.transpose(ops.cast(mask, "bool"))[..., None]  # [T, B, 1]
    if go_backwards:
        steps_first = ops.flip(steps_first, axis=0)
        keep = ops.flip(keep, axis=0) if keep is not None else None
    projected = ops.matmul(steps_first, kernel)  # every step's input projection at once
    if use_bias and bias is not None:
        projected = projected + bias
    loop = _compiled_loop if tf.executing_eagerly() else _loop
    outputs, h, c = loop(projected, tf.convert_to_tensor(recurrent_kernel), keep)
    # the loop's trace may have relaxed the static shapes: restore what is known
    h = tf.ensure_shape(h, (x.shape[0], units))
    c = tf.ensure_shape(c, (x.shape[0], units))
    if return_sequences:
        result = tf.ensure_shape(ops.transpose(outputs, (1, 0, 2)), (*x.shape[:2], units))
    else:
        result = h
    if return_state:
        return (result, h, c)
    return result
