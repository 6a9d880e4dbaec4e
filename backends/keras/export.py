"""Exports of a Keras-built model: a `.keras` file, a TensorFlow SavedModel with a serving
signature named after the program's inputs, and readable Keras source (keras_source.py).

A tie is one variable in the model, so it is one variable in each of these files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph

from .model import build_model


def export_keras(program: Program, model: ModelGraph, weights: Mapping[str, np.ndarray],
                 out: str) -> None:
    """A `.keras` file: `keras.saving.load_model(out)` once graphdsl is imported."""
    if not out.endswith(".keras"):
        raise ValueError(f"--format keras writes a .keras file; got --out {out}")
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    build_model(program, model, values=weights).save(out)


def serving_function(keras_model: Any, model: ModelGraph) -> Any:
    """A tf.function of the inputs, one argument each, named as in the program, with the
    symbolic sizes left open; it returns the outputs by name."""
    import tensorflow as tf

    names = [model.node(n)["name"] for n in model.inputs]
    specs = []
    for n in model.inputs:
        t = model.node(n)["type"]
        shape = [d if isinstance(d, int) else None for d in t.shape]
        dtype = "float32" if t.dtype == "bfloat16" else t.dtype
        specs.append(tf.TensorSpec(shape, tf.as_dtype(dtype), name=model.node(n)["name"]))

    def serve(*args: Any) -> dict[str, Any]:
        return dict(keras_model(dict(zip(names, args, strict=True)), training=False))

    return tf.function(serve, input_signature=specs)


def export_savedmodel(program: Program, model: ModelGraph,
                      weights: Mapping[str, np.ndarray], out: str) -> None:
    """A TensorFlow SavedModel: `tf.saved_model.load(out).signatures["serving_default"]`
    takes the inputs by name and returns the outputs by name; no graphdsl needed."""
    import tensorflow as tf

    keras_model = build_model(program, model, values=weights)
    holder = tf.Module()
    holder.variables_by_name = {name: v.value if hasattr(v, "value") else v
                                for name, v in keras_model.canonical_variables().items()}
    holder.serve = serving_function(keras_model, model)
    tf.saved_model.save(holder, out, signatures={"serving_default": holder.serve})


def export_source(program: Program, model: ModelGraph, weights: Mapping[str, np.ndarray],
                  out: str) -> None:
    from .keras_source import write_source

    write_source(program, model, weights, out)
