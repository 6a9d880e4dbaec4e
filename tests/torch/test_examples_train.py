"""Every example model trains: a few steps of the real driver (`train_model`: data from an
.npz, batches, the example's own optimizers, schedule and constraints) lower its loss.

Each example is shrunk (conftest.SHRINK) and trained on 16 synthetic samples from its
declared inputs and targets (conftest.synthetic_arrays), 10 steps of batch 8. The loss
is measured before and after with dropout off, on the same 16 samples. s15's Transfer
has its `restore` line removed here (restoring is tested in test_checkpoint.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import graphdsl

from .conftest import ALL_EXAMPLES, EXAMPLES, example_source, synthetic_arrays, to_tensors

pytestmark = pytest.mark.torch

# Prediction-only models: they declare no loss, so there is nothing to train.
INFERENCE_ONLY = {("bert_base", "BertBase"), ("s14_gan", "Generator"),
                  ("s14_gan", "Discriminator"), ("lstm_seq2seq", "Encoder"),
                  ("lstm_seq2seq", "DecoderStep")}


def trainable_source(stem: str) -> str:
    return example_source(stem).replace(
        'restore trunk.* from "checkpoints/pretrain.safetensors"', "")


def compile_example(stem: str, **options: Any) -> Any:
    return graphdsl.compile(trainable_source(stem), file=str(EXAMPLES / f"{stem}.gdl"),
                            base_dir=str(EXAMPLES), **options)


PROGRAMS = {stem: compile_example(stem) for stem in ALL_EXAMPLES}
EXAMPLE_MODELS = [(stem, name) for stem, program in PROGRAMS.items() for name in program.models]


def eval_loss(module: Any, arrays: dict[str, np.ndarray]) -> float:
    module.eval()
    with torch.no_grad():
        result = module.compute_losses(to_tensors(arrays, module.input_names),
                                       to_tensors(arrays, module.target_names))
    return float(result.total)


def test_only_the_prediction_only_models_have_no_loss() -> None:
    no_loss = {(stem, name) for stem, name in EXAMPLE_MODELS
               if not PROGRAMS[stem].models[name].losses}
    assert no_loss == INFERENCE_ONLY


@pytest.mark.parametrize(("stem", "model"), [m for m in EXAMPLE_MODELS
                                             if m not in INFERENCE_ONLY])
def test_example_trains_with_a_falling_loss(tmp_path: Path, stem: str, model: str) -> None:
    from graphdsl.backends.torch.train import train_model

    program = compile_example(stem)
    graph = program.models[model]
    arrays = synthetic_arrays(graph, batch=16, steps=6)
    np.savez(tmp_path / "data.npz", **arrays)
    before = eval_loss(compile_example(stem, backend="torch", model=model), arrays)
    driver, history, _ = train_model(
        program, graph, {"data": str(tmp_path / "data.npz"), "steps": 10, "batch": 8,
                         "epochs": 100, "validation": 0.0, "device": "cpu"},
        out=str(tmp_path / "run"), quiet=True)
    assert driver.step == 10 and (tmp_path / "run" / "final.safetensors").exists()
    after = eval_loss(driver.engine.module, arrays)
    assert math.isfinite(before) and math.isfinite(after)
    assert after < before, f"{stem} {model}: loss {before:.5f} -> {after:.5f}"


def test_press_wolf_trains_on_its_text_corpus(tmp_path: Path) -> None:
    """The example's own data: word tokens from shakespeare.txt.gz, a vocabulary file, and
    validation perplexity."""
    from graphdsl.backends.torch.train import train_model

    program = compile_example("press_wolf")
    driver, history, data = train_model(program, program.models["TiedLM"],
                                        {"steps": 3, "device": "cpu"},
                                        out=str(tmp_path / "run"), quiet=True)
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())["tokens"]
    assert len(vocab) == 50 and vocab[:3] == ["<pad>", "<unk>", "<eos>"]
    valid = history.epochs[-1]["valid"]
    assert valid["perplexity"] == pytest.approx(math.exp(valid["loss"]), rel=1e-6)
    assert 1.0 < valid["perplexity"] < 50.0 * 1.5
