"""The Keras 3 backend (TensorFlow): `graphdsl.compile(source, backend="keras")` returns a
native ``keras.Model``; `graphdsl train/eval --backend keras` run through here.

Keras is imported lazily, with ``KERAS_BACKEND=tensorflow`` unless the user chose one.
Importing graphdsl registers the model class with Keras' serialisation, so a saved
`.keras` file loads with ``keras.saving.load_model`` once graphdsl is imported.
"""

from __future__ import annotations

import os

# Before anything imports Keras: TensorFlow unless the user chose a backend, and no
# TensorFlow start-up chatter unless the user asked for it.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Mapping  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    import numpy as np

    from graphdsl.compiler import Program
    from graphdsl.ir.graph import ModelGraph

    from .model import GraphModel


def build(program: Program, model: ModelGraph, seed: int = 0,
          values: Mapping[str, np.ndarray] | None = None) -> GraphModel:
    from .model import build_model

    return build_model(program, model, seed, values)


def train(program: Program, model: ModelGraph, settings: Mapping[str, Any],
          out: str | None = None, resume: bool = False, force: bool = False) -> GraphModel:
    from .train import train_model

    driver, _, _ = train_model(program, model, settings, out=out, resume=resume, quiet=True,
                               force=force)
    return driver.engine.module  # type: ignore[no-any-return]


def run_train(program: Program, args: Any) -> int:
    from .train import run_train as run

    return run(program, args)


def run_eval(program: Program, args: Any) -> int:
    from .train import run_eval as run

    return run(program, args)


def predictor(program: Program, model: ModelGraph, values: Mapping[str, np.ndarray],
              device: str | None = None) -> Any:
    """A function from a batch of input arrays to every output as numpy (inference mode)."""
    import numpy as np
    import tensorflow as tf

    from .model import build_model

    gpus = tf.config.list_physical_devices("GPU")
    if device == "cuda" and not gpus:
        raise RuntimeError("--device cuda: no CUDA device is available here")
    where = "/GPU:0" if gpus and device in (None, "auto", "cuda") else "/CPU:0"
    keras_model = build_model(program, model, values=values)

    def run(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with tf.device(where):
            outputs = keras_model(dict(batch), training=False)
        return {k: np.asarray(v) for k, v in outputs.items()}

    return run
