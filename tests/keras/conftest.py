"""Shared helpers for the Keras tests (and tests/parity): building models, snapshots of
their canonical variables, and running the real command line.

Examples are shrunk exactly as for the PyTorch tests (tests/torch/conftest.py:
``example_source`` substitutes smaller defaults for the model formals named in ``SHRINK``
and applies ``REWRITE``); ``example_keras`` may substitute more formals (``formals``) and
plain-text pieces (``replace``), e.g. ``Dropout(0.3)`` -> ``Dropout(0.0)`` where a test
compares a training step with a hand computation and random dropout would hide it.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import graphdsl

from ..torch.conftest import EXAMPLES, example_source, shrink_source

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["EXAMPLES", "ROOT", "TINY_LM", "example_keras", "example_text", "keras_model",
           "run_cli", "run_in_process", "snapshot", "write_tiny_lm"]

# A tied LSTM language model small enough for command-line runs: two loss terms (the task
# and a weight penalty) and a metric; 24 training samples, batches of 8: 3 steps an epoch.
TINY_LM = """
model TinyLM(vocab: int = 20, dim: int = 8) {
    input  tokens : int32[B, T]      # 0 is padding
    target next   : int32[B, T]

    layer embed = Embedding(vocab, dim, mask_zero = true)
    h = LSTM(dim, return_sequences = true)(embed(tokens))
    logits = Dense(vocab, kernel = embed.embeddings.T)(h)      # tied
    output logits
    loss task = crossentropy(logits, next, from_logits = true)
    loss decay = 0.001 * sum(square(embed.embeddings))
    metric accuracy(logits, next)
}

train TinyLM {
    data = "tiny.npz"
    epochs = 2
    batch = 8
    lr = 1e-2
    validation = 0.25
    checkpoint_every = 2
}
"""


def keras_model(source: str, model: str | None = None, seed: int = 0,
                file: str = "<test>", base_dir: str | None = None) -> Any:
    """A GraphModel (a native ``keras.Model``) for ``source``."""
    return graphdsl.compile(source, file=file, base_dir=base_dir, backend="keras",
                            model=model, seed=seed)


def example_text(stem: str, formals: Mapping[str, Any] | None = None,
                 replace: Sequence[tuple[str, str]] = ()) -> str:
    """The shrunk example's source, with more formals and text pieces substituted."""
    text = example_source(stem)
    for old, new in replace:
        assert old in text, f"{stem}: `{old}` not found to replace"
        text = text.replace(old, new)
    return shrink_source(text, dict(formals or {}))


def example_keras(stem: str, model: str | None = None, seed: int = 0,
                  formals: Mapping[str, Any] | None = None,
                  replace: Sequence[tuple[str, str]] = ()) -> Any:
    """A GraphModel for a shrunk example (relative paths resolve from examples/)."""
    return keras_model(example_text(stem, formals, replace), model, seed,
                       file=str(EXAMPLES / f"{stem}.gdl"), base_dir=str(EXAMPLES))


def snapshot(model: Any) -> dict[str, np.ndarray]:
    """Copies of the model's canonical variables (dotted names -> numpy)."""
    return {name: np.array(v.numpy()) for name, v in model.canonical_variables().items()}


def write_tiny_lm(folder: Path) -> Path:
    """tiny_lm.gdl and its data, tiny.npz (32 padded sequences), in ``folder``."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 7, 32)
    real = np.arange(6)[None, :] < lengths[:, None]
    tokens = np.where(real, rng.integers(1, 20, (32, 6)), 0).astype("int32")
    next_ = np.where(real, np.roll(tokens, -1, axis=1), 0).astype("int32")
    np.savez(folder / "tiny.npz", tokens=tokens, next=next_)
    path = folder / "tiny_lm.gdl"
    path.write_text(TINY_LM, encoding="utf-8")
    return path


def run_cli(args: Sequence[str], cwd: Path | str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`graphdsl ARGS` in a fresh process (no colour, TensorFlow's start-up logging off)."""
    env = {**os.environ, "NO_COLOR": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "graphdsl.cli", *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_in_process(args: Sequence[str]) -> tuple[int, str, str]:
    """`graphdsl ARGS` through ``graphdsl.cli.main.main`` in this process (no start-up cost):
    (exit code, stdout, stderr). Give file arguments as absolute paths."""
    from graphdsl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()
