"""Keras' layers without weights in graphdsl compute what keras.layers computes, in both
backends: the merges (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot,
Attention)
and the activation and reshaping layers (ReLU, LeakyReLU, Softmax, ELU, Permute,
RepeatVector, Identity), and TimeDistributed."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

import graphdsl

pytestmark = [pytest.mark.keras, pytest.mark.torch]

PROGRAM = """
model Merged {
    input a : float32[B, 4]
    input b : float32[B, 4]
    input q : float32[B, 5, 8]
    input k : float32[B, 7, 8]
    inference output cat = Concatenate(axis = -1)([a, b, a])
    inference output total = Add()([a, b, a])
    inference output difference = Subtract()([a, b])
    inference output product = Multiply()([a, b])
    inference output mean = Average()([a, b])
    inference output high = Maximum()([a, b, a])
    inference output low = Minimum()([a, b])
    inference output scores = Dot(axes = 2)([q, k])
    inference output mixed = Dot(axes = [1, 1])([q, k[:, :5, :]])
    inference output cosine = Dot(axes = 1, normalize = true)([a, b])
    inference output attended = Attention()([q, k])
    inference output keyed = Attention()([q, k, k * 2.0])
}
"""


def keras_reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    a, b, q, k = (keras.ops.convert_to_tensor(inputs[n]) for n in ("a", "b", "q", "k"))
    L = keras.layers
    out = {"cat": L.Concatenate(axis=-1)([a, b, a]), "total": L.Add()([a, b, a]),
           "difference": L.Subtract()([a, b]), "product": L.Multiply()([a, b]),
           "mean": L.Average()([a, b]), "high": L.Maximum()([a, b, a]),
           "low": L.Minimum()([a, b]), "scores": L.Dot(axes=2)([q, k]),
           "mixed": L.Dot(axes=[1, 1])([q, k[:, :5, :]]),
           "cosine": L.Dot(axes=1, normalize=True)([a, b]),
           "attended": L.Attention()([q, k]), "keyed": L.Attention()([q, k, k * 2.0])}
    return {name: np.asarray(v) for name, v in out.items()}


def test_merge_layers_equal_kerass_own() -> None:
    rng = np.random.default_rng(11)
    inputs = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal((3, 4)),
              "q": rng.standard_normal((3, 5, 8)), "k": rng.standard_normal((3, 7, 8))}
    inputs = {n: v.astype(np.float32) for n, v in inputs.items()}
    expected = keras_reference(inputs)
    module = graphdsl.compile(PROGRAM, backend="torch")
    with torch.no_grad():
        from_torch = {n: v.numpy() for n, v in
                      module(**{n: torch.from_numpy(v) for n, v in inputs.items()}).items()}
    from_keras = {n: np.asarray(v) for n, v in
                  graphdsl.compile(PROGRAM, backend="keras")(inputs).items()}
    for outputs in (from_torch, from_keras):
        assert set(outputs) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-6,
                                       err_msg=name)


ONE_TENSOR = """
model Acts {
    input x : float32[B, 3, 4]
    inference output relu = ReLU()(x)
    inference output relu6 = ReLU(6.0)(x * 4.0)
    inference output capped = ReLU(max_value = 1.5, negative_slope = 0.1)(x * 2.0)
    inference output leaky = LeakyReLU()(x)
    inference output leaky2 = LeakyReLU(negative_slope = 0.2)(x)
    inference output soft = Softmax(axis = 1)(x)
    inference output elu = ELU()(x)
    inference output elu2 = ELU(alpha = 0.5)(x)
    inference output permuted = Permute([2, 1])(x)
    inference output repeated = RepeatVector(2)(x[:, 0, :])
    inference output same = Identity()(x)
}
"""


def test_activation_and_reshaping_layers_equal_kerass_own() -> None:
    x = np.random.default_rng(12).standard_normal((2, 3, 4)).astype(np.float32)
    t = keras.ops.convert_to_tensor(x)
    L = keras.layers
    expected = {
        "relu": L.ReLU()(t), "relu6": L.ReLU(6.0)(t * 4.0),
        "capped": L.ReLU(max_value=1.5, negative_slope=0.1)(t * 2.0),
        "leaky": L.LeakyReLU()(t), "leaky2": L.LeakyReLU(negative_slope=0.2)(t),
        "soft": L.Softmax(axis=1)(t), "elu": L.ELU()(t), "elu2": L.ELU(alpha=0.5)(t),
        "permuted": L.Permute((2, 1))(t), "repeated": L.RepeatVector(2)(t[:, 0, :]),
        "same": L.Identity()(t)}
    module = graphdsl.compile(ONE_TENSOR, backend="torch")
    with torch.no_grad():
        from_torch = {n: v.numpy() for n, v in module(x=torch.from_numpy(x)).items()}
    from_keras = {n: np.asarray(v) for n, v in
                  graphdsl.compile(ONE_TENSOR, backend="keras")({"x": x}).items()}
    for outputs in (from_torch, from_keras):
        assert set(outputs) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(outputs[name], np.asarray(value), rtol=1e-5,
                                       atol=1e-6, err_msg=name)


TIME_DISTRIBUTED = """
model Video {
    input clip : float32[B, 4, 6, 6, 2]
    layer conv = Conv2D(3, 3, padding = "same")
    layer dense = Dense(5)
    f = TimeDistributed(conv)(clip)
    f = TimeDistributed(MaxPooling2D(2))(f)
    f = TimeDistributed(Flatten())(f)
    inference output frames = f
    inference output projected = TimeDistributed(dense)(f)
}
"""


def test_time_distributed_equals_kerass_own() -> None:
    """Per frame: a convolution folded over the steps, and a Dense called on the sequence
    as it is; against keras.layers.TimeDistributed with the same weights."""
    rng = np.random.default_rng(13)
    clip = rng.standard_normal((2, 4, 6, 6, 2)).astype(np.float32)
    module = graphdsl.compile(TIME_DISTRIBUTED, backend="torch")
    weights = module.export_arrays()
    conv, dense = keras.layers.Conv2D(3, 3, padding="same"), keras.layers.Dense(5)
    conv.build((None, 6, 6, 2))
    conv.set_weights([weights["conv.kernel"], weights["conv.bias"]])
    dense.build((None, 27))
    dense.set_weights([weights["dense.kernel"], weights["dense.bias"]])
    L = keras.layers
    frames = L.TimeDistributed(L.Flatten())(L.TimeDistributed(L.MaxPooling2D(2))(
        L.TimeDistributed(conv)(clip)))
    projected = L.TimeDistributed(dense)(frames)
    with torch.no_grad():
        from_torch = {n: v.numpy() for n, v in module(clip=torch.from_numpy(clip)).items()}
    from_keras = {n: np.asarray(v) for n, v in graphdsl.compile(
        TIME_DISTRIBUTED, backend="keras", values=weights)({"clip": clip}).items()}
    for outputs in (from_torch, from_keras):
        np.testing.assert_allclose(outputs["frames"], np.asarray(frames), rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(outputs["projected"], np.asarray(projected), rtol=1e-5,
                                   atol=1e-5)
