"""Language constructs of published architectures: `repeat` whose copies change the shape,
read their index and take further arguments; `name =` on block instances; compile-time
loops and conditionals; a block's input sizes read as numbers. Parameter counts are
closed forms written here."""

from __future__ import annotations

import textwrap

import pytest

import graphdsl
from graphdsl import Diagnostic, GraphdslError
from graphdsl.ir.graph import ModelGraph


def compile_model(source: str, name: str = "M") -> ModelGraph:
    return graphdsl.compile(textwrap.dedent(source), file="prog.gdl").models[name]


def errors_of(source: str) -> list[Diagnostic]:
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile(textwrap.dedent(source), file="prog.gdl")
    return [d for d in caught.value.diagnostics if d.is_error]


def output_type(model: ModelGraph, name: str) -> str:
    (node,) = [n for n in model.outputs if model.node(n)["name"] == name]
    return str(model.node(node)["type"])


def param_names(model: ModelGraph) -> set[str]:
    return {model.node(p)["name"] for p in model.params}


def dense(inputs: int, units: int) -> int:
    return inputs * units + units


# --- repeat ------------------------------------------------------------------------------

DENSE_BLOCK = """
    block Grow(growth: int, rate: float = 0.0) {
        input x : float32[B, C]
        output concat([x, Dropout(rate)(Dense(growth)(x))], axis = -1)
    }
    model M(n: int = 3) {
        input x : float32[B, 8]
        inference output y = REPEAT(x)
    }
    """


def test_each_separate_copy_is_built_on_its_own_input() -> None:
    model = compile_model(DENSE_BLOCK.replace("REPEAT", "repeat n Grow(4)"))
    assert output_type(model, "y") == "float32[B, 20]"
    assert model.parameter_count == dense(8, 4) + dense(12, 4) + dense(16, 4)
    shapes = {model.node(p)["name"]: model.node(p)["type"].shape for p in model.params}
    assert shapes["grow.2.dense.kernel"] == (16, 4)


def test_a_shared_copy_must_keep_the_shape() -> None:
    (error,) = errors_of(DENSE_BLOCK.replace("REPEAT", "repeat n shared Grow(4)"))
    assert error.code == "shape-mismatch"
    assert error.span.line == 8


def test_repeat_zero_is_the_identity() -> None:
    model = compile_model(DENSE_BLOCK.replace("REPEAT", "repeat 0 Grow(4)"))
    assert output_type(model, "y") == "float32[B, 8]"
    assert model.parameter_count == 0
    (out,) = model.outputs
    ((src, _),) = model.in_edges(out)
    assert model.node(src)["kind"] == "input"


def test_a_copy_reads_its_index() -> None:
    model = compile_model(DENSE_BLOCK.replace("REPEAT", "repeat n as i Grow(4, rate = 0.3 * i / n)"))
    rates = {record.path: record.args["rate"] for record in model.layers.values()
             if record.op == "Dropout"}
    assert rates == pytest.approx({"grow.0.dropout": 0.0, "grow.1.dropout": 0.1,
                                   "grow.2.dropout": 0.2})


def test_the_index_name_must_be_new() -> None:
    (error,) = errors_of(DENSE_BLOCK.replace("REPEAT", "repeat n as n Grow(4)"))
    assert error.code == "duplicate-definition"


def test_the_index_is_not_visible_after_the_repeat() -> None:
    source = DENSE_BLOCK.replace("REPEAT", "repeat n as i Grow(4)").replace(
        "inference output y", "inference output z = x * i\n        inference output y")
    (error,) = errors_of(source)
    assert error.code == "unknown-name"


ENCODER = """
    block Layer(d: int) {
        input x : float32[B, T, d]
        input m : bool[B, T, T]
        output LayerNormalization()(x + MultiHeadAttention(2, 4)(x, x, attention_mask = m))
    }
    model M {
        input x : float32[B, T, 8]
        input m : bool[B, T, T]
        inference output y = repeat 3 Layer(8)(x, m)
    }
    """


def test_repeat_passes_further_arguments_to_every_copy() -> None:
    model = compile_model(ENCODER)
    attention = [n for n in model.ops() if model.node(n)["op"] == "MultiHeadAttention"]
    assert len(attention) == 3
    for node in attention:
        masks = [u for u, d in model.in_edges(node) if d["port"] == "attention_mask"]
        assert [model.node(u)["kind"] for u in masks] == ["input"]
    mha = 3 * (8 * 2 * 4 + 2 * 4) + (2 * 4 * 8 + 8)
    assert model.parameter_count == 3 * (mha + 2 * 8)


def test_repeat_threads_a_tensor_first() -> None:
    (error,) = errors_of(ENCODER.replace("Layer(8)(x, m)", "Layer(8)(3, m)"))
    assert error.code == "argument-type"
    assert "first argument must be a tensor" in error.message


# --- names of block instances ----------------------------------------------------------

NAMED = """
    block Mlp(d: int) {
        input x : float32[B, d]
        output Dense(d, name = "proj")(x)
    }
    model M {
        input x : float32[B, 8]
        inference output y = BODY
    }
    """


def test_a_block_instance_takes_a_name() -> None:
    model = compile_model(NAMED.replace("BODY", 'Mlp(8, name = "first")(Mlp(8)(x))'))
    assert param_names(model) == {"first.proj.kernel", "first.proj.bias", "mlp.proj.kernel",
                                  "mlp.proj.bias"}


def test_duplicate_names_are_an_error() -> None:
    (error,) = errors_of(NAMED.replace("BODY", 'Mlp(8, name = "a")(Mlp(8, name = "a")(x))'))
    assert error.code == "duplicate-definition"
    (error,) = errors_of(NAMED.replace("BODY", 'Dense(8, name = "a")(Dense(8, name = "a")(x))'))
    assert error.code == "duplicate-definition"


def test_a_name_on_the_repeated_body_names_the_repetition() -> None:
    model = compile_model(NAMED.replace("BODY", 'repeat 2 Mlp(8, name = "stack")(x)'))
    assert param_names(model) == {f"stack.{i}.proj.{p}" for i in (0, 1)
                                  for p in ("kernel", "bias")}


@pytest.mark.parametrize("shared_body", [
    'repeat 3 shared Mlp(8)(x)',
    'repeat 3 shared Mlp(8, name = "s")(x)',
])
def test_a_shared_repeat_over_named_layers_has_one_set_of_weights(shared_body: str) -> None:
    model = compile_model(NAMED.replace("BODY", shared_body))
    assert model.parameter_count == dense(8, 8)
    assert len(model.params) == 2


def test_a_shared_block_reuses_the_repeats_and_blocks_inside_it() -> None:
    model = compile_model("""
        block Inner {
            input x : float32[B, 8]
            output Dense(8)(x)
        }
        block Outer {
            input x : float32[B, 8]
            output repeat 2 Inner()(Inner()(x))
        }
        model M {
            input x : float32[B, 8]
            inference output y = repeat 4 shared Outer()(x)
        }
        """)
    assert model.parameter_count == 3 * dense(8, 8)
