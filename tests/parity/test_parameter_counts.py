"""The checker's parameter count is what both backends build, for every model of every
example (shrunk, tests/torch/conftest.py), every program of the diagnostics corpus that
compiles, and programs of the language constructs that make or reuse layers (loops,
repeats with and without sharing, named layers inside shared blocks).

Three independent counts: the graph's (``trainable_count``, ``parameter_count``), PyTorch's
``sum(p.numel())`` over the module's distinct parameters (a tie or a shared layer is one
``Parameter``), and Keras' over the model's distinct trainable variables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import graphdsl
from graphdsl.compiler import Program

from ..torch.conftest import ALL_EXAMPLES, EXAMPLES, example_program

pytestmark = [pytest.mark.keras, pytest.mark.torch]

CORPUS = Path(__file__).resolve().parents[1] / "diagnostics" / "cases"

CONSTRUCTS = {
    "shared_named": """
        block Mlp(d: int) {
            input x : float32[B, d]
            h = Dense(d, name = "proj")(x)
            output Dense(d)(h) + x
        }
        model M {
            input x : float32[B, 8]
            inference output y = repeat 3 shared Mlp(8, name = "mlp")(x)
            inference output z = repeat 2 Mlp(8)(y)
        }
        """,
    "shared_nested": """
        block Inner {
            input x : float32[B, 8]
            output Dense(8, name = "d")(x)
        }
        block Outer {
            input x : float32[B, 8]
            output repeat 2 Inner()(Inner()(x))
        }
        model M {
            input x : float32[B, 8]
            inference output y = repeat 4 shared Outer()(x)
        }
        """,
    "dense_block_loop": """
        block Grow(growth: int, rate: float) {
            input x : float32[B, H, W, C]
            h = Conv2D(growth, 3, padding = "same")(relu(BatchNormalization()(x)))
            output concat([x, Dropout(rate)(h)], axis = -1)
        }
        block Transition {
            input x : float32[B, H, W, C]
            output AveragePooling2D(2)(Conv2D(C / 2, 1)(x))
        }
        model M(blocks: ints = [2, 3]) {
            input x : float32[B, 16, 16, 3]
            h = Conv2D(8, 3, padding = "same")(x)
            for i, n in enumerate(blocks) {
                h = repeat n as j Grow(4, 0.1 * j)(h)
                if i < len(blocks) - 1 { h = Transition()(h) }
            }
            inference output y = Dense(3)(GlobalAveragePooling2D()(h))
        }
        """,
}


def corpus_programs() -> list[str]:
    """Cases of the diagnostics corpus that compile (warnings only)."""
    return sorted(p.stem for p in CORPUS.glob("*.gdl")
                  if "# E" not in p.read_text(encoding="utf-8"))


def program_of(kind: str, name: str) -> Program:
    if kind == "example":
        return example_program(name)
    if kind == "corpus":
        path = CORPUS / f"{name}.gdl"
        return graphdsl.compile(path.read_text(encoding="utf-8"), file=str(path),
                                base_dir=str(CORPUS))
    return graphdsl.compile(CONSTRUCTS[name], file=f"{name}.gdl")


CASES = [("example", stem) for stem in ALL_EXAMPLES] + \
    [("corpus", stem) for stem in corpus_programs()] + \
    [("construct", name) for name in CONSTRUCTS]


def torch_counts(module: object) -> tuple[int, int]:
    params = {id(p): p for p in module.parameters()}.values()  # type: ignore[attr-defined]
    return (sum(p.numel() for p in params if p.requires_grad),
            sum(p.numel() for p in params))


def keras_trainable(model: object) -> int:
    weights = {id(w): w for w in model.trainable_weights}.values()  # type: ignore[attr-defined]
    return sum(int(np.prod(w.shape)) for w in weights)


def test_the_cases_cover_every_example_and_the_corpus() -> None:
    assert {n for k, n in CASES if k == "example"} == {p.stem for p in EXAMPLES.glob("*.gdl")}
    assert len([n for k, n in CASES if k == "corpus"]) >= 5


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_both_backends_build_the_checkers_parameters(kind: str, name: str) -> None:
    from graphdsl.backends.keras.model import build_model as build_keras
    from graphdsl.backends.torch.module import build_module

    program = program_of(kind, name)
    assert program.models, f"{name}: no model"
    for model_name, graph in program.models.items():
        module = build_module(graph, program_models=program.models)
        trainable, total = torch_counts(module)
        assert (trainable, total) == (graph.trainable_count, graph.parameter_count), \
            f"{name} {model_name}: PyTorch builds {trainable:,} trainable of {total:,}, the " \
            f"checker counts {graph.trainable_count:,} of {graph.parameter_count:,}"
        keras_model = build_keras(program, graph)
        assert keras_trainable(keras_model) == graph.trainable_count, \
            f"{name} {model_name}: Keras builds {keras_trainable(keras_model):,} trainable, " \
            f"the checker counts {graph.trainable_count:,}"


def test_the_constructs_count_what_the_formulas_say() -> None:
    """The counts above compare three programs' views; these are closed forms."""
    dense = 8 * 8 + 8
    counts = {name: program_of("construct", name).models["M"].parameter_count
              for name in ("shared_named", "shared_nested")}
    assert counts == {"shared_named": 2 * dense + 2 * 2 * dense, "shared_nested": 3 * dense}
