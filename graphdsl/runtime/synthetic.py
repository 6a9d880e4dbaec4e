"""Synthetic batches that fit a model's declared inputs and targets (numpy only).

Used by `graphdsl compile --check-parity` and by tests: integer ids stay inside the range
of the Embedding or class axis that reads them, boolean masks keep their first step
valid, symbolic sizes get small values.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

import numpy as np

from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import Sym, TensorType
from graphdsl.runtime.data import id_limit


def _id_range(model: ModelGraph, node: str) -> int:
    """How many distinct ids a tensor may hold without leaving a table or a class axis."""
    limit, _, _ = id_limit(model, node)
    return limit or 2


# Sizes tried, smallest first, for the symbolic sizes of a model's inputs other than the
# batch and the steps: a stack of strided convolutions needs 32 or 224 where 3 is enough
# for a Dense.
CANDIDATE_SIZES = (3, 8, 16, 32, 64, 128, 224, 256, 512)


def _input_names(model: ModelGraph) -> list[str]:
    names: list[str] = []
    for node in model.inputs + model.targets:
        for d in model.node(node)["type"].shape or ():
            if isinstance(d, Sym):
                names.extend(n for n, _ in d.terms if n not in names)
    return names


def evaluate_dim(d: Any, sizes: dict[str, int]) -> int | None:
    """A symbolic dimension's value for given sizes; None if it names another size.
    Reads the dimension's printed form (`(H - 3)//(2) + 1`) with a small evaluator."""
    if isinstance(d, int):
        return d

    def value(e: ast.expr) -> int | None:
        if isinstance(e, ast.Constant) and isinstance(e.value, int):
            return e.value
        if isinstance(e, ast.Name):
            return sizes.get(e.id)
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, (ast.USub, ast.UAdd)):
            v = value(e.operand)
            return None if v is None else (-v if isinstance(e.op, ast.USub) else v)
        if isinstance(e, ast.BinOp):
            a, b = value(e.left), value(e.right)
            if a is None or b is None:
                return None
            if isinstance(e.op, ast.Add):
                return a + b
            if isinstance(e.op, ast.Sub):
                return a - b
            if isinstance(e.op, ast.Mult):
                return a * b
            if isinstance(e.op, ast.FloorDiv) and b != 0:
                return a // b
        return None

    tree = _parsed(str(d))
    return None if tree is None else value(tree)


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> ast.expr | None:
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        return None


def _sizes_fit(model: ModelGraph, sizes: dict[str, int]) -> bool:
    """Every tensor of the model has a positive size in every axis."""
    for node in model.graph.nodes:
        data = model.node(node)
        types = data.get("types") or ([data["type"]] if data.get("type") is not None else [])
        for t in types:
            for d in t.shape or ():
                v = evaluate_dim(d, sizes)
                if v is not None and v < 1:
                    return False
    return True


def choose_sizes(model: ModelGraph, batch: int = 2, steps: int = 5) -> dict[str, int]:
    """Sizes for the symbolic sizes of the inputs that every tensor of the model can take:
    the batch `B` and the steps `T` as given, every other size the smallest candidate
    that fits (then `T` too, if it alone is too short)."""
    names = _input_names(model)
    fixed = {"B": batch, "T": steps}
    others = [n for n in names if n not in fixed]
    for size in CANDIDATE_SIZES:
        sizes = {**fixed, **{n: size for n in others}}
        if _sizes_fit(model, sizes):
            return sizes
    for size in CANDIDATE_SIZES:
        sizes = {"B": batch, **{n: size for n in names if n != "B"}}
        if _sizes_fit(model, sizes):
            return sizes
    return {**fixed, **{n: 3 for n in others}}


def synthetic_batch(model: ModelGraph, batch: int = 2, steps: int = 5, seed: int = 0,
                    sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    chosen: dict[str, int] = {**choose_sizes(model, batch, steps), **(sizes or {})}

    def dim(d: Any) -> int:
        if isinstance(d, int):
            return d
        assert isinstance(d, Sym)
        if len(d.terms) == 1 and d.const == 0 and d.terms[0][1] == 1:
            return chosen.setdefault(d.terms[0][0], 3)
        total = d.const
        for name, coef in d.terms:
            total += coef * chosen.setdefault(name, 3)
        return max(int(total), 1)

    out: dict[str, np.ndarray] = {}
    for node in model.inputs + model.targets:
        data = model.node(node)
        t: TensorType = data["type"]
        shape = tuple(dim(d) for d in t.shape or ())
        if t.is_float:
            value: np.ndarray = rng.standard_normal(shape).astype("float32")
        elif t.is_int:
            value = rng.integers(0, _id_range(model, node), shape).astype(t.dtype)
            if value.ndim >= 2:
                value[:, 0] = np.maximum(value[:, 0], 1)  # never an all-padding row
        else:
            value = rng.random(shape) < 0.8
            if value.ndim >= 2:
                value[:, 0] = True
        out[data["name"]] = value
    return out


def perturbed_values(values: dict[str, np.ndarray], seed: int = 1,
                     scale: float = 0.1) -> dict[str, np.ndarray]:
    """Initial values plus noise, so zero-initialised biases cannot hide a mistake."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in values.items():
        if name.endswith("_mask") or v.dtype.kind != "f":
            out[name] = v
        else:
            out[name] = (v + scale * rng.standard_normal(v.shape)).astype(v.dtype)
    return out
