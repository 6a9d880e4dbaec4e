"""`adapt = "pattern"`: Normalization statistics from the training rows, read in chunks."""

from __future__ import annotations

import numpy as np
import pytest

from graphdsl.compiler import compile_text
from graphdsl.runtime import adapt
from graphdsl.runtime.data import Dataset
from graphdsl.runtime.errors import TrainError

IMAGES = """
model Images {
    input  image : float32[B, 5, 6, 3]
    input  extra : float32[B, 2]
    target y : float32[B, 1]
    layer pixels = Normalization(axis = -1)
    layer rows = Normalization(axis = [1, 3])
    layer side = Normalization()
    h = GlobalAveragePooling2D()(pixels(image) + rows(image))
    output p = Dense(1)(concat([h, side(extra)], axis = -1))
    loss mse(p, y)
}

train Images {
    adapt = "*"
}
"""


def test_statistics_are_numpys_over_the_reduced_axes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapt, "CHUNK_ROWS", 7)  # several chunks, the last one short
    rng = np.random.default_rng(0)
    image = (rng.normal(size=(30, 5, 6, 3)) * [1.0, 20.0, 0.1] + [3.0, -40.0, 0.0])
    extra = rng.normal(size=(30, 2)) * 5 + 100
    model = compile_text(IMAGES, "<test>").model()
    train = Dataset({"image": image.astype(np.float32), "extra": extra.astype(np.float32),
                     "y": np.zeros((30, 1), np.float32)})
    stats, rows = adapt.adapted_statistics(model, "*", train)
    assert rows == 30
    x = image.astype(np.float32).astype(np.float64)
    expected = {
        "pixels": (x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))),
        "rows": (x.mean(axis=(0, 2)), x.var(axis=(0, 2))),
        "side": (extra.astype(np.float32).astype(np.float64).mean(axis=0),
                 extra.astype(np.float32).astype(np.float64).var(axis=0)),
    }
    assert set(stats) == {f"{k}.adapt_{s}" for k in expected for s in ("mean", "variance")}
    for layer, (mean, variance) in expected.items():
        assert stats[f"{layer}.adapt_mean"].dtype == np.float32
        np.testing.assert_allclose(stats[f"{layer}.adapt_mean"], mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(stats[f"{layer}.adapt_variance"], variance, rtol=1e-5)
    # each shaped like the layer's state
    names = {model.node(p)["name"]: model.node(p)["type"].shape for p in model.params}
    for name, value in stats.items():
        assert value.shape == tuple(names[name]), name


def test_a_token_stream_cannot_be_adapted_to() -> None:
    model = compile_text(IMAGES, "<test>").model()
    with pytest.raises(TrainError) as caught:
        adapt.adapted_statistics(model, "*", object())
    assert caught.value.diagnostics[0].code == "train-setting"
