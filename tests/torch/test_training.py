"""`graphdsl train` / `graphdsl eval` on PyTorch, end to end in a subprocess: the
non-finite-loss stop, Ctrl-C, the optimizer-coverage error, and eval's numbers. Each
program and its .npz data are written into tmp_path.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.runtime import checkpoint as ckpt

from .conftest import run_cli, start_cli, wait_for

pytestmark = pytest.mark.torch

# `barrier = log(relu(w))` under SGD(lr 0.3) drives w 1 -> 0.7 -> 0.2714 -> -0.834: the
# fourth step's barrier is log(0) = -inf. A checkpoint is written after every step.
SHRINKING = """
model Shrinks {
    input  x : float32[B, 2]
    target y : float32[B, 1]
    param w : float32[] = constant(1.0)

    output p = Dense(1)(x)
    loss fit = mse(p, y)
    loss barrier = log(relu(w))
}

train Shrinks {
    data = "data.npz"
    optimizer * = sgd(lr = 0.3)
    checkpoint_every = 1
    batch = 4
    epochs = 10
    validation = 0.0
}
"""


def regression_data(path: Path, samples: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 2)).astype(np.float32)
    np.savez(path, x=x, y=(x @ np.array([[1.0], [-2.0]], np.float32) + 0.5))


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


TWO_PARTS = """
model TwoParts {
    input  x : float32[B, 4]
    target y : int32[B]
    layer body = Dense(8, activation = relu)
    layer head = Dense(3)
    output logits = head(body(x))
    loss crossentropy(logits, y, from_logits = true)
}
"""


def two_parts_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((16, 4)).astype(np.float32),
             y=rng.integers(0, 3, 16).astype(np.int32))


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_diagnostic_and_keeps_the_last_checkpoint(
        tmp_path: Path) -> None:
    (tmp_path / "shrinks.gdl").write_text(SHRINKING)
    regression_data(tmp_path / "data.npz")
    result = run_cli("train", "shrinks.gdl", "--model", "Shrinks", "--out", "run",
                     "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    no_traceback(result.stderr)
    assert "[non-finite-loss]" in result.stderr
    assert "`barrier`" in result.stderr and "`fit`" not in result.stderr
    assert "step 4" in result.stderr
    run = tmp_path / "run"
    assert json.loads((run / "latest.json").read_text())["step"] == 3
    assert not (run / "final.safetensors").exists()
    assert not (run / "checkpoints" / "step-00000004.safetensors").exists()
    kept = ckpt.load_checkpoint(str(run / "checkpoints" / "step-00000003.safetensors"))
    w = 1.0
    for _ in range(3):
        w -= 0.3 / w
    np.testing.assert_allclose(kept.tensors["w"], w, rtol=1e-5)


def long_run_program(folder: Path) -> None:
    (folder / "long.gdl").write_text("""
model Long {
    input  x : float32[B, 2]
    target y : float32[B, 1]
    output p = Dense(1)(Dense(32, activation = tanh)(x))
    loss mse(p, y)
}
train Long { data = "data.npz"  batch = 4  epochs = 100000  checkpoint_every = 20
             validation = 0.0 }
""")
    regression_data(folder / "data.npz", samples=32)


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path: Path) -> None:
    long_run_program(tmp_path)
    process = start_cli("train", "long.gdl", "--model", "Long", "--out", "run", "--device",
                        "cpu", cwd=tmp_path)
    latest = tmp_path / "run" / "latest.json"
    wait_for(latest, process)  # the first checkpoint (step 20): training is under way
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    no_traceback(stderr)
    step = json.loads(latest.read_text())["step"]
    assert step >= 20
    saved = tmp_path / "run" / "checkpoints" / f"step-{step:08d}.safetensors"
    assert saved.exists() and saved.with_name(f"step-{step:08d}.state.safetensors").exists()
    assert "--resume" in stderr
    assert not (tmp_path / "run" / "final.safetensors").exists()


def test_a_trainable_parameter_without_optimizer_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "groups.gdl").write_text(
        TWO_PARTS + 'train TwoParts { data = "data.npz"  optimizer body.* = adam(lr = 1e-3) }')
    two_parts_data(tmp_path / "data.npz")
    result = run_cli("train", "groups.gdl", "--device", "cpu", "--out", "run", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    no_traceback(result.stderr)
    assert "[optimizer-coverage]" in result.stderr
    assert "`head.kernel`" in result.stderr and "`head.bias`" in result.stderr
    assert "`body.kernel`" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_eval_reports_the_loss_of_the_saved_weights_on_the_data(tmp_path: Path) -> None:
    from graphdsl.backends.torch.train import train_model

    source = SHRINKING.replace("loss barrier = log(relu(w))", "").replace(
        "param w : float32[] = constant(1.0)", "").replace("checkpoint_every = 1", "")
    path = tmp_path / "fit.gdl"
    path.write_text(source)
    regression_data(tmp_path / "data.npz", samples=20, seed=4)
    program = graphdsl.compile_file(str(path))
    train_model(program, program.model("Shrinks"), {"epochs": 2, "device": "cpu"},
                out=str(tmp_path / "run"), quiet=True)
    weights = tmp_path / "run" / "final.safetensors"
    result = run_cli("eval", "fit.gdl", "--weights", str(weights), "--batch", "3", "--json",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    module = graphdsl.compile_file(str(path), backend="torch").eval()
    module.load_arrays(ckpt.load_checkpoint(str(weights)).tensors)
    data = np.load(tmp_path / "data.npz")
    with torch.no_grad():
        p = module(x=torch.from_numpy(data["x"]))["p"]
    expected = float(((p - torch.from_numpy(data["y"])) ** 2).mean())
    assert report["samples"] == 20
    assert report["loss"] == pytest.approx(expected, rel=1e-5)
    assert report["fit"] == pytest.approx(expected, rel=1e-5)
    # weights of another model: a clear mismatch, not a traceback
    other = tmp_path / "other.gdl"
    other.write_text(source.replace("Dense(1)(x)", "Dense(1)(Dense(3)(x))"))
    result = run_cli("eval", "other.gdl", "--weights", str(weights), cwd=tmp_path)
    assert result.returncode == 1
    no_traceback(result.stderr)
    assert "[checkpoint-mismatch]" in result.stderr


def test_freeze_in_the_train_block_keeps_weights_bit_identical(tmp_path: Path) -> None:
    from graphdsl.backends.torch.train import train_model
    from graphdsl.runtime.weights import initial_values

    two_parts_data(tmp_path / "data.npz")
    program = graphdsl.compile(TWO_PARTS + 'train TwoParts { data = "data.npz"  freeze body.*'
                               "  lr = 1e-2  batch = 4  validation = 0.0 }",
                               base_dir=str(tmp_path))
    graph = program.model()
    driver, _, _ = train_model(program, graph, {"device": "cpu", "epochs": 2},
                               out=str(tmp_path / "run"), quiet=True)
    start = initial_values(graph, 0)
    trained = driver.engine.module.export_arrays()
    for name in ("body.kernel", "body.bias"):
        np.testing.assert_array_equal(trained[name], start[name])
    assert not np.array_equal(trained["head.kernel"], start["head.kernel"])
    assert graph.trainable_count == 8 * 3 + 3


def test_clip_norm_bounds_the_global_gradient_norm(tmp_path: Path) -> None:
    """SGD with lr 1: the update is the (clipped) gradient, so its global norm is the clip."""
    from .conftest import make_engine

    two_parts_data(tmp_path / "data.npz")
    program = graphdsl.compile(TWO_PARTS + "train TwoParts { optimizer * = sgd(lr = 1.0)"
                               "  clip_norm = 0.01 }")
    engine = make_engine(program)
    before = {k: v.copy() for k, v in engine.export_arrays().items()}
    batch = dict(np.load(tmp_path / "data.npz"))
    engine.train_step(batch, 1.0)
    after = engine.export_arrays()
    norm = math.sqrt(sum(float(((after[k] - before[k]).astype(np.float64) ** 2).sum())
                         for k in before))
    assert norm == pytest.approx(0.01, rel=1e-4)
