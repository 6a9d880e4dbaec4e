"""Checkpoints with the PyTorch backend: round trips, the tie stored once, partial restore
(S15) and its mismatch error, and a run killed with SIGKILL then resumed ending
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.training import Driver, resolve_settings
from graphdsl.runtime.weights import initial_values

from .conftest import (
    EXAMPLES,
    example_module,
    example_program,
    example_source,
    make_engine,
    read_safetensors_header,
    run_cli,
    start_cli,
    synthetic_arrays,
    synthetic_batch,
    wait_for,
)

pytestmark = pytest.mark.torch


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize(("stem", "model"), [
    ("s01_tied_embeddings", None),            # a tie
    ("s05_masked_conv", None),                # kernel masks
    ("s10_constrained_params", "NoisyLabelsReparam"),  # a re-parameterised tensor
    ("s19_explicit_shapes", None),
    ("resnet18", None),                       # BatchNormalization state
])
def test_round_trip_restores_every_tensor_and_the_predictions(tmp_path: Path, stem: str,
                                                              model: str | None) -> None:
    program = example_program(stem)
    engine = make_engine(program, model, lr=1e-2)
    module = engine.module
    arrays = synthetic_arrays(module.ir, batch=4, steps=5)
    for _ in range(2):  # move the weights (and BatchNormalization's statistics) off init
        engine.train_step(arrays, 1.0)
    saved = module.export_arrays()
    assert set(saved) == set(ckpt.expected_tensors(module.ir))
    path = tmp_path / "w.safetensors"
    ckpt.save_checkpoint(str(path), saved, ckpt.model_metadata(module.ir, f"{stem}.gdl"))
    fresh = example_module(stem, model, seed=9)
    assert any(not np.array_equal(v, saved[k]) for k, v in fresh.export_arrays().items())
    loaded = ckpt.load_checkpoint(str(path))
    assert loaded.metadata["model"] == module.ir.name
    fresh.load_arrays(ckpt.select(fresh.ir, loaded))
    same_arrays(fresh.export_arrays(), saved)
    module.eval()
    fresh.eval()
    inputs, _ = synthetic_batch(module, batch=4, steps=5, seed=1)
    for name, value in module(**inputs).items():
        assert torch.equal(fresh(**inputs)[name], value), name


def test_tied_tensor_is_stored_once_in_the_training_checkpoint(tmp_path: Path) -> None:
    from graphdsl.backends.torch.train import train_model

    program = example_program("gpt2_small")
    module = example_module("gpt2_small")
    data = tmp_path / "gpt2.npz"
    np.savez(data, **synthetic_arrays(module.ir, batch=8, steps=6, pad=False))
    train_model(program, program.model(), {"data": str(data), "steps": 2, "batch": 4,
                                           "device": "cpu", "validation": 0.0},
                out=str(tmp_path / "run"), quiet=True)
    header = read_safetensors_header(tmp_path / "run" / "final.safetensors")
    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    assert [k for k, s in shapes.items() if s == [72, 16]] == ["wte.embeddings"]
    assert set(shapes) == set(ckpt.expected_tensors(program.model()))
    stored = sum(int(np.prod(s)) for s in shapes.values())
    assert stored == program.model().parameter_count


# ---- S15: selective restore ----------------------------------------------------------------


def transfer_source(checkpoint: Path, trunk_call: str = "Trunk(width)") -> str:
    source = example_source("s15_transfer").replace(
        '"checkpoints/pretrain.safetensors"', json.dumps(str(checkpoint)))
    return source.replace("    layer trunk = Trunk(width)                  # same name",
                          f"    layer trunk = {trunk_call}                  # same name")


def pretrained(tmp_path: Path) -> Path:
    from graphdsl.backends.torch.train import train_model

    program = example_program("s15_transfer")
    graph = program.model("Pretrain")
    data = tmp_path / "pretrain.npz"
    np.savez(data, **synthetic_arrays(graph, batch=32))
    train_model(program, graph, {"data": str(data), "steps": 3, "batch": 8, "device": "cpu"},
                out=str(tmp_path / "pretrain"), quiet=True)
    return tmp_path / "pretrain" / "final.safetensors"


def test_s15_trunk_restored_from_model_1_and_head_fresh(tmp_path: Path) -> None:
    weights = pretrained(tmp_path)
    trained = ckpt.load_checkpoint(str(weights)).tensors
    program = graphdsl.compile(transfer_source(weights), base_dir=str(EXAMPLES))
    graph = program.model("Transfer")
    settings = resolve_settings(graph, {"device": "cpu", "seed": 4})
    engine = make_engine(program, "Transfer", seed=4)
    Driver(program, graph, settings, engine, quiet=True).restore_from_files()
    restored = engine.module.export_arrays()
    fresh = initial_values(graph, 4)
    trunk = [n for n in restored if n.startswith("trunk.")]
    assert len(trunk) == 6
    for name in trunk:
        np.testing.assert_array_equal(restored[name], trained[name], err_msg=name)
        assert not np.array_equal(trained[name], fresh[name]), name  # so the test can fail
    for name in ("head.kernel", "head.bias"):
        np.testing.assert_array_equal(restored[name], fresh[name])
    # and the Pretrain head is not in model 2
    assert "dense.kernel" in trained and "dense.kernel" not in restored


@pytest.mark.slow
def test_s15_mismatched_trunk_lists_every_mismatch(tmp_path: Path) -> None:
    weights = pretrained(tmp_path)
    # a narrower trunk with one more layer: three shapes differ, two tensors are missing
    source = transfer_source(weights, "Trunk3(width / 2)") + """
block Trunk3(width: int) {
    input x : float32[B, F]
    h = Dense(width, activation = relu)(x)
    h = Dense(width, activation = relu)(h)
    h = Dense(64)(h)
    output LayerNormalization()(h)
}
"""
    (tmp_path / "transfer.gdl").write_text(source)
    np.savez(tmp_path / "t.npz", **synthetic_arrays(
        graphdsl.compile(source).model("Transfer"), batch=8))
    result = run_cli("train", "transfer.gdl", "--model", "Transfer", "--data", "t.npz",
                     "--device", "cpu", "--out", "run", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "[checkpoint-mismatch]" in result.stderr
    for line in ("shape: `trunk.dense.kernel` is [32, 64]", "shape: `trunk.dense.bias`",
                 "shape: `trunk.dense_1.kernel` is [64, 64]", "shape: `trunk.dense_1.bias`",
                 "missing: `trunk.dense_2.kernel`", "missing: `trunk.dense_2.bias`"):
        assert line in result.stderr, line
    assert "trunk.layer_normalization" not in result.stderr  # that one fits
    assert not (tmp_path / "run" / "final.safetensors").exists()


# ---- kill -9 and --resume --------------------------------------------------------------

RESUMABLE = """
model Resumable(vocab: int = 30, dim: int = 16) {
    input  tokens : int32[B, T]
    target next   : int32[B, T]

    layer embed = Embedding(vocab, dim)
    h = LSTM(dim, return_sequences = true)(Dropout(0.2)(embed(tokens)))
    logits = Dense(vocab, kernel = embed.embeddings.T)(Dropout(0.2)(h))

    output logits
    loss crossentropy(logits, next, from_logits = true)
}

train Resumable {
    data = "data.npz"
    epochs = 60
    batch = 8
    checkpoint_every = 10
    validation = 0.2
    seed = 3
    schedule = cosine(warmup = 5)
}
"""


@pytest.mark.slow
def test_killed_run_resumes_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    """Dropout (random state), Adam (moments), a schedule (the step) and mid-epoch batch
    order all have to come back for the final weights to match bit for bit."""
    (tmp_path / "resumable.gdl").write_text(RESUMABLE)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 30, size=(64, 12)).astype(np.int32)
    np.savez(tmp_path / "data.npz", tokens=tokens, next=np.roll(tokens, -1, axis=1))
    args = ("train", "resumable.gdl", "--device", "cpu", "--model", "Resumable")

    whole = run_cli(*args, "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    killed = start_cli(*args, "--out", "killed", cwd=tmp_path)
    wait_for(tmp_path / "killed" / "latest.json", killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "final.safetensors").exists(), \
        "the run finished before it was killed: nothing was tested"
    step = json.loads((tmp_path / "killed" / "latest.json").read_text())["step"]
    total = json.loads((tmp_path / "whole" / "latest.json").read_text())["step"]
    assert 0 < step < total

    resumed = run_cli(*args, "--out", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {step}" in resumed.stderr  # it did resume, from the checkpoint
    for name in ("final.safetensors", "final.state.safetensors"):
        fmt = ckpt.STATE_FORMAT if "state" in name else ckpt.FORMAT
        a = ckpt.load_checkpoint(str(tmp_path / "whole" / name), fmt)
        b = ckpt.load_checkpoint(str(tmp_path / "killed" / name), fmt)
        same_arrays(a.tensors, b.tensors)


def test_resume_with_a_changed_program_is_a_mismatch(tmp_path: Path) -> None:
    from graphdsl.backends.torch.train import train_model
    from graphdsl.runtime.training import TrainError

    source = example_source("s07_activity_penalty")
    program = graphdsl.compile(source)
    data = tmp_path / "d.npz"
    np.savez(data, **synthetic_arrays(program.model(), batch=8))
    settings = {"data": str(data), "steps": 2, "batch": 4, "device": "cpu"}
    train_model(program, program.model(), settings, out=str(tmp_path / "run"), quiet=True)
    changed = graphdsl.compile(source.replace("hidden: int = 64", "hidden: int = 32"))
    with pytest.raises(TrainError) as err:
        train_model(changed, changed.model(), settings, out=str(tmp_path / "run"),
                    resume=True, quiet=True)
    assert [d.code for d in err.value.diagnostics] == ["checkpoint-mismatch"]


def test_a_file_that_is_not_a_checkpoint_is_a_diagnostic(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_checkpoint(str(bad))
    assert [d.code for d in err.value.diagnostics] == ["bad-checkpoint"]
    other = tmp_path / "plain.safetensors"
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(other))  # safetensors, but not ours
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_checkpoint(str(other))
    assert "not a graphdsl checkpoint" in err.value.diagnostics[0].message
