"""The generated modules trace whole under TorchDynamo: no graph breaks, so
`torch.compile(module, fullgraph=True)` (and `graphdsl train --compile`) works.

``torch._dynamo.explain`` traces without running a compiler backend, so every example
model fits in the suite (about 1 s each on 2 CPU cores; shrunk, conftest.SHRINK): the
eval-mode forward of all of them, and the training-mode loss pass (`compute_losses`,
dropout and sampling on) of every model with a loss.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch._dynamo

from .conftest import ALL_EXAMPLES, example_module, example_program, synthetic_batch

pytestmark = pytest.mark.torch

PROGRAMS = {stem: example_program(stem) for stem in ALL_EXAMPLES}
EXAMPLE_MODELS = [(stem, name) for stem, program in PROGRAMS.items() for name in program.models]


def breaks(explained: Any) -> list[str]:
    return [f"{r.reason.splitlines()[0]} at {r.user_stack[-1] if r.user_stack else '?'}"
            for r in explained.break_reasons]


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Any:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(("stem", "model"), EXAMPLE_MODELS)
def test_forward_has_no_graph_breaks(stem: str, model: str) -> None:
    module = example_module(stem, model).eval()
    inputs, _ = synthetic_batch(module, batch=2, steps=5)
    explained = torch._dynamo.explain(module)(**inputs)
    assert explained.graph_break_count == 0, breaks(explained)
    assert explained.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize(("stem", "model"), [
    (s, m) for s, m in EXAMPLE_MODELS if PROGRAMS[s].models[m].losses])
def test_training_loss_pass_has_no_graph_breaks(stem: str, model: str) -> None:
    module = example_module(stem, model).train()
    inputs, targets = synthetic_batch(module, batch=2, steps=5)
    explained = torch._dynamo.explain(module.compute_losses)(inputs, targets)
    assert explained.graph_break_count == 0, breaks(explained)


RECURRENT = """model R {
    input x : float32[B, 5, 3]
    input m : bool[B, 5]
    h = GRU(4, return_sequences = true, dropout = 0.2, recurrent_dropout = 0.2)(x, mask = m)
    f, b = Bidirectional("LSTM", 3, merge_mode = "none", return_sequences = true)(h)
    g = GRU(3, reset_after = false, return_sequences = true)(f + b)
    s = SimpleRNN(2, activation = sigmoid)(g)
    inference output s
}
"""


@pytest.mark.parametrize("training", [False, True])
def test_recurrent_layers_have_no_graph_breaks(training: bool) -> None:
    import graphdsl

    module = graphdsl.compile(RECURRENT, backend="torch").train(training)
    inputs = {"x": torch.randn(2, 5, 3), "m": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],
                                                          dtype=torch.bool)}
    explained = torch._dynamo.explain(module)(**inputs)
    assert explained.graph_break_count == 0, breaks(explained)
