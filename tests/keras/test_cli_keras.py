"""`graphdsl train --backend keras` and `graphdsl eval --backend keras` on the real command
line: progress with every loss term, metrics.jsonl, checkpoints, `--resume`, and the stop
on a non-finite loss.

The program (conftest.TINY_LM) is a tied LSTM language model with two loss terms (`task`
and a weight penalty `decay`) and a metric, trained for 2 epochs of 3 steps with a
checkpoint every 2 steps, on 32 padded sequences written next to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphdsl.runtime import checkpoint as ckpt

from .conftest import keras_model, run_cli, write_tiny_lm

pytestmark = pytest.mark.keras

TERMS = ("task", "decay")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tensors(path: Path) -> dict[str, np.ndarray]:
    return dict(ckpt.load_checkpoint(str(path)).tensors)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli_keras")
    write_tiny_lm(path)
    return path


@pytest.fixture(scope="module")
def full_run(folder: Path) -> tuple[Any, Path]:
    """Six steps without interruption, human-readable output."""
    done = run_cli(["train", "tiny_lm.gdl", "--backend", "keras", "--out", "full"], folder)
    return done, folder / "full"


def test_train_shows_progress_and_every_term(full_run: tuple[Any, Path]) -> None:
    done, _ = full_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    # the epoch summaries, then the results table
    for epoch, step in ((1, 3), (2, 6)):
        (line,) = [x for x in done.stderr.splitlines() if x.startswith(f"epoch {epoch}  step")]
        assert f"step {step}" in line and "train: loss" in line
        assert all(f"{t} " in line for t in TERMS), line
    assert "steps/s" in done.stderr                          # the live progress bar
    assert "TinyLM" in done.stdout and "valid loss" in done.stdout


def test_metrics_jsonl_has_every_term_and_loss_is_their_sum(full_run: tuple[Any, Path]) -> None:
    done, run = full_run
    assert done.returncode == 0, done.stderr[-3000:]
    lines = read_jsonl(run / "metrics.jsonl")
    train = [x for x in lines if x["split"] == "train"]
    valid = [x for x in lines if x["split"] == "valid"]
    assert [x["step"] for x in train] == [1, 2, 3, 4, 5, 6]
    assert [x["epoch"] for x in train] == [1, 1, 1, 2, 2, 2]
    assert [(x["step"], x["epoch"]) for x in valid] == [(3, 1), (6, 2)]
    for entry in train + valid:
        assert {"loss", *TERMS, "accuracy"} <= set(entry)
        assert entry["loss"] == pytest.approx(sum(entry[t] for t in TERMS), rel=1e-6)
        assert all(np.isfinite(entry[k]) for k in ("loss", *TERMS, "accuracy"))


def test_checkpoints_hold_the_tie_once_and_load_into_keras(full_run: tuple[Any, Path],
                                                           folder: Path) -> None:
    done, run = full_run
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [f"step-{s:08d}{kind}.safetensors" for s in (2, 4, 6)
                     for kind in ("", ".state")]
    pointer = json.loads((run / "latest.json").read_text(encoding="utf-8"))
    assert pointer["step"] == 6 and pointer["weights"] == "final.safetensors"
    final = tensors(run / "final.safetensors")
    assert sorted(final) == ["dense.bias", "embed.embeddings", "lstm.bias", "lstm.kernel",
                             "lstm.recurrent_kernel"]                 # no copy of the tie
    np.testing.assert_array_equal(final["embed.embeddings"],
                                  tensors(run / "checkpoints" / "step-00000006.safetensors")
                                  ["embed.embeddings"])
    assert not np.array_equal(final["embed.embeddings"],
                              tensors(run / "checkpoints" / "step-00000002.safetensors")
                              ["embed.embeddings"])
    # the checkpoint is the model's weights: loaded into a fresh Keras model, the
    # validation loss it reports is the one the run logged
    model = keras_model((folder / "tiny_lm.gdl").read_text(encoding="utf-8"), seed=5)
    model.load_arrays(final)
    assert {k: v.numpy().tolist() for k, v in model.canonical_variables().items()} == \
        {k: v.tolist() for k, v in final.items()}


@pytest.mark.slow
def test_resume_continues_the_step_counter_and_ends_where_an_uninterrupted_run_ends(
        full_run: tuple[Any, Path], folder: Path) -> None:
    done, full = full_run
    assert done.returncode == 0, done.stderr[-3000:]
    first = run_cli(["train", "tiny_lm.gdl", "--backend", "keras", "--out", "split",
                     "--steps", "3", "--json"], folder)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert report["ok"] is True and report["runs"][0]["steps"] == 3
    run = folder / "split"
    assert json.loads((run / "latest.json").read_text(encoding="utf-8"))["step"] == 3
    second = run_cli(["train", "tiny_lm.gdl", "--backend", "keras", "--out", "split",
                      "--resume"], folder)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "(step 3)" in second.stderr
    steps = [x["step"] for x in read_jsonl(run / "metrics.jsonl") if x["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    # weights, optimizer moments and data order were all restored: the same end point
    resumed, uninterrupted = tensors(run / "final.safetensors"), tensors(full / "final.safetensors")
    for name, value in uninterrupted.items():
        np.testing.assert_allclose(resumed[name], value, atol=1e-6, err_msg=name)
    full_log = [x for x in read_jsonl(full / "metrics.jsonl") if x["split"] == "train"]
    split_log = [x for x in read_jsonl(run / "metrics.jsonl") if x["split"] == "train"]
    for a, b in zip(full_log, split_log, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)


BLOWUP = """
model Blowup {
    input  x : float32[B, 4]
    target y : float32[B, 1]

    p = Dense(1)(x)
    output p
    loss fit = mse(p, y)
    loss log_barrier = 0.1 * mean(log(x))      # the data has negative x: NaN
}

train Blowup {
    data = "blowup.npz"
    batch = 4
    checkpoint_every = 1
}
"""


def test_non_finite_loss_stops_with_a_diagnostic_naming_the_term(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "blowup.npz", x=-rng.random((16, 4)).astype("float32"),
             y=rng.random((16, 1)).astype("float32"))
    (tmp_path / "blowup.gdl").write_text(BLOWUP, encoding="utf-8")
    done = run_cli(["train", "blowup.gdl", "--backend", "keras", "--out", "run"], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert "internal error" not in done.stderr
    assert "[non-finite-loss]" in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "[non-finite-loss]" in x]
    assert "`log_barrier`" in line and "`fit`" not in line and "step 1" in line
    assert not (tmp_path / "run" / "final.safetensors").exists()
    assert not (tmp_path / "run" / "checkpoints").exists() or \
        not any((tmp_path / "run" / "checkpoints").iterdir())
