"""Seeded, stateless randomness for the Keras training step, so a resumed run draws the
same dropout masks and noise as an uninterrupted one.

The ops (backends/keras/ops/) draw with `keras.random.uniform`, `normal` and `randint`
from Keras' global seed generator, whose position a checkpoint does not hold. While the engine's step is
traced, :meth:`StepRandomness.tracing` stands in stateless draws for them instead: draw i
of step s uses the key fold_in(fold_in((seed, 0), s), i). The step number is a variable
the engine sets before each step and saves with the training state, so the randomness of
step s is a function of (seed, s) alone.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf


class StepRandomness:
    def __init__(self, seed: int):
        self.base = tf.constant([seed, 0], dtype=tf.int64)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="rng_step")
        self.stream: Any = None

    def _key(self, draw: int) -> Any:
        fold = tf.random.experimental.stateless_fold_in
        key = fold(self.base, self.step)
        if self.stream is not None:  # one of a step's accumulated passes
            key = fold(key, self.stream)
        return fold(key, draw)

    @contextlib.contextmanager
    def tracing(self, stream: Any = None) -> Iterator[None]:
        """Within: keras.random's uniform, normal and randint draw statelessly (only
        Python code that runs here sees this: the tracing of a step, never its execution).
        ``stream`` (a traced integer) tells a step's accumulated passes apart; the replicas
        of a MirroredStrategy step are traced one after another and number their draws
        on from each other."""
        draws = itertools.count()
        self.stream = stream
        drawn = keras.random.uniform, keras.random.normal, keras.random.randint

        def stateless_uniform(shape: Any, minval: Any = 0.0, maxval: Any = 1.0,
                              dtype: Any = None, seed: Any = None) -> Any:
            return tf.random.stateless_uniform(_shape(shape), self._key(next(draws)),
                                               minval=minval, maxval=maxval,
                                               dtype=dtype or "float32")

        def stateless_normal(shape: Any, mean: Any = 0.0, stddev: Any = 1.0,
                             dtype: Any = None, seed: Any = None) -> Any:
            return tf.random.stateless_normal(_shape(shape), self._key(next(draws)), mean=mean,
                                              stddev=stddev, dtype=dtype or "float32")

        def stateless_randint(shape: Any, minval: Any, maxval: Any, dtype: Any = "int32",
                              seed: Any = None) -> Any:
            return tf.random.stateless_uniform(_shape(shape), self._key(next(draws)),
                                               minval=minval, maxval=maxval, dtype=dtype)

        keras.random.uniform, keras.random.normal, keras.random.randint = \
            stateless_uniform, stateless_normal, stateless_randint
        try:
            yield
        finally:
            keras.random.uniform, keras.random.normal, keras.random.randint = drawn
            self.stream = None


def _shape(shape: Any) -> Any:
    """A shape that may hold scalar tensors (a traced batch size), as one TensorFlow shape."""
    return tf.stack(list(shape)) if any(tf.is_tensor(d) for d in shape) else list(shape)
