"""`variance_scaling(scale, mode, distribution)` is Keras' VarianceScaling: the named
initializers are its special cases, draw for draw, and its arguments are checked."""

from __future__ import annotations

import numpy as np
import pytest

from graphdsl import GraphdslError
from graphdsl.compiler import compile_text
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.runtime.weights import initial_value


def spec(name: str, **args: object) -> Spec:
    return Spec("initializer", name, tuple({**dict(default_spec("initializer", name).args),
                                            **args}.items()))


SHAPE = (3, 3, 16, 32)  # a convolution kernel: fan_in 144, fan_out 288


@pytest.mark.parametrize(("named", "general"), [
    ("he_normal", {"scale": 2.0}),
    ("lecun_normal", {}),
    ("glorot_normal", {"mode": "fan_avg"}),
    ("he_uniform", {"scale": 2.0, "distribution": "uniform"}),
    ("lecun_uniform", {"distribution": "uniform"}),
    ("glorot_uniform", {"mode": "fan_avg", "distribution": "uniform"}),
])
def test_the_named_initializers_are_variance_scaling(named: str, general: dict) -> None:
    a = initial_value(spec(named), SHAPE, np.random.default_rng(5))
    b = initial_value(spec("variance_scaling", **general), SHAPE, np.random.default_rng(5))
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_fan_out_and_the_untruncated_normal() -> None:
    draws = initial_value(spec("variance_scaling", scale=2.0, mode="fan_out",
                               distribution="untruncated_normal"), (64, 64, 8, 8),
                          np.random.default_rng(1))
    assert abs(draws.std() - np.sqrt(2.0 / (64 * 64 * 8))) < 0.01 * np.sqrt(2.0 / 32768)
    assert np.abs(draws).max() > 3 * draws.std()  # not cut at two standard deviations


PROGRAM = """
model M {{
    input x : float32[B, 4]
    inference output y = Dense(3, kernel_initializer = variance_scaling({args}))(x)
}}
"""


def test_the_language_takes_it_and_checks_its_arguments() -> None:
    program = compile_text(PROGRAM.format(args='scale = 2.0, mode = "fan_out"'), "<t>")
    init = program.model().node(program.model().params[0])["init"]
    assert (init.name, init["mode"], init["scale"]) == ("variance_scaling", "fan_out", 2.0)
    for args, message in (('mode = "fan_sum"', '`mode` of `variance_scaling` is one of'),
                          ('distribution = "normal"', "`distribution` of `variance_scaling`"),
                          ("scale = 0.0", "`scale` of `variance_scaling` must be positive")):
        with pytest.raises(GraphdslError) as caught:
            compile_text(PROGRAM.format(args=args), "<t>")
        assert message in str(caught.value), args
