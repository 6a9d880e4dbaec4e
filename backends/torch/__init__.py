"""The PyTorch backend: `graphdsl.compile(source, backend="torch")` returns a native
``torch.nn.Module``; `graphdsl train` / `graphdsl eval` run through here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from graphdsl.compiler import Program
    from graphdsl.ir.graph import ModelGraph

    from .module import GraphModule


def build(program: Program, model: ModelGraph, seed: int = 0,
          values: Mapping[str, np.ndarray] | None = None) -> GraphModule:
    """A native module for ``model``: initial values from ``seed``, or the given arrays."""
    from .module import build_module

    return build_module(model, values, seed, program_models=program.models)


def train(program: Program, model: ModelGraph, settings: Mapping[str, Any],
          out: str | None = None, resume: bool = False, force: bool = False) -> GraphModule:
    """Train ``model`` with the train block's settings overridden by ``settings``."""
    from .train import train_model

    driver, _, _ = train_model(program, model, settings, out=out, resume=resume, quiet=True,
                               force=force)
    return driver.engine.module


def run_train(program: Program, args: Any) -> int:
    from .train import run_train as run

    return run(program, args)


def run_eval(program: Program, args: Any) -> int:
    from .train import run_eval as run

    return run(program, args)


def predictor(program: Program, model: ModelGraph, values: Mapping[str, np.ndarray],
              device: str | None = None) -> Any:
    """A function from a batch of input arrays to every output as numpy (inference mode)."""
    import numpy as np
    import torch

    from .module import build_module

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available here")
    where = torch.device("cuda" if device in (None, "auto") and torch.cuda.is_available()
                         else "cpu" if device in (None, "auto") else device)
    module = build_module(model, values, program_models=program.models).to(where).eval()

    @torch.no_grad()
    def run(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = {k: torch.from_numpy(np.asarray(v, order="C")).to(where)
                  for k, v in batch.items()}
        return {k: (v.float() if v.dtype == torch.bfloat16 else v).cpu().numpy()
                for k, v in module(**inputs).items()}

    return run
