"""Keras on several devices (tf.distribute.MirroredStrategy over logical CPU devices),
gradient accumulation and bf16 on CPU. The reference is the same program on one device
with the same global batches. The logical devices are declared in a subprocess: they
must be set before TensorFlow initialises, and would otherwise leak into other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphdsl

pytestmark = pytest.mark.keras

# Dropout-free; L2 decay and clipping act on the whole batch's gradient, so they show a
# replica or a pass that decays or clips its own share.
REGRESSION = """
model Reg {
    input  x : float32[B, 3]
    target y : float32[B, 2]
    output p = Dense(2)(Dense(8, activation = tanh)(x))
    loss fit = mse(p, y)
}

train Reg {
    data = "data.npz"
    optimizer * = adam(lr = 0.01, weight_decay = 0.1)
    clip_norm = 0.5
    batch = 8
    epochs = 2
    validation = 0.2
}
"""

TRAIN = """
import json, sys
import numpy as np
import graphdsl
from graphdsl.backends.keras.train import train_model
program = graphdsl.compile_file("reg.gdl")
driver, _, _ = train_model(program, program.model("Reg"), json.loads(sys.argv[1]),
                           out=sys.argv[2], quiet=True)
strategy = driver.engine.strategy
np.savez(sys.argv[2] + ".npz", **driver.engine.export_arrays())
print(json.dumps({"replicas": strategy.num_replicas_in_sync if strategy else 1}))
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "reg.gdl").write_text(REGRESSION)
    (tmp_path / "train.py").write_text(TRAIN)
    rng = np.random.default_rng(0)
    x = rng.random((28, 3)).astype(np.float32)  # 22 train rows: batches of 8, 8, 6
    np.savez(tmp_path / "data.npz", x=x,
             y=np.stack([x.sum(1), x[:, 0] - x[:, 2]], 1).astype(np.float32))
    return tmp_path


def train(folder: Path, out: str, **settings: object) -> dict[str, np.ndarray]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "train.py", json.dumps({"device": "cpu",
                                                                   **settings}), out],
                          cwd=folder, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    replicas = json.loads(done.stdout.strip().splitlines()[-1])["replicas"]
    assert replicas == settings.get("devices", 1)
    return dict(np.load(folder / f"{out}.npz"))


def close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.slow
def test_two_logical_devices_end_with_the_one_device_weights(folder: Path) -> None:
    close(train(folder, "two", devices=2), train(folder, "one"))


def test_accumulating_two_passes_is_one_twice_larger_batch(folder: Path) -> None:
    from graphdsl.backends.keras.train import train_model

    program = graphdsl.compile_file(str(folder / "reg.gdl"))
    runs = []
    for out, settings in (("acc", {"batch": 4, "accumulate": 2}), ("big", {})):
        driver, _, _ = train_model(program, program.model("Reg"),
                                   {"device": "cpu", **settings}, out=str(folder / out),
                                   quiet=True)
        runs.append(driver.engine.export_arrays())
    close(*runs)


def test_bf16_on_cpu_trains_close_to_fp32(folder: Path) -> None:
    import keras

    from graphdsl.backends.keras.train import train_model

    program = graphdsl.compile_file(str(folder / "reg.gdl"))
    runs = []
    try:
        for out, precision in (("fp32", "fp32"), ("bf16", "bf16")):
            driver, history, _ = train_model(program, program.model("Reg"),
                                             {"device": "cpu", "steps": 3,
                                              "precision": precision},
                                             out=str(folder / out), quiet=True)
            assert keras.mixed_precision.global_policy().compute_dtype == (
                "bfloat16" if precision == "bf16" else "float32")
            assert np.isfinite(history.epochs[-1]["train"]["loss"])
            runs.append(driver.engine.export_arrays())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    full, half = runs
    for name in full:
        assert half[name].dtype == np.float32  # the variables stay fp32
        assert not np.array_equal(full[name], half[name])
        np.testing.assert_allclose(half[name], full[name], atol=2e-2, err_msg=name)
