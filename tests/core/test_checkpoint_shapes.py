"""A checkpoint keeps every tensor's shape, a scalar parameter's `()` included (numpy's
`ascontiguousarray` would make it `(1,)`, which the model then refuses to load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphdsl.compiler import compile_text
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.weights import initial_values

SCALAR = """
model Scaled {
    input x : float32[B, 3]
    param a : float32[] = ones
    inference output y = Dense(2)(x) * a
}
"""


def test_a_scalar_parameter_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    model = compile_text(SCALAR, "<test>").model()
    values = initial_values(model, 0)
    values["a"] = np.asarray(2.5, np.float32)
    path = str(tmp_path / "scaled.safetensors")
    ckpt.save_checkpoint(path, values, ckpt.model_metadata(model, "<test>"))
    loaded = ckpt.select(model, ckpt.load_checkpoint(path))
    assert loaded["a"].shape == () and float(loaded["a"]) == 2.5
    assert {k: v.shape for k, v in loaded.items()} == {k: v.shape for k, v in values.items()}
