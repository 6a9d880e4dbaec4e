"""PReLU, the activations and the numeric functions against the frameworks' own:
keras.layers.PReLU and torch.nn.PReLU with the same slopes, keras.activations and
torch.nn.functional, keras.ops.einsum/cumsum/top_k/tril/triu/arange, each compared with a
graphdsl program compiled for both backends (within 1e-5)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdsl

pytestmark = [pytest.mark.keras, pytest.mark.torch]

TOL = 1e-5


def run_both(source: str, inputs: dict[str, np.ndarray],
             values: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Every output of the program's model, by backend."""
    module = graphdsl.compile(source, backend="torch", values=values).eval()
    model = graphdsl.compile(source, backend="keras", values=values)
    torch_out = module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    keras_out = model(inputs)
    return {"torch": {k: v.detach().numpy() for k, v in torch_out.items()},
            "keras": {k: np.asarray(v) for k, v in keras_out.items()}}


def assert_close(got: dict[str, dict[str, np.ndarray]], name: str, expected: Any) -> None:
    for backend, outputs in got.items():
        np.testing.assert_allclose(outputs[name], np.asarray(expected), rtol=TOL, atol=TOL,
                                   err_msg=f"{backend} {name}")


@pytest.mark.parametrize("shared_axes", [None, [1], [1, 2]])
def test_prelu_matches_keras(shared_axes: list[int] | None) -> None:
    r = np.random.default_rng(1)
    x = r.standard_normal((2, 5, 3)).astype(np.float32)
    layer = keras.layers.PReLU(shared_axes=shared_axes)
    layer.build(x.shape)
    alpha = r.standard_normal(tuple(layer.weights[0].shape)).astype(np.float32)
    layer.set_weights([alpha])
    argument = "" if shared_axes is None else f"shared_axes = {shared_axes}"
    source = ("model M {\n    input x : float32[B, 5, 3]\n"
              f"    inference output y = PReLU({argument})(x)\n}}\n")
    assert graphdsl.compile(source).model(None).parameter_count == layer.count_params()
    got = run_both(source, {"x": x}, {"p_re_lu.alpha": alpha})
    assert_close(got, "y", layer(x))


def test_prelu_matches_torch() -> None:
    r = np.random.default_rng(2)
    x = r.standard_normal((4, 6)).astype(np.float32)
    alpha = r.standard_normal(6).astype(np.float32)
    reference = torch.nn.PReLU(num_parameters=6)
    reference.load_state_dict({"weight": torch.from_numpy(alpha)})
    source = ("model M {\n    input x : float32[B, 6]\n"
              "    inference output y = PReLU()(x)\n}\n")
    got = run_both(source, {"x": x}, {"p_re_lu.alpha": alpha})
    assert_close(got, "y", reference(torch.from_numpy(x)).detach().numpy())


NEW_ACTIVATIONS = {
    "relu6": (keras.activations.relu6, F.relu6),
    "hard_sigmoid": (keras.activations.hard_sigmoid, F.hardsigmoid),
    "hard_silu": (keras.activations.hard_silu, F.hardswish),
    "hard_swish": (keras.activations.hard_swish, F.hardswish),
    "mish": (keras.activations.mish, F.mish),
    "selu": (keras.activations.selu, F.selu),
    "softsign": (keras.activations.softsign, F.softsign),
    "elu": (keras.activations.elu, F.elu),
    "silu": (keras.activations.silu, F.silu),
    "softplus": (keras.activations.softplus, F.softplus),
}


@pytest.mark.parametrize("name", list(NEW_ACTIVATIONS))
def test_activations_match_both_frameworks(name: str) -> None:
    x = np.linspace(-8, 8, 41, dtype=np.float32).reshape(1, 41)
    source = ("model M {\n    input x : float32[B, 41]\n"
              f"    inference output f = {name}(x)\n"
              f"    inference output d = Dense(41, activation = {name}, use_bias = false)(x)\n"
              "}\n")
    got = run_both(source, {"x": x}, {"dense.kernel": np.eye(41, dtype=np.float32)})
    keras_fn, torch_fn = NEW_ACTIVATIONS[name]
    expected = np.asarray(keras_fn(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(torch_fn(torch.from_numpy(x)).numpy(), expected, rtol=TOL,
                               atol=TOL)
    assert_close(got, "f", expected)
    assert_close(got, "d", expected)


def test_numeric_functions_match_keras_ops() -> None:
    r = np.random.default_rng(3)
    a = r.standard_normal((2, 3, 4)).astype(np.float32)
    b = r.standard_normal((2, 4, 5)).astype(np.float32)
    source = """model M {
    input a : float32[B, 3, 4]
    input b : float32[B, 4, 5]
    inference output e = einsum("bij,bjk->bik", a, b)
    inference output c = cumsum(a, axis = 1)
    inference output lower = tril(a, k = -1)
    inference output upper = triu(a, k = 1)
    values, indices = top_k(a, 2)
    inference output values
    inference output indices
    inference output steps = arange(0.5, 2.0, 0.25)
    inference output classes = one_hot(argmax(a), 4)
}
"""
    got = run_both(source, {"a": a, "b": b})
    ops = keras.ops
    assert_close(got, "e", ops.einsum("bij,bjk->bik", a, b))
    assert_close(got, "c", ops.cumsum(a, axis=1))
    assert_close(got, "lower", ops.tril(a, k=-1))
    assert_close(got, "upper", ops.triu(a, k=1))
    values, indices = ops.top_k(a, 2)
    assert_close(got, "values", values)
    assert_close(got, "indices", indices)
    assert_close(got, "steps", ops.arange(0.5, 2.0, 0.25))
    assert_close(got, "classes", ops.one_hot(ops.argmax(a, axis=-1), 4))
    module = graphdsl.compile(source, backend="torch")
    # arange's values are static: a buffer, so that they move with the module (.to("cuda"))
    assert [b.dtype for _, b in module.named_buffers()] == [torch.float32]
    for backend, outputs in got.items():
        assert outputs["indices"].dtype == np.int32, backend
        assert outputs["classes"].dtype == np.float32, backend
