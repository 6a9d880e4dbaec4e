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


# --- loops and conditionals ------------------------------------------------------------

RESNET = """
    block Basic(width: int, stride: int = 1) {
        input x : float32[B, H, W, C]
        y = Conv2D(width, 3, strides = stride, padding = "same", use_bias = false)(x)
        if stride == 1 and C == width {
            y = x + y
        } else {
            y = y + Conv2D(width, 1, strides = stride, use_bias = false)(x)
        }
        output relu(y)
    }
    model M(stages: ints = [2, 1, 2], widths: ints = [8, 16, 32]) {
        input x : float32[B, 32, 32, 3]
        h = Conv2D(8, 3, padding = "same", use_bias = false)(x)
        for i, n in enumerate(stages) {
            for j in range(n) {
                stride = 1
                if j == 0 and i > 0 { stride = 2 }
                h = Basic(widths[i], stride, name = "stage")(h)
            }
        }
        inference output h
    }
    """


def conv(cin: int, cout: int, k: int) -> int:
    return k * k * cin * cout


def test_a_loop_over_stages_with_a_conditional_residual() -> None:
    model = compile_model(RESNET)
    assert output_type(model, "h") == "float32[B, 8, 8, 32]"
    expected = conv(3, 8, 3) + 2 * conv(8, 8, 3) \
        + conv(8, 16, 3) + conv(8, 16, 1) \
        + conv(16, 32, 3) + conv(16, 32, 1) + conv(32, 32, 3)
    assert model.parameter_count == expected
    names = {n.rsplit(".", 1)[0] for n in param_names(model)}
    assert names == {"conv2d", "stage.0.0.conv2d", "stage.0.1.conv2d", "stage.1.0.conv2d",
                     "stage.1.0.conv2d_1", "stage.2.0.conv2d", "stage.2.0.conv2d_1",
                     "stage.2.1.conv2d"}
    adds = [n for n in model.ops() if model.node(n)["op"] == "add"]
    assert len(adds) == 5  # the two identity residuals of stage 0 and the last, 3 projections


def test_layers_made_in_a_loop_get_distinct_automatic_names() -> None:
    model = compile_model("""
        model M {
            input x : float32[B, 4]
            for n in [8, 16, 4] { x = Dense(n)(x) }
            inference output x
        }
        """)
    assert param_names(model) == {f"{d}.{p}" for d in ("dense", "dense_1", "dense_2")
                                  for p in ("kernel", "bias")}
    assert model.parameter_count == dense(4, 8) + dense(8, 16) + dense(16, 4)
    assert output_type(model, "x") == "float32[B, 4]"


def test_a_named_layer_in_a_loop_gets_the_iteration_in_its_path() -> None:
    model = compile_model("""
        model M(depth: int = 2) {
            input x : float32[B, 4]
            for i in range(depth) {
                layer proj = Dense(4)
                x = proj(x)
                param scale : float32[4] = ones()
                x = x * scale
            }
            inference output x
        }
        """)
    assert param_names(model) == {"proj.0.kernel", "proj.0.bias", "proj.1.kernel",
                                  "proj.1.bias", "scale.0", "scale.1"}


def test_zip_len_and_int_are_compile_time_functions() -> None:
    model = compile_model("""
        model M(widths: ints = [6, 10], ratio: float = 0.5) {
            input x : float32[B, 4]
            for w, act in zip(widths, [1, 0]) {
                x = Dense(int(w * ratio) + len(widths))(x)
                if act == 1 { x = relu(x) }
            }
            inference output x
        }
        """)
    assert output_type(model, "x") == "float32[B, 7]"
    assert len([n for n in model.ops() if model.node(n)["op"] == "relu"]) == 1


@pytest.mark.parametrize(("change", "code", "line"), [
    ("for i, n in enumerate(stages)", "argument-type", 15),  # unchanged: a float condition
    ("for n in stages", "argument-type", 15),
    ("n = 3 for i, n in enumerate(stages)", "duplicate-definition", 16),
])
def test_loop_misuse_is_reported_where_it_is_written(change: str, code: str, line: int) -> None:
    source = RESNET.replace("for i, n in enumerate(stages)", change)
    if change.startswith("for i, n"):
        source = source.replace("if j == 0 and i > 0", "if 1.5")
        line = 18
    elif change == "for n in stages":
        source = source.replace("for j in range(n)", "for j in range(n, 2, 0.5)")
        line = 16
    else:
        source = RESNET.replace("        for i, n", "        n = 3\n        for i, n")
    errors = errors_of(source)
    assert [(e.code, e.span.line) for e in errors] == [(code, line)], errors


def test_names_assigned_in_a_failed_loop_do_not_cascade() -> None:
    (error,) = errors_of("""
        model M {
            input x : float32[B, 4]
            for n in 3 { y = Dense(n)(x) }
            inference output y
        }
        """)
    assert error.code == "argument-type"
    assert "`for` runs over a list" in error.message


def test_an_input_inside_a_loop_is_misplaced() -> None:
    (error,) = errors_of("""
        model M {
            input x : float32[B, 4]
            if true { input z : float32[B, 4] }
            inference output x
        }
        """)
    assert error.code == "invalid-statement"


def test_a_tensor_condition_points_to_where() -> None:
    (error,) = errors_of("""
        model M {
            input x : float32[B, 4]
            if x > 0 { x = relu(x) }
            inference output x
        }
        """)
    assert error.code == "argument-type"
    assert "where(" in (error.help or "")


# --- a block's input sizes as numbers -----------------------------------------------

def test_a_block_reads_its_inputs_sizes() -> None:
    model = compile_model("""
        block Transition {
            input x : float32[B, H, W, C]
            output AveragePooling2D(2)(Conv2D(C / 2, 1)(x))
        }
        block Expand(t: int) {
            input x : float32[B, H, W, C]
            output Conv2D(C * t, 1)(x)
        }
        model M {
            input x : float32[B, 32, 32, 12]
            inference output y = Transition()(Expand(6)(x))
        }
        """)
    assert output_type(model, "y") == "float32[B, 16, 16, 36]"
    assert model.parameter_count == (12 * 72 + 72) + (72 * 36 + 36)


def test_an_inexact_division_of_a_size_is_not_an_int() -> None:
    errors = errors_of("""
        block Half {
            input x : float32[B, C]
            output Dense(C / 2)(x)
        }
        model M {
            input x : float32[B, 5]
            inference output y = Half()(x)
        }
        """)
    assert [e.code for e in errors] == ["argument-type"]


def test_a_symbolic_size_used_as_a_number_is_reported() -> None:
    (error,) = errors_of("""
        block Head {
            input x : float32[B, T, D]
            output Dense(T)(x)
        }
        model M {
            input x : float32[B, T, 8]
            inference output y = Head()(x)
        }
        """)
    assert error.code == "unknown-dimension"
    assert (error.span.line, error.span.column) == (4, 18)
    assert "symbolic size" in error.message


# --- sizes for synthetic batches (`--check-parity`) -----------------------------------

def test_synthetic_sizes_fit_every_tensor_of_a_strided_model() -> None:
    from graphdsl.runtime.synthetic import choose_sizes, evaluate_dim, synthetic_batch

    model = compile_model("""
        model M {
            input x : float32[B, H, W, 3]
            h = Conv2D(8, 3, strides = 2)(x)
            h = Conv2D(8, 3, strides = 2)(h)
            h = MaxPooling2D(2)(h)
            inference output y = GlobalAveragePooling2D()(h)
        }
        """)
    # at 8: (8 - 3) // 2 + 1 = 3, then 1, then a pooled size of 0; at 16: 7, 3, 1
    assert choose_sizes(model) == {"B": 2, "T": 5, "H": 16, "W": 16}
    assert synthetic_batch(model)["x"].shape == (2, 16, 16, 3)
    (pooled,) = [n for n in model.ops() if model.node(n)["op"] == "MaxPooling2D"]
    height = model.node(pooled)["types"][0].shape[1]
    assert [evaluate_dim(height, {"H": h}) for h in (8, 16, 224)] == [0, 1, 27]


def test_a_block_called_on_tensors_at_once_takes_a_name() -> None:
    model = compile_model("""
        block Proj {
            input x : float32[B, 8]
            output Dense(8)(x)
        }
        model M {
            input x : float32[B, 8]
            inference output y = Proj(x, name = "p")
        }
        """)
    assert param_names(model) == {"p.dense.kernel", "p.dense.bias"}


def test_a_named_repetition_makes_its_copies_at_its_first_call() -> None:
    """The copies after the first are made when the repetition is first called; the index
    is bound for them then, and a name bound meanwhile is left as it was."""
    model = compile_model("""
        block Scale(k: float) {
            input x : float32[B, 4]
            output k * Dense(4)(x)
        }
        model M {
            input x : float32[B, 4]
            layer stack = repeat 3 as i Scale(i + 1)
            i = 10
            y = stack(x)
            inference output z = y * i
        }
        """)
    consts = sorted(model.node(n)["args"].get("value") for n in model.ops()
                    if model.node(n)["op"] == "constant")
    assert consts == [1.0, 2.0, 3.0, 10.0], consts


def test_widths_are_computed_as_keras_applications_compute_them() -> None:
    """MobileNet's and EfficientNet's `make_divisible` and `round_repeats`, at compile time;
    `max` of a tensor stays the reduction op."""
    model = compile_model("""
        model M(alpha: float = 0.35, depth: float = 1.2) {
            input x : float32[B, 4]
            c = 32 * alpha                                  # 11.2
            width = max(8, int(c + 4) // 8 * 8)             # 8
            if width < 0.9 * c { width = width + 8 }        # 16
            n = ceil(depth * 3)                             # 4
            for i in range(n) { x = Dense(width)(x) }
            inference output peak = max(x, axis = -1)
            inference output x
        }
        """)
    assert output_type(model, "x") == "float32[B, 16]"
    assert len([r for r in model.layers.values() if r.op == "Dense"]) == 4
    assert output_type(model, "peak") == "float32[B]"
