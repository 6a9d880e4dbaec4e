"""Numbers of the language constructs: a `repeat` that passes a mask to every copy
computes what the same layers unrolled by hand compute, a loop computes its closed
form, and both backends agree on each construct program.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.backends.parity import allowed_difference, differences, run_both
from graphdsl.backends.torch.module import build_module
from graphdsl.runtime.synthetic import perturbed_values
from graphdsl.runtime.weights import initial_values

from .test_parameter_counts import CONSTRUCTS

pytestmark = [pytest.mark.keras, pytest.mark.torch]

ENCODER = """
    block Layer(d: int) {
        input x : float32[B, T, d]
        input m : bool[B, T, T]
        a = MultiHeadAttention(2, 4)(x, x, attention_mask = m)
        output LayerNormalization()(x + a)
    }
    model M {
        input x : float32[B, T, 8]
        input m : bool[B, T, T]
        inference output y = BODY
    }
    """
REPEATED = ENCODER.replace("BODY", "repeat 2 Layer(8)(x, m)")
UNROLLED = ENCODER.replace("BODY", 'Layer(8, name = "second")(Layer(8, name = "first")(x, m), m)')


def encoder_inputs() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    m = rng.random((2, 5, 5)) < 0.6
    m[:, :, 0] = True  # every query sees at least one key
    return {"x": torch.from_numpy(x), "m": torch.from_numpy(m)}


def test_a_repeat_passing_the_mask_computes_the_unrolled_layers() -> None:
    repeated = graphdsl.compile(REPEATED).models["M"]
    unrolled = graphdsl.compile(UNROLLED).models["M"]
    values = perturbed_values(initial_values(repeated, seed=0))
    renamed = {k.replace("layer.0.", "first.").replace("layer.1.", "second."): v
               for k, v in values.items()}
    assert set(renamed) == set(initial_values(unrolled))
    inputs = encoder_inputs()
    with torch.no_grad():
        a = build_module(repeated, values).eval()(**inputs)["y"]
        b = build_module(unrolled, renamed).eval()(**inputs)["y"]
        no_mask = build_module(repeated, values).eval()(
            x=inputs["x"], m=torch.ones_like(inputs["m"]))["y"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.allclose(a, no_mask, atol=1e-3)  # the mask reached the copies


def test_a_loop_of_dense_layers_is_their_composition() -> None:
    model = graphdsl.compile("""
        model M(widths: ints = [8, 16, 4]) {
            input x : float32[B, 4]
            for i, n in enumerate(widths) {
                x = Dense(n)(x)
                if i < len(widths) - 1 { x = relu(x) }
            }
            inference output x
        }
        """).models["M"]
    values = perturbed_values(initial_values(model, seed=0))
    x = np.random.default_rng(1).standard_normal((3, 4)).astype("float32")
    with torch.no_grad():
        got = build_module(model, values).eval()(x=torch.from_numpy(x))["x"].numpy()
    h = x.astype(np.float64)
    for i, name in enumerate(("dense", "dense_1", "dense_2")):
        h = h @ values[f"{name}.kernel"] + values[f"{name}.bias"]
        if i < 2:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(got, h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [*CONSTRUCTS, "repeated_encoder"])
def test_both_backends_agree_on_the_constructs(name: str) -> None:
    source = REPEATED if name == "repeated_encoder" else CONSTRUCTS[name]
    program = graphdsl.compile(source, file=f"{name}.gdl")
    model = program.models["M"]
    t_out, k_out = run_both(program, model, seed=0)
    for key, diff in differences(t_out, k_out).items():
        assert diff <= allowed_difference(t_out[key]), f"{name} {key}: {diff:.3g}"
