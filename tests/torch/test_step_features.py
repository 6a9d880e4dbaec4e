"""Step-speed features on PyTorch: background loading, bf16 autocast on CPU, and
`--compile` compiling training, evaluation and the optimizer step once each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.backends.torch.train import train_model

pytestmark = pytest.mark.torch

REGRESSION = """
model Reg {
    input  x : float32[B, 3]
    target y : float32[B, 2]
    output p = Dense(2)(Dense(8, activation = tanh)(x))
    loss fit = mse(p, y)
}

train Reg {
    data = "data.npz"
    optimizer * = adam(lr = 0.01)
    batch = 8
    epochs = 2
    validation = 0.2
}
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "reg.gdl").write_text(REGRESSION)
    rng = np.random.default_rng(0)
    x = rng.random((28, 3)).astype(np.float32)  # 22 train rows: batches of 8, 8, 6
    arrays = {"x": x, "y": np.stack([x.sum(1), x[:, 0] - x[:, 2]], 1).astype(np.float32)}
    np.savez(tmp_path / "data.npz", **arrays)
    (tmp_path / "columns").mkdir()
    for name, value in arrays.items():
        np.save(tmp_path / "columns" / f"{name}.npy", value)
    return tmp_path


def train(folder: Path, out: str, compile: bool = False, **overrides: object) -> object:
    program = graphdsl.compile_file(str(folder / "reg.gdl"))
    driver, _, _ = train_model(program, program.model("Reg"), {"device": "cpu", **overrides},
                               out=str(folder / out), quiet=True, compile=compile)
    return driver


def test_memory_mapped_columns_read_by_worker_processes_train_as_the_npz(
        folder: Path) -> None:
    reference = train(folder, "npz").engine.export_arrays()  # type: ignore[attr-defined]
    mapped = train(folder, "mapped", data=str(folder / "columns"), workers=2)
    for name, value in mapped.engine.export_arrays().items():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(value, reference[name], err_msg=name)


def test_bf16_autocast_on_cpu_trains_close_to_fp32(folder: Path) -> None:
    full = train(folder, "fp32", steps=3).engine  # type: ignore[attr-defined]
    half = train(folder, "bf16", steps=3, precision="bf16").engine  # type: ignore[attr-defined]
    batch = dict(np.load(folder / "data.npz"))
    with torch.no_grad():  # the pass the engine runs computes in bf16 on the CPU
        assert half._losses(batch, half.eval_pass).outputs["p"].dtype == torch.bfloat16
        assert full._losses(batch, full.eval_pass).outputs["p"].dtype == torch.float32
    a, b = full.export_arrays(), half.export_arrays()
    for name in a:
        assert b[name].dtype == np.float32  # master weights stay fp32
        assert not np.array_equal(a[name], b[name])  # bf16 arithmetic differs ...
        np.testing.assert_allclose(b[name], a[name], atol=2e-2)  # ... by bf16's precision


def test_compile_validation_and_more_epochs_do_not_recompile_training(folder: Path) -> None:
    from torch._dynamo.utils import counters

    compiled: list[int] = []
    for epochs in (1, 3):
        torch._dynamo.reset()
        counters.clear()
        driver = train(folder, f"compiled{epochs}", compile=True, epochs=epochs)
        compiled.append(counters["frames"]["ok"])
    # Training on 8 and 6 rows, validation on 6 rows, the optimizer step: compiled in the
    # first epoch, reused in the next two (each epoch validates).
    assert compiled[0] == compiled[1]
    reference = train(folder, "eager", epochs=3).engine.export_arrays()  # type: ignore[attr-defined]
    for name, value in driver.engine.export_arrays().items():  # type: ignore[attr-defined]
        np.testing.assert_allclose(value, reference[name], atol=1e-5, err_msg=name)


def test_activation_checkpointing_recomputes_each_block_with_the_same_gradients() -> None:
    from graphdsl.backends.torch.module import build_module

    from .conftest import example_program, synthetic_arrays, to_tensors

    model = example_program("gpt2_small").model("GPT2")  # 2 blocks, dropout 0.1 kept
    arrays = synthetic_arrays(model)
    runs = []
    for checkpointed in (False, True):
        module = build_module(model, seed=0, checkpoint_activations=checkpointed)
        module.train()
        saved: list[int] = []

        def pack(t: torch.Tensor, saved: list[int] = saved) -> torch.Tensor:
            saved.append(1)
            return t

        torch.manual_seed(3)  # the same dropout masks; the recomputation replays them
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = module.compute_losses(to_tensors(arrays, module.input_names),
                                         to_tensors(arrays, module.target_names)).total
        loss.backward()
        runs.append(({n: p.grad.clone() for n, p in module.named_parameters()}, len(saved),
                     module.generated_source))
    (plain, kept, _), (recomputed, kept_checkpointed, source) = runs
    assert source.count("= _checkpoint(_segment_") == 2  # one per copy of the block
    assert kept_checkpointed < kept  # the blocks' activations are not kept (76 -> 48)
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad, rtol=0, atol=1e-6, msg=name)
