"""`adapt` in a train block gives the statistics `keras.layers.Normalization.adapt` computes
on the same training rows, through `graphdsl train` in both backends, and the checkpoint
keeps them."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from graphdsl.cli.main import main
from graphdsl.runtime.checkpoint import load_checkpoint
from graphdsl.runtime.data import Dataset

pytestmark = [pytest.mark.keras, pytest.mark.torch]

TABULAR = """
model Tabular {
    input  features : float32[B, 4]
    target y : float32[B, 1]
    layer norm = Normalization(axis = -1)
    output p = Dense(1)(Dense(8, activation = relu)(norm(features)))
    loss mse(p, y)
}

train Tabular {
    data = "tabular.npz"
    adapt = "norm"
    batch = 16
    epochs = 1
    validation = 0.25
}
"""


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_adapt_matches_keras_normalization_adapt(tmp_path: Path, backend: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    features = (rng.normal(size=(200, 4)) * [1, 10, 100, 0.1] + [5, -3, 50, 0])
    features = features.astype(np.float32)
    np.savez(tmp_path / "tabular.npz", features=features, y=features[:, :1] * 0.1)
    (tmp_path / "tabular.gdl").write_text(TABULAR)
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "tabular.gdl"), "--backend", backend,
                 "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "adapted 1 Normalization layer(s) to 150 training rows" in said.out + said.err

    train, _ = Dataset({"features": features}).split(0.25, 0)  # the rows the run trains on
    reference = keras.layers.Normalization(axis=-1)
    reference.adapt(train.arrays["features"])
    tensors = load_checkpoint(str(out / "final.safetensors")).tensors
    np.testing.assert_allclose(tensors["norm.adapt_mean"], np.ravel(reference.mean),
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(tensors["norm.adapt_variance"], np.ravel(reference.variance),
                               rtol=1e-5)
