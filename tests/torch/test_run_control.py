"""`graphdsl train` on PyTorch under interruptions and faults, and the features of a
training command: Ctrl-C at a step boundary, a kill in the middle of a checkpoint write,
NaN gradients, run folders (refusal, --force, the lock), metrics.jsonl flushed per step,
early stopping, the best and last checkpoints, a separate validation file, and each loss
term logged raw and weighted. Tiny models, a few steps each, mostly in process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.backends.torch.train import TorchEngine, train_model
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.callbacks import Callback
from graphdsl.runtime.errors import Interrupted, TrainError

pytestmark = pytest.mark.torch

# Dropout makes every step draw random numbers, Adam has moments and the schedule depends
# on the step: a resumed run matches only if all of it comes back.
NOISY = """
model Noisy {
    input  x : float32[B, 4]
    target y : float32[B, 1]
    output p = Dense(1)(Dropout(0.3)(Dense(8, activation = tanh)(x)))
    loss fit = mse(p, y)
}

train Noisy {
    data = "data.npz"
    batch = 4
    epochs = 3
    validation = 0.0
    seed = 5
    schedule = cosine(warmup = 2)
}
"""


def write_data(path: Path, samples: int = 16, seed: int = 0, features: int = 4) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((samples, features)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) * 0.5 - 0.2).astype(np.float32)
    np.savez(path, x=x, y=y)


def program_in(folder: Path, source: str, samples: int = 16) -> Any:
    write_data(folder / "data.npz", samples)
    return graphdsl.compile(source, base_dir=str(folder))


def weights(path: Path) -> dict[str, np.ndarray]:
    return dict(ckpt.load_checkpoint(str(path)).tensors)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


# ---- Ctrl-C ------------------------------------------------------------------------------


class InterruptingEngine(TorchEngine):
    """Sends itself SIGINT from inside the optimizer step of step ``at``: after the weights
    have changed, before the loop has counted the step."""

    at = 6
    signal = signal.SIGINT

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.steps = 0

        def post_hook(*_: Any) -> None:
            self.steps += 1
            if self.steps == self.at:
                os.kill(os.getpid(), self.signal)

        self.groups[0][1].register_step_post_hook(post_hook)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_saves_exactly_after_the_step_and_resumes_bit_identical(
        tmp_path: Path, signum: int) -> None:
    program = program_in(tmp_path, NOISY)
    model = program.model()
    common = {"device": "cpu", "checkpoint_every": 2}
    train_model(program, model, common, out=str(tmp_path / "whole"), quiet=True)
    from graphdsl.runtime import training

    class Interrupting(InterruptingEngine):
        signal = signum

    with pytest.raises(Interrupted):
        training.train_model(program, model, Interrupting, common,
                             out=str(tmp_path / "cut"), quiet=True)
    cut = tmp_path / "cut"
    assert json.loads((cut / "latest.json").read_text())["step"] == 6
    assert not (cut / "final.safetensors").exists()
    # "after step 6" means the weights the uninterrupted run had after step 6
    same(weights(cut / "checkpoints" / "step-00000006.safetensors"),
         weights(tmp_path / "whole" / "checkpoints" / "step-00000006.safetensors"))
    assert [x["step"] for x in read_jsonl(cut / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    loop, _, _ = train_model(program, model, common, out=str(cut), resume=True, quiet=True)
    assert loop.step == 12
    same(weights(cut / "final.safetensors"), weights(tmp_path / "whole" / "final.safetensors"))
    same(ckpt.load_checkpoint(str(cut / "final.state.safetensors"), ckpt.STATE_FORMAT).tensors,
         ckpt.load_checkpoint(str(tmp_path / "whole" / "final.state.safetensors"),
                              ckpt.STATE_FORMAT).tensors)
    steps = [x["step"] for x in read_jsonl(cut / "metrics.jsonl") if x["split"] == "train"]
    assert steps == list(range(1, 13))


# ---- a kill in the middle of a checkpoint write --------------------------------------------

KILL_MID_WRITE = """
import os, signal, sys
from graphdsl.runtime import checkpoint
writes = []
original = checkpoint.atomic_write_bytes
def half_then_die(path, data):
    writes.append(path)
    if "step-00000004.safetensors" in path:   # the second checkpoint's weights
        with open(path + ".part-of-a-kill", "wb") as fh:
            fh.write(data[: len(data) // 2])
        tmp = os.path.join(os.path.dirname(path), ".tmp-killed.part")
        with open(tmp, "wb") as fh:
            fh.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    original(path, data)
checkpoint.atomic_write_bytes = half_then_die
from graphdsl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_in_the_middle_of_a_checkpoint_write_resumes_bit_identical(
        tmp_path: Path) -> None:
    program_in(tmp_path, NOISY)
    (tmp_path / "noisy.gdl").write_text(NOISY.replace("seed = 5", "seed = 5\n"
                                                      "    checkpoint_every = 2"))
    args = ["train", "noisy.gdl", "--model", "Noisy", "--device", "cpu", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, *args, "--out", "cut"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((tmp_path / "cut" / "latest.json").read_text())["step"] == 2
    program = graphdsl.compile_file(str(tmp_path / "noisy.gdl"))
    train_model(program, program.model(), {"device": "cpu"}, out=str(tmp_path / "cut"),
                resume=True, quiet=True)
    train_model(program, program.model(), {"device": "cpu"}, out=str(tmp_path / "whole"),
                quiet=True)
    same(weights(tmp_path / "cut" / "final.safetensors"),
         weights(tmp_path / "whole" / "final.safetensors"))


# ---- non-finite gradients ----------------------------------------------------------------

# sqrt(w * z) is 0 at a sample with z = 0, a finite loss, but its gradient in w is
# z / (2 sqrt(w z)) = 0 / 0 = NaN. One sample has z = 0: the one the third step draws.
SQRT_AT_ZERO = """
model Root {
    input  x : float32[B, 2]
    input  z : float32[B]
    target y : float32[B, 1]
    param w : float32[] = constant(1.0)
    output p = Dense(1)(x)
    loss fit = mse(p, y)
    loss root = mean(sqrt(w * z))
}

train Root {
    data = "data.npz"
    optimizer * = sgd(lr = 0.01)
    checkpoint_every = 1
    batch = 4
    epochs = 10
    validation = 0.0
}
"""


def sqrt_at_zero_data(path: Path) -> None:
    """16 samples; z is 1 except at the sample the third step of epoch 1 draws."""
    from graphdsl.runtime.data import Dataset

    rng = np.random.default_rng(0)
    x = rng.random((16, 2)).astype(np.float32)
    index = np.arange(16)
    order = np.concatenate([b["i"] for b in Dataset({"i": index}).batches(4, 0, 0)])
    z = np.ones(16, np.float32)
    z[order[8]] = 0.0
    np.savez(path, x=x, z=z, y=x[:, :1] * 2)


def test_a_nan_gradient_under_a_finite_loss_stops_before_the_step(tmp_path: Path) -> None:
    sqrt_at_zero_data(tmp_path / "data.npz")
    program = graphdsl.compile(SQRT_AT_ZERO, base_dir=str(tmp_path))
    with pytest.raises(TrainError) as err:
        train_model(program, program.model(), {"device": "cpu"}, out=str(tmp_path / "run"),
                    quiet=True)
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.code == "non-finite-gradient"
    assert "step 3" in diagnostic.message and "`w`" in diagnostic.message
    run = tmp_path / "run"
    assert json.loads((run / "latest.json").read_text())["step"] == 2
    assert not (run / "checkpoints" / "step-00000003.safetensors").exists()
    assert not (run / "final.safetensors").exists()
    for path in (run / "checkpoints").glob("step-*[0-9].safetensors"):
        assert all(np.isfinite(v).all() for v in weights(path).values()), path
    # w after two steps of SGD on mean(sqrt(w)) (z = 1): w -= 0.01 / (2 sqrt(w))
    w = 1.0
    for _ in range(2):
        w -= 0.01 * 0.5 / np.sqrt(w)
    np.testing.assert_allclose(weights(run / "checkpoints" / "step-00000002.safetensors")["w"],
                               w, rtol=1e-6)


def cli_in_process(args: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`graphdsl ARGS` through the real entry point, in this process: (exit code, stderr)."""
    from graphdsl.cli.main import main

    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def test_eval_of_a_non_finite_checkpoint_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from graphdsl.runtime.weights import initial_values

    (tmp_path / "noisy.gdl").write_text(NOISY)
    write_data(tmp_path / "data.npz")
    model = graphdsl.compile(NOISY).model()
    arrays = initial_values(model, 0)
    arrays["dense.kernel"] = arrays["dense.kernel"].copy()
    arrays["dense.kernel"][0, 0] = np.nan
    ckpt.save_checkpoint(str(tmp_path / "bad.safetensors"), arrays,
                         ckpt.model_metadata(model, "noisy.gdl"))
    code, err = cli_in_process(["eval", "noisy.gdl", "--weights", "bad.safetensors",
                                "--device", "cpu"], tmp_path, monkeypatch, capsys)
    assert code == 1, err
    assert "[non-finite-checkpoint]" in err and "`dense.kernel`" in err


# ---- run folders ---------------------------------------------------------------------------


def test_an_existing_run_folder_needs_resume_or_force(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    program = program_in(tmp_path, NOISY)
    settings = {"device": "cpu", "steps": 2}
    train_model(program, program.model(), settings, out=str(tmp_path / "run"), quiet=True)
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(TrainError) as err:
        train_model(program, program.model(), settings, out=str(tmp_path / "run"), quiet=True)
    assert [d.code for d in err.value.diagnostics] == ["run-folder"]
    assert "--resume" in str(err.value.diagnostics[0].help)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == log  # nothing appended
    (tmp_path / "run" / "notes.txt").write_text("mine")
    train_model(program, program.model(), settings, out=str(tmp_path / "run"), quiet=True,
                force=True)
    assert [x["step"] for x in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # not a run's file
    # the command line says the same, with exit 1
    (tmp_path / "noisy.gdl").write_text(NOISY)
    args = ["train", "noisy.gdl", "--model", "Noisy", "--out", "run", "--steps", "1",
            "--device", "cpu", "--json"]
    code, err = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert code == 1 and "[run-folder]" in err, err
    code, err = cli_in_process([*args, "--force"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert [x["step"] for x in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1]


def test_a_second_run_into_a_folder_in_use_refuses(tmp_path: Path) -> None:
    from filelock import FileLock

    from graphdsl.runtime.run_folder import LOCK_NAME

    program = program_in(tmp_path, NOISY)
    (tmp_path / "run").mkdir()
    # another process holds the folder's lock: a child that locks it and waits
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, filelock, time\n"
         f"lock = filelock.FileLock({str(tmp_path / 'run' / LOCK_NAME)!r}); lock.acquire()\n"
         "print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(TrainError) as err:
            train_model(program, program.model(), {"device": "cpu", "steps": 1},
                        out=str(tmp_path / "run"), quiet=True, resume=True)
        assert [d.code for d in err.value.diagnostics] == ["run-folder"]
        assert "another run" in err.value.diagnostics[0].message
    finally:
        holder.kill()
        holder.communicate()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    # once it is gone, the folder is free (an OS lock dies with its process)
    train_model(program, program.model(), {"device": "cpu", "steps": 1},
                out=str(tmp_path / "run"), quiet=True, resume=True)
    assert FileLock(str(tmp_path / "run" / LOCK_NAME)).acquire(timeout=0)


class ReadsTheLog(Callback):
    def __init__(self, path: Path):
        self.path = path
        self.seen: list[int] = []

    def on_step_end(self, loop: Any, record: Any) -> None:
        self.seen.append(len(self.path.read_text().splitlines()))


def test_metrics_jsonl_is_on_disk_after_every_step(tmp_path: Path) -> None:
    program = program_in(tmp_path, NOISY)
    reader = ReadsTheLog(tmp_path / "run" / "metrics.jsonl")
    train_model(program, program.model(), {"device": "cpu", "steps": 3},
                out=str(tmp_path / "run"), quiet=True, callbacks=[reader])
    assert reader.seen == [1, 2, 3]


# ---- early stopping, best and last checkpoints, val_data ----------------------------------

PLATEAU = NOISY.replace("Dropout(0.3)(", "(").replace(
    "schedule = cosine(warmup = 2)", "optimizer * = sgd(lr = 1e-30)\n    validation = 0.25"
).replace("    validation = 0.0\n", "").replace("epochs = 3", "epochs = 20")


def test_early_stopping_stops_after_patience_epochs_without_improvement(
        tmp_path: Path) -> None:
    # lr 1e-30: the weights do not move, so the validation loss never improves on epoch 1
    program = program_in(tmp_path, PLATEAU.replace("epochs = 20", "epochs = 20\n"
                                                   "    patience = 2"))
    loop, history, data = train_model(program, program.model(), {"device": "cpu"},
                                      out=str(tmp_path / "run"), quiet=True)
    per_epoch = data.train.steps_per_epoch(4)
    assert len(history.epochs) == 3 and loop.step == 3 * per_epoch
    assert history.stop_reason and "early stopping" in history.stop_reason
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["weights"] == \
        "final.safetensors"
    # without patience the same run goes on to the end
    program = program_in(tmp_path, PLATEAU)
    _, history, _ = train_model(program, program.model(), {"device": "cpu"},
                                out=str(tmp_path / "all"), quiet=True)
    assert len(history.epochs) == 20 and history.stop_reason is None


def test_keep_best_and_keep_last(tmp_path: Path) -> None:
    source = NOISY.replace("validation = 0.0", "validation = 0.25\n    checkpoint_every = 1\n"
                           "    keep_last = 2\n    keep_best = 2").replace("epochs = 3",
                                                                            "epochs = 4")
    program = program_in(tmp_path, source)
    train_model(program, program.model(), {"device": "cpu"}, out=str(tmp_path / "run"),
                quiet=True)
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step-{s:08d}{kind}.safetensors" for s in (11, 12) for kind in ("", ".state")]
    valid = {x["step"]: x["loss"] for x in read_jsonl(run / "metrics.jsonl")
             if x["split"] == "valid"}
    assert len(valid) == 4
    best = sorted(valid, key=valid.__getitem__)[:2]
    ranked = json.loads((run / "best.json").read_text())["ranked"]
    assert [r["step"] for r in ranked] == best
    assert [r["value"] for r in ranked] == pytest.approx([valid[s] for s in best])
    assert sorted(p.name for p in (run / "best").iterdir()) == sorted(
        f"step-{s:08d}.safetensors" for s in best)


def test_val_data_is_the_validation_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    program = program_in(tmp_path, NOISY.replace("validation = 0.0",
                                                 'val_data = "held_out.npz"'), samples=16)
    write_data(tmp_path / "held_out.npz", samples=6, seed=9)
    loop, history, data = train_model(program, program.model(), {"device": "cpu"},
                                      out=str(tmp_path / "run"), quiet=True)
    assert len(data.train) == 16 and len(data.valid) == 6   # no share held out of data.npz
    module = loop.engine.module.eval()
    held = np.load(tmp_path / "held_out.npz")
    with torch.no_grad():
        p = module(x=torch.from_numpy(held["x"]))["p"]
    expected = float(((p - torch.from_numpy(held["y"])) ** 2).mean())
    assert history.epochs[-1]["valid"]["loss"] == pytest.approx(expected, rel=1e-5)
    # --val-data on the command line, relative to where it runs
    from graphdsl.runtime.settings import resolve_settings

    settings = resolve_settings(program.model(), {"val_data": "other.npz"})
    assert settings["val_data"] == os.path.abspath("other.npz")
    # NOISY holds nothing out (validation = 0.0): --val-data alone brings validation
    (tmp_path / "noisy.gdl").write_text(NOISY)
    code, err = cli_in_process(["train", "noisy.gdl", "--model", "Noisy", "--out", "cli",
                                "--device", "cpu", "--val-data", "held_out.npz", "--json"],
                               tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert [x["step"] for x in read_jsonl(tmp_path / "cli" / "metrics.jsonl")
            if x["split"] == "valid"] == [4, 8, 12]


# ---- each loss term raw and weighted -----------------------------------------------------

WEIGHTED = """
model Weighted {
    input  x : float32[B, 4]
    target y : float32[B, 1]
    param w : float32[] = constant(2.0)
    output p = Dense(1)(x)
    loss fit = mse(p, y)
    loss reg = 0.2 * square(w)
}

train Weighted {
    data = "data.npz"
    optimizer * = sgd(lr = 0.01)
    batch = 8
    epochs = 2
    validation = 0.25
}
"""


class Board:
    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.setdefault(tag, []).append((step, value))

    def close(self) -> None:
        pass


def test_each_term_is_logged_raw_and_weighted_with_lr_and_speed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    board = Board()
    monkeypatch.setattr(TorchEngine, "open_board", lambda self, folder: board)
    program = program_in(tmp_path, WEIGHTED)
    _, history, _ = train_model(program, program.model(), {"device": "cpu"},
                                out=str(tmp_path / "run"))
    last = history.epochs[-1]
    assert last["valid_raw"]["reg"] == pytest.approx(last["valid"]["reg"] / 0.2, rel=1e-6)
    lines = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    first = lines[0]
    # step 1 sees the initial w = 2: raw 4, weighted 0.8
    assert first["raw"]["reg"] == pytest.approx(4.0) and first["reg"] == pytest.approx(0.8)
    for entry in lines:
        assert entry["loss"] == pytest.approx(entry["fit"] + entry["reg"], rel=1e-6)
        assert entry["reg"] == pytest.approx(0.2 * entry["raw"]["reg"], rel=1e-6)
        assert entry["fit"] == pytest.approx(entry["raw"]["fit"], rel=1e-6)
    train = [x for x in lines if x["split"] == "train"]
    assert all(x["lr"] == pytest.approx(0.01) and x["samples_per_s"] > 0 for x in train)
    assert [x["time"] for x in train] == sorted(x["time"] for x in train)
    assert board.scalars["train/raw/reg"][0] == (1, pytest.approx(4.0))
    assert board.scalars["train/reg"][0] == (1, pytest.approx(0.8))
    assert {"train/lr", "train/samples_per_s", "valid/loss", "valid/raw/reg"} <= set(
        board.scalars)
    # stderr is not a terminal here: one plain line per epoch, each term raw with its weight
    err = capsys.readouterr().err
    epochs = [x for x in err.splitlines() if x.startswith("epoch ")]
    assert len(epochs) == 2 and "step 4/4" in epochs[-1]
    last_valid = [x for x in lines if x["split"] == "valid"][-1]
    assert f"reg {last_valid['raw']['reg']:.4g} (x0.2 = {last_valid['reg']:.4g})" in epochs[-1]
    assert "valid: loss" in epochs[-1] and "samples/s" in epochs[-1]


def test_early_stopping_counts_across_a_resume(tmp_path: Path) -> None:
    """Its patience count is in the checkpoint: interrupted after epoch 2 and resumed, the
    run stops after epoch 4, as an uninterrupted one does (a fresh count would go to 6)."""
    from graphdsl.runtime import training

    program = program_in(tmp_path, PLATEAU.replace("epochs = 20", "epochs = 20\n"
                                                   "    patience = 3"))
    model = program.model()
    _, whole, _ = train_model(program, model, {"device": "cpu"}, out=str(tmp_path / "whole"),
                              quiet=True)
    assert len(whole.epochs) == 4

    class AtEpochTwo(InterruptingEngine):
        at = 6  # 12 training samples, batches of 4: the last step of epoch 2

    with pytest.raises(Interrupted):
        training.train_model(program, model, AtEpochTwo, {"device": "cpu"},
                             out=str(tmp_path / "cut"), quiet=True)
    loop, resumed, _ = train_model(program, model, {"device": "cpu"},
                                   out=str(tmp_path / "cut"), resume=True, quiet=True)
    assert [e["epoch"] for e in resumed.epochs] == [3, 4] and loop.step == 12
    assert resumed.stop_reason is not None
