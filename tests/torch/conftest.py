"""Shared helpers for the PyTorch tests: shrunk example programs and synthetic batches.

Shrinking. The examples are written at their real sizes (GPT-2 has 124M parameters).
The tests compile them with smaller model formals: ``example_program(stem)`` rewrites the
defaults in the model headers (``vocab: int = 50257`` -> ``vocab: int = 72``) from
``SHRINK`` and applies the plain-text substitutions of ``REWRITE`` (list formals, optimizers),
then compiles the text with the example's folder
as base, so relative paths (``data/vectors.npy``) still resolve. The structure of every
program (its layers, ties, masks, constraints) is unchanged; only sizes shrink.

Synthetic batches. ``synthetic_arrays(model)`` makes one batch for a model from its input
and target types: symbolic dims become ``batch`` (B) or ``steps`` (every other name);
integer inputs are drawn below the smallest ``Embedding`` they reach (and below the
context of any ``positions`` embedding), with a padded tail (id 0) on every row but the
first; integer targets are drawn below the class count of the prediction they are scored
against; bool inputs are True on the same unpadded steps; floats are uniform in [0, 1).
(graphdsl/runtime/synthetic.py makes batches for `--check-parity`; these differ on purpose: real
padding tails that the masks must handle, masks aligned with them, ids that stay inside
tables reached through other ops, and [0, 1) floats that suit probability targets.)

Training by hand: ``make_engine`` gives the backend's TorchEngine. Command-line tests run
`python -m graphdsl.cli` in a subprocess (``run_cli`` / ``start_cli``) with one OpenMP
thread.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import Sym

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Model formals substituted into the header defaults, per example file.
SHRINK: dict[str, dict[str, Any]] = {
    "bigru_imdb": {"max_features": 50, "units": 8, "embedding_dim": 8},
    "bert_base": {"vocab": 64, "context": 16, "d": 16, "layers": 2, "heads": 2, "ff": 32},
    "gpt2_small": {"vocab": 72, "context": 16, "d": 16, "layers": 2, "heads": 2},
    "lstm_seq2seq": {"num_encoder_tokens": 7, "num_decoder_tokens": 9, "latent_dim": 16},
    "lstm_lm": {"vocab": 50, "dim": 16},
    "mobilenet_v2": {"classes": 10, "size": 32, "alpha": 0.35},
    "press_wolf": {"vocab": 50, "dim": 16},
    "resnet18": {"classes": 10, "width": 8, "size": 32},
    "resnext50": {"classes": 10, "size": 64, "width": 8, "groups": 2, "width_per_group": 16},
    "s01_tied_embeddings": {"vocab": 50, "dim": 8},
    "s02_embedding_lookup": {"vocab": 50, "dim": 8},
    "s08_attention_from_parts": {"vocab": 50, "d": 16, "heads": 2},
    "s09_expected_embedding": {"vocab": 50, "dim": 8, "hidden": 16},
    "s11_vae": {"features": 16, "hidden": 16},
    "s12_masked_pooling": {"vocab": 50, "d": 8},
    "s14_gan": {"noise_dim": 8, "features": 16},
    "s16_finetune_groups": {"vocab": 50, "context": 16, "d": 16, "heads": 2, "layers": 2},
    "s18_hidden_states": {"vocab": 50, "d": 8, "layers": 2},
    "s20_blocks_repeat": {"vocab": 50, "d": 16, "heads": 2, "ff": 32, "layers": 2},
    "transformer_lm": {"ntoken": 50, "ninp": 16, "nhead": 2, "nhid": 32, "nlayers": 2},
    "unet_pets": {"size": 32},
}
# Plain-text substitutions (sizes written as literals rather than formals).
# The published learning rates (SGD at 0.1 for ImageNet batches of 256; SGD at 20 with
# gradient clipping for the word-level LM) suit the full models on real data, not ten
# steps of a shrunk one on random batches: the training tests use Adam there.
REWRITE: dict[str, list[tuple[str, str]]] = {
    "resnext50": [("layers: ints = [3, 4, 6, 3]", "layers: ints = [2, 1, 1, 1]")],
    "transformer_lm": [("sgd(lr = 20.0)", "adam(lr = 1e-3)")],
    # No train block ships (no data does); the tests train it at the source's rate, as
    # Adam's default 1e-3 overshoots on one synthetic batch.
    "unet_pets": [("model UNet(size: int = 160, classes: int = 3) {",
                   "train UNet {\n    optimizer * = adam(lr = 1e-4)\n}\n\n"
                   "model UNet(size: int = 160, classes: int = 3) {")],
}

ALL_EXAMPLES = sorted(p.stem for p in EXAMPLES.glob("*.gdl"))


def shrink_source(text: str, formals: dict[str, Any]) -> str:
    """``text`` with the default of every formal named in ``formals`` replaced."""
    for name, value in formals.items():
        literal = ("true" if value else "false") if isinstance(value, bool) else repr(value)
        pattern = rf"(\b{re.escape(name)}\s*:\s*(?:int|float|bool)\s*=\s*)[^,)\s]+"
        text, count = re.subn(pattern, lambda m, lit=literal: m.group(1) + lit, text)
        assert count, f"no default for formal `{name}` to shrink"
    return text


def example_source(stem: str) -> str:
    text = (EXAMPLES / f"{stem}.gdl").read_text(encoding="utf-8")
    for old, new in REWRITE.get(stem, []):
        assert old in text, f"{stem}: `{old}` not found to rewrite"
        text = text.replace(old, new)
    return shrink_source(text, SHRINK.get(stem, {}))


def example_program(stem: str) -> Program:
    """The example, shrunk (see the module docstring), checked."""
    return graphdsl.compile(example_source(stem), file=str(EXAMPLES / f"{stem}.gdl"),
                            base_dir=str(EXAMPLES))


def example_module(stem: str, model: str | None = None, seed: int = 0) -> Any:
    """A torch module for the shrunk example's model."""
    return graphdsl.compile(example_source(stem), file=str(EXAMPLES / f"{stem}.gdl"),
                            base_dir=str(EXAMPLES), backend="torch", model=model, seed=seed)


# ---- synthetic data ---------------------------------------------------------------------


def _dim(d: int | Sym, batch: int, steps: int) -> int:
    if isinstance(d, int):
        return d
    return d.const + sum(c * (batch if n == "B" else steps) for n, c in d.terms)


def _int_input_bound(model: ModelGraph, node: str) -> int:
    """Ids must stay below every Embedding they reach (positions: below its context)."""
    bounds = []
    for other in nx.descendants(model.graph, node):
        data = model.node(other)
        if data["kind"] == "op" and data["op"] == "Embedding":
            bounds.append(int(data["args"]["input_dim"]))
    return min(bounds) if bounds else 2


def _int_target_bound(model: ModelGraph, node: str) -> int:
    """Class ids below the last axis of the prediction each consumer scores them against."""
    rank = len(model.node(node)["type"].shape)
    bounds = []
    for _, consumer in model.graph.out_edges(node):
        for src, edge in model.in_edges(consumer):
            if edge["port"] != "pred":
                continue
            data = model.node(src)
            t = data["types"][edge.get("index", 0)] if data["kind"] == "op" else data["type"]
            if len(t.shape) == rank + 1 and isinstance(t.shape[-1], int):
                bounds.append(t.shape[-1])
    return min(bounds) if bounds else 2


def _context_bound(model: ModelGraph) -> int | None:
    """The smallest Embedding fed by `positions(...)`: the steps must stay below it."""
    bounds = []
    for node in model.ops():
        if model.node(node)["op"] != "positions":
            continue
        for other in nx.descendants(model.graph, node):
            data = model.node(other)
            if data["kind"] == "op" and data["op"] == "Embedding":
                bounds.append(int(data["args"]["input_dim"]))
    return min(bounds) if bounds else None


def synthetic_arrays(model: ModelGraph, batch: int = 4, steps: int = 6, seed: int = 0,
                     pad: bool = True) -> dict[str, np.ndarray]:
    """One batch of numpy arrays named after ``model``'s inputs and targets."""
    context = _context_bound(model)
    assert context is None or steps <= context, f"steps {steps} > context {context}"
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, steps // 2), steps + 1, size=batch)
    lengths[0] = steps
    if not pad:
        lengths[:] = steps
    out: dict[str, np.ndarray] = {}
    for node in model.inputs + model.targets:
        data = model.node(node)
        t = data["type"]
        shape = tuple(_dim(d, batch, steps) for d in t.shape)
        padded = len(shape) >= 2 and isinstance(t.shape[1], Sym)
        real = (np.arange(shape[1])[None, :] < lengths[:, None]) if padded else None
        if t.dtype == "bool":
            value = np.broadcast_to(real.reshape(real.shape + (1,) * (len(shape) - 2)),
                                    shape).copy() if real is not None \
                else rng.random(shape) < 0.5
        elif t.is_int:
            if data["kind"] == "input":
                bound = _int_input_bound(model, node)
                if t.dtype == "uint8":
                    bound = 256
                low = 1 if padded and bound > 1 else 0
                value = rng.integers(low, bound, size=shape)
                if real is not None and bound > 1:
                    value = np.where(real.reshape(real.shape + (1,) * (len(shape) - 2)),
                                     value, 0)
            else:
                value = rng.integers(0, _int_target_bound(model, node), size=shape)
        else:
            value = rng.random(shape)
        out[data["name"]] = np.asarray(value).astype(t.dtype if t.dtype != "bfloat16"
                                                     else "float32")
    return out


def to_tensors(arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {n: torch.from_numpy(np.ascontiguousarray(arrays[n])) for n in names}


def synthetic_batch(module: Any, batch: int = 4, steps: int = 6, seed: int = 0,
                    pad: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(inputs, targets) as tensors for a built module."""
    arrays = synthetic_arrays(module.ir, batch, steps, seed, pad)
    return to_tensors(arrays, module.input_names), to_tensors(arrays, module.target_names)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    """One intra-op thread: these tensors are tiny, and on a busy 2-core machine OpenMP's
    spinning threads made a training step 40 times slower (125 ms of CPU instead of 3)."""
    torch.set_num_threads(1)


def make_engine(program: Program, model: str | None = None, **overrides: Any) -> Any:
    """The backend's own training engine (CPU, fp32), for stepping by hand with
    ``engine.train_step(arrays, lr_factor)``; ``overrides`` are train-block settings."""
    from graphdsl.backends.torch.train import TorchEngine
    from graphdsl.runtime.training import resolve_settings

    graph = program.model(model)
    return TorchEngine(program, graph, resolve_settings(graph, {"device": "cpu", **overrides}))


# ---- the command line, in a subprocess -------------------------------------------------


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "graphdsl.cli", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`graphdsl ARGS` in a subprocess (no terminal: plain output)."""
    return subprocess.run(cli_command(*args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_cli_env())


def start_cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cli_command(*args), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_cli_env())


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env["COLUMNS"] = "200"  # diagnostics on one line each
    env["OMP_NUM_THREADS"] = "1"  # see _one_thread
    return env


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Poll until ``path`` exists; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {path} "
                                 f"appeared: {process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.005)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, read straight from its bytes."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size])
