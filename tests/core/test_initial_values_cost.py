"""Drawing initial values costs no more than it must: a float32 tensor is drawn a chunk at
a time (no float64 copy of the whole, twice its size), with exactly the numbers of one
float64 draw cast to float32 (so both backends keep starting from the same values), and
the orthogonal initialiser's QR runs on one BLAS thread (many threads made building a
model several times slower).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import graphdsl
from graphdsl.runtime import weights

WIDE = """\
model Wide {
    input  x : float32[B, 1024]
    target y : float32[B, 2048]
    output p = Dense(2048, kernel_initializer = glorot_uniform(),
                     bias_initializer = normal(stddev = 0.5))(x)
    loss mse(p, y)
}
"""


def test_a_float32_draw_is_exactly_the_float64_draw_cast() -> None:
    model = graphdsl.compile(WIDE).model()
    values = weights.initial_values(model, seed=5)
    kernel = values["dense.kernel"]
    assert kernel.dtype == np.float32 and kernel.size > weights.CHUNK  # several chunks
    limit = np.sqrt(6.0 / (1024 + 2048))
    reference = weights.parameter_rng(5, "dense.kernel").uniform(-limit, limit, (1024, 2048))
    np.testing.assert_array_equal(kernel, reference.astype(np.float32))
    bias = weights.parameter_rng(5, "dense.bias").standard_normal(2048) * 0.5
    np.testing.assert_array_equal(values["dense.bias"], bias.astype(np.float32))


def test_drawing_a_float32_tensor_holds_no_float64_copy_of_it() -> None:
    model = graphdsl.compile(WIDE).model()
    tracemalloc.start()
    try:
        weights.initial_values(model, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = 1024 * 2048 * 4
    assert peak < result * 1.5, f"peak {peak / result:.2f} x the float32 kernel"


def test_the_orthogonal_qr_runs_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    seen: list[int] = []
    qr = np.linalg.qr

    def counting_qr(a: np.ndarray) -> object:
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return qr(a)

    monkeypatch.setattr(np.linalg, "qr", counting_qr)
    model = graphdsl.compile("""\
model Recurrent {
    input  x : float32[B, T, 8]
    target y : float32[B, 16]
    output p = LSTM(16)(x)
    loss mse(p, y)
}
""").model()
    weights.initial_values(model, seed=0)
    assert seen and set(seen) == {1}
