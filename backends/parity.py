"""Cross-backend parity: the same program and canonical weights in PyTorch and Keras.

`graphdsl compile FILE --check-parity` builds each model in both backends from the same
random canonical weights, runs a synthetic batch in inference mode, and prints the
largest difference per output and per loss term.
"""

from __future__ import annotations

import numpy as np

from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime.synthetic import choose_sizes, perturbed_values, synthetic_batch
from graphdsl.runtime.weights import initial_values

# Two results agree when max |a - b| <= ATOL + RTOL * max |a|: absolute for values near 1
# and below, relative for large ones (ResNet-50's logits reach 3e8 in float32).
TOLERANCE = 1e-5
ATOL = TOLERANCE
RTOL = 1e-5


def allowed_difference(reference: np.ndarray) -> float:
    """The largest difference that counts as agreement for this reference tensor."""
    scale = float(np.max(np.abs(reference.astype(np.float64)))) if reference.size else 0.0
    return ATOL + RTOL * scale


def run_both(program: Program, model: ModelGraph, seed: int = 0,
             batch: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray],
                                                                  dict[str, np.ndarray]]:
    """Outputs and loss terms (by name) from PyTorch and from Keras, as numpy arrays."""
    import torch

    from .keras.model import build_model as build_keras
    from .torch.module import build_module

    values = perturbed_values(initial_values(model, seed))
    batch = batch if batch is not None else synthetic_batch(model, seed=seed)
    inputs = {k: batch[k] for k in (model.node(n)["name"] for n in model.inputs)}
    targets = {k: batch[k] for k in (model.node(n)["name"] for n in model.targets)}

    t_model = build_module(model, values, program_models=program.models).eval()
    with torch.no_grad():
        t_in = {k: torch.from_numpy(v) for k, v in inputs.items()}
        t_tg = {k: torch.from_numpy(v) for k, v in targets.items()}
        if model.losses or model.metrics:
            result = t_model.compute_losses(t_in, t_tg)
            t_out = {**{f"output {k}": v.numpy() for k, v in result.outputs.items()},
                     **{f"loss {k}": v.numpy() for k, v in result.terms.items()}}
        else:
            t_out = {f"output {k}": v.numpy() for k, v in t_model(**t_in).items()}

    k_model = build_keras(program, model, values=values)
    if model.losses or model.metrics:
        outs, terms, _ = k_model.compute_losses(inputs, targets, training=False)
        k_out = {**{f"output {k}": np.asarray(v) for k, v in outs.items()},
                 **{f"loss {k}": np.asarray(v) for k, v in terms.items()}}
    else:
        k_out = {f"output {k}": np.asarray(v) for k, v in k_model(inputs).items()}
    return t_out, k_out


def differences(t_out: dict[str, np.ndarray], k_out: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name, a in t_out.items():
        b = k_out[name]
        out[name] = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) \
            if a.size else 0.0
    return out


def check_parity_cli(program: Program) -> int:
    import importlib.util

    missing = [m for m in ("torch", "keras", "tensorflow") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"not installed: {', '.join(missing)}")
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    failed = False
    for model in program.models.values():
        t_out, k_out = run_both(program, model)
        table = Table(title=f"parity: model {model.name} (PyTorch vs Keras, inference)",
                      title_justify="left")
        table.add_column("tensor")
        table.add_column("max |difference|", justify="right")
        table.add_column("allowed", justify="right")
        table.add_column("", justify="left")
        for name, diff in differences(t_out, k_out).items():
            allowed = allowed_difference(t_out[name])
            ok = diff <= allowed
            failed = failed or not ok
            table.add_row(name, f"{diff:.3g}", f"{allowed:.3g}", "ok" if ok else "DIFFERS")
        console.print(table)
        sizes = {k: v for k, v in choose_sizes(model).items()
                 if k in batch_names(model)}
        if sizes:
            console.print("  sizes: " + ", ".join(f"{k} = {v}" for k, v in sizes.items()))
    console.print(f"  agreement: max |difference| <= {ATOL:g} + {RTOL:g} * max |value|")
    return 1 if failed else 0


def batch_names(model: ModelGraph) -> set[str]:
    """The symbolic sizes of the model's inputs and targets."""
    names: set[str] = set()
    for node in model.inputs + model.targets:
        for d in model.node(node)["type"].shape or ():
            names.update(n for n, _ in getattr(d, "terms", ()))
    return names

