"""Every registry op has a PyTorch implementation that accepts exactly what the backend
passes: its inputs, parameters, arguments and call arguments by name (keyword-only), plus
``training`` for random ops."""

from __future__ import annotations

import inspect

import pytest

from graphdsl.backends.torch.ops import load_all
from graphdsl.ops import all_ops

pytestmark = pytest.mark.torch

OPS = all_ops()


def expected_keywords(op) -> set[str]:  # type: ignore[no-untyped-def]
    names = {i.name for i in op.inputs} | {p.name for p in op.params}
    names |= {a.name for a in (*op.args, *op.call_args)}
    if op.random:
        names.add("training")
    return names


def test_every_op_has_an_implementation() -> None:
    impls = load_all()
    missing = sorted(op.name for op in OPS if op.name not in impls)
    unknown = sorted(set(impls) - {op.name for op in OPS})
    assert not missing, f"ops without a torch implementation: {missing}"
    assert not unknown, f"implementations of ops the registry does not have: {unknown}"


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_implementation_signature(op) -> None:  # type: ignore[no-untyped-def]
    fn = load_all()[op.name]
    parameters = inspect.signature(fn).parameters
    for name, p in parameters.items():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, \
            f"{op.name}: parameter `{name}` must be keyword-only"
    expected = expected_keywords(op)
    missing = expected - set(parameters)
    assert not missing, f"{op.name}: the implementation lacks {sorted(missing)}"
    # Anything beyond the registry's names must be optional: the backend never passes it.
    extra = [n for n in set(parameters) - expected
             if parameters[n].default is inspect.Parameter.empty]
    assert not extra, f"{op.name}: required parameters the registry does not name: {extra}"
    if op.random:
        assert parameters["training"].default is inspect.Parameter.empty, \
            f"{op.name}: `training` must be required for a random op"

