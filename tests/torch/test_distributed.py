"""Training over several processes (`torchrun`, gloo on CPU) and gradient accumulation.

The reference is the same program trained in one process on the same global batches: DDP
averages the processes' gradients, and the engine weights each process's mean loss by its
share of the rows, so two processes must end with the one-process weights. The data are
sized so that every epoch ends on a short batch (6 of 8 rows) and validation holds an odd
number of rows: the uneven cases are where a wrong weighting or reduction would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.backends.torch.train import train_model
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.training import TrainError

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
    checkpoint_every = 3
}
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "reg.gdl").write_text(REGRESSION)
    rng = np.random.default_rng(0)
    x = rng.random((28, 3)).astype(np.float32)  # 22 train rows: batches of 8, 8, 6
    np.savez(tmp_path / "data.npz", x=x,
             y=np.stack([x.sum(1), x[:, 0] - x[:, 2]], 1).astype(np.float32))
    return tmp_path


def one_process(folder: Path, out: str, **overrides: object) -> dict[str, np.ndarray]:
    program = graphdsl.compile_file(str(folder / "reg.gdl"))
    driver, _, _ = train_model(program, program.model("Reg"),
                               {"device": "cpu", **overrides}, out=str(folder / out),
                               quiet=True)
    return driver.engine.export_arrays()  # type: ignore[no-any-return]


def torchrun(folder: Path, processes: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", "graphdsl", "train", "reg.gdl",
               "--model", "Reg", "--device", "cpu", *args]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, rtol=0, err_msg=name)


def weights(path: Path) -> dict[str, np.ndarray]:
    return dict(ckpt.load_checkpoint(str(path)).tensors)


@pytest.mark.slow
def test_two_processes_end_with_the_one_process_weights_and_write_once(folder: Path) -> None:
    reference = one_process(folder, "one")
    # Two processes, each 2 passes of 2 rows per step (accumulate): the same global batch.
    torchrun(folder, 2, "--out", "two", "--batch", "4", "--accumulate", "2")
    two = folder / "two"
    close(weights(two / "final.safetensors"), reference)
    assert ckpt.load_checkpoint(str(two / "final.safetensors")).metadata["world_size"] == "2"
    # One writer: one file per checkpoint, one metrics line per step and per validation.
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "step-00000003.safetensors", "step-00000003.state.safetensors",
        "step-00000006.safetensors", "step-00000006.state.safetensors"]
    lines = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    ones = [json.loads(line) for line in (folder / "one" / "metrics.jsonl").read_text()
            .splitlines()]
    assert len(lines) == len(ones) == 6 + 2
    # Logged step losses and validation are reduced over both processes' rows.
    for mine, theirs in zip(lines, ones, strict=True):
        assert mine["split"] == theirs["split"] and mine["step"] == theirs["step"]
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-5)


@pytest.mark.slow
def test_resume_under_a_different_number_of_processes(folder: Path) -> None:
    reference = one_process(folder, "one")
    halfway = one_process(folder, "half", steps=3)
    torchrun(folder, 2, "--out", "two", "--steps", "3", "--shard")  # FSDP2, gathered on save
    close(weights(folder / "two" / "final.safetensors"), halfway)
    program = graphdsl.compile_file(str(folder / "reg.gdl"))
    driver, _, _ = train_model(program, program.model("Reg"), {"device": "cpu"},
                               out=str(folder / "two"), resume=True, quiet=True)
    assert driver.step == 6
    close(driver.engine.export_arrays(), reference)


def test_a_batch_that_does_not_split_is_refused(folder: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # What torchrun tells the second of two processes; the check comes before any
    # process group is joined, so no launcher is needed to see it.
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(TrainError) as caught:
        one_process(folder, "odd", batch=7)
    message = caught.value.diagnostics[0]
    assert message.message == "`batch = 7` does not split evenly over 2 processes"
    assert "6 or 8" in (message.help or "")
    assert not (folder / "odd").exists()


def test_accumulating_k_batches_is_one_k_times_larger_batch(folder: Path) -> None:
    # 22 rows: accumulate 2 x 4 rows per step (the last step 3 + 3) against 8 rows at once.
    torch.manual_seed(0)
    close(one_process(folder, "acc", batch=4, accumulate=2), one_process(folder, "big"))
