"""Issue 7: valid programs the front end used to reject, and hostile ones it must stop.

Each test is a category: written against today's behaviour it fails, and the diagnostics
corpus (tests/diagnostics/cases) holds the mistakes that used to pass unnoticed.
"""

from __future__ import annotations

import textwrap

import pytest

import graphdsl
from graphdsl import GraphdslError
from graphdsl.ir.types import Sym, dim_floordiv, dim_mul

FILE = "prog.gdl"


def compile_ok(source: str, **kwargs):  # type: ignore[no-untyped-def]
    return graphdsl.compiler.compile_text(textwrap.dedent(source), FILE, **kwargs)


def codes(source: str, **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(GraphdslError) as caught:
        compile_ok(source, **kwargs)
    return [d.code for d in caught.value.diagnostics if d.is_error]


def output_shape(program, name: str) -> str:  # type: ignore[no-untyped-def]
    (model,) = program.models.values()
    for node in model.outputs:
        data = model.node(node)
        if data["name"] == name:
            return str(data["type"])
    raise KeyError(name)


# ---- patterns with numbered parts ------------------------------------------------------
def test_numbered_patterns_in_train_blocks_parse() -> None:
    program = compile_ok("""\
        model M {
            input x : float32[B, 8]
            target y : float32[B, 8]
            layer stack = repeat 3 Dense(8)
            output p = stack(x)
            loss mse(p, y)
        }
        train M {
            freeze stack.0
            optimizer stack.1.* = adam(lr = 1e-3)
            optimizer * = sgd(lr = 0.1)
        }
        """)
    train = program.models["M"].train
    assert train is not None
    assert "stack.0" in train.freeze
    assert [p for p, _, _ in train.optimizers][0] == "stack.1.*"


# ---- symbolic dimensions in a normal form ----------------------------------------------
def test_symbolic_products_and_quotients_simplify() -> None:
    b, t = Sym.named("B"), Sym.named("T")
    total = dim_mul(dim_mul(b, t), 64)
    assert str(total) == "64*B*T"
    assert str(dim_floordiv(total, 4)) == "16*B*T"
    assert dim_floordiv(dim_floordiv(total, 4), dim_mul(t, 16)) == b
    assert dim_floordiv(dim_mul(15552, b), 15552) == b
    assert dim_floordiv(dim_mul(b, 3), 2) != b  # not exact: an opaque dimension, not B


def test_reshape_round_trips_keep_their_symbols() -> None:
    program = compile_ok("""\
        model M(d: int = 64) {
            input x : float32[B, T, d]
            input z : float32[B, 2 * T, d]
            flat = reshape(x, [-1, 4])
            back = reshape(flat, [-1, d])
            pairs = reshape(z, [0, -1, 2 * d])
            inference output flat
            inference output back
            inference output pairs
        }
        """)
    assert output_shape(program, "flat") == "float32[16*B*T, 4]"
    assert output_shape(program, "back") == "float32[B*T, 64]"
    assert output_shape(program, "pairs") == "float32[B, T, 128]"


# ---- deep but legitimate nesting --------------------------------------------------------
def _chain(depth: int) -> str:
    lines = ["block B0 {\n    input x : float32[N, 4]\n    output y = Dense(4)(x)\n}"]
    for i in range(1, depth):
        lines.append(f"block B{i} {{\n    input x : float32[N, 4]\n"
                     f"    output y = B{i - 1}()(relu(x))\n}}")
    lines.append(f"model M {{\n    input x : float32[N, 4]\n    target t : float32[N, 4]\n"
                 f"    output y = B{depth - 1}()(x)\n    loss mse(y, t)\n}}")
    return "\n".join(lines) + "\n"


def test_a_chain_of_hundreds_of_nested_blocks_compiles() -> None:
    program = compile_ok(_chain(450))
    assert program.models["M"].count(program.models["M"].trainable_params()) == 20


def test_nesting_past_the_limit_is_a_resource_limit_not_a_crash() -> None:
    assert codes(_chain(700)) == ["resource-limit"]


# ---- elaboration is bounded --------------------------------------------------------------
NESTED_REPEATS = """\
    block Step {
        input x : float32[N, 4]
        output y = relu(x) + 1.0
    }
    block Stage {
        input x : float32[N, 4]
        output y = repeat 10000 Step()(x)
    }
    block Network {
        input x : float32[N, 4]
        output y = repeat 10000 Stage()(x)
    }
    model Huge {
        input x : float32[N, 4]
        inference output y = repeat 10000 Network()(x)
    }
    """


def _doubling(levels: int) -> str:
    lines = ["block L0 {\n    input x : float32[N, 4]\n    output y = relu(x)\n}"]
    for i in range(1, levels + 1):
        lines.append(f"block L{i} {{\n    input x : float32[N, 4]\n"
                     f"    output y = L{i - 1}()(L{i - 1}()(x))\n}}")
    lines.append(f"model M {{\n    input x : float32[N, 4]\n"
                 f"    inference output y = L{levels}()(x)\n}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("source", [NESTED_REPEATS, _doubling(40)],
                         ids=["repeat-10000-three-deep", "40-levels-each-calling-twice"])
def test_exponential_programs_stop_at_the_node_budget(source: str) -> None:
    assert codes(source, max_nodes=3000) == ["resource-limit"]


# ---- saved programs read only what was saved with them -----------------------------------
def test_a_saved_program_imports_only_its_saved_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.gdl"
    secret.write_text("block Secret {\n    input x : float32[N, 2]\n    output y = x\n}\n")
    source = f'import "{secret}" as s\nimport "/dev/zero" as z\n' \
             "model M {\n    input x : float32[N, 2]\n    inference output y = s.Secret()(x)\n}\n"
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compiler.compile_text(source, str(tmp_path / "m.gdl"), files={})
    found = [d for d in caught.value.diagnostics if d.is_error]
    assert {d.code for d in found} == {"import-error"}
    assert len(found) == 2
    assert "output y = x" not in caught.value.render(color=False)  # contents never echoed


# ---- messages ---------------------------------------------------------------------------
def test_constant_arithmetic_errors_speak_the_language_not_python() -> None:
    with pytest.raises(GraphdslError) as caught:
        compile_ok("""\
            model M(k: int = 0) {
                input x : float32[N, 8]
                inference output y = Dense(8 // k)(x)
            }
            """)
    text = caught.value.render(color=False)
    assert "division by zero" in text
    assert "ZeroDivisionError" not in text and "modulo" not in text


@pytest.mark.parametrize("separator", ["\f", "\u2028", "\u2029", "\x1c", "\x85"])
def test_source_lines_are_quoted_after_unusual_separators_in_comments(separator: str) -> None:
    source = (f"model M {{\n    # a comment {separator} with a separator\n"
              "    input x : float32[N, 8]\n    inference output p = Dense(4)(x) + missing\n}\n")
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compiler.compile_text(source, FILE)
    (error,) = [d for d in caught.value.diagnostics if d.is_error]
    assert error.span.line == 4
    assert "Dense(4)(x) + missing" in caught.value.render(color=False)


@pytest.mark.parametrize(("name", "hint"), [
    ("True", "`true`"), ("False", "`false`"), ("Linear", "`Dense`"),
    ("Conv2d", "`Conv2D`"), ("LayerNorm", "`LayerNormalization`")])
def test_habits_from_python_and_pytorch_get_the_graphdsl_spelling(name: str, hint: str) -> None:
    with pytest.raises(GraphdslError) as caught:
        compile_ok(f"""\
            model M {{
                input x : float32[N, 8]
                inference output y = {name}(4)(x)
            }}
            """)
    (error,) = [d for d in caught.value.diagnostics if d.is_error]
    assert error.code == "unknown-name"
    assert hint in (error.help or "")


def test_a_layer_name_never_suggests_a_function() -> None:
    with pytest.raises(GraphdslError) as caught:
        compile_ok("""\
            model M {
                input x : float32[N, 8]
                inference output y = Transposed(4)(x)
            }
            """)
    (error,) = [d for d in caught.value.diagnostics if d.is_error]
    assert "`transpose`" not in (error.help or "")


def test_none_is_not_a_dimension_name() -> None:
    assert codes("""\
        model M {
            input x : float32[None, 8]
            inference output y = Dense(4)(x)
        }
        """) == ["unknown-name"]


def test_a_spec_argument_names_the_argument_and_what_it_got() -> None:
    with pytest.raises(GraphdslError) as caught:
        compile_ok("""\
            model M {
                input x : float32[N, 8]
                inference output y = Dense(4, activation = Dense)(x)
            }
            """)
    (error,) = [d for d in caught.value.diagnostics if d.is_error]
    assert "`activation` of `Dense`" in error.message and "`Dense` is a layer" in error.message


# ---- one error never hides another -------------------------------------------------------
def test_independent_errors_in_models_and_train_blocks_are_all_reported() -> None:
    with pytest.raises(GraphdslError) as caught:
        compile_ok("""\
            model A {
                input x : float32[N, 8]
                target y : float32[N, 4]
                h = Dense(4)(x) + undefined_thing
                g = Dense(4)(x) @ Dense(5)(x)
                unused_branch = Dense(7)(x)
                output p = Dense(4)(x)
                loss mse(p, y)
            }
            model C {
                input x : float32[N, 8]
                target y : float32[N, 4]
                k = Dense(4)(x)
                output p = Dense(4)(x)
                loss mse(p, y)
            }
            train C {
                epocs = 3
            }
            """)
    found = sorted((d.span.line, d.code) for d in caught.value.diagnostics if d.is_error)
    assert found == [(4, "unknown-name"), (5, "shape-mismatch"), (6, "unused-parameter"),
                     (13, "unused-parameter"), (18, "train-setting")]


# ---- start-up cost --------------------------------------------------------------------------
def test_importing_graphdsl_does_not_load_networkx() -> None:
    import subprocess
    import sys

    code = "import sys, graphdsl; print('networkx' in sys.modules, 'lark' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "True"]


def test_a_long_layer_table_is_summarised(capsys) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from graphdsl.ir.summary import SUMMARY_ROWS, print_model

    lines = ["model Long {", "    input x : float32[N, 4]", "    h = x"]
    lines += ["    h = Dense(4)(h)"] * (SUMMARY_ROWS * 3)
    lines += ["    inference output y = h", "}"]
    program = graphdsl.compile("\n".join(lines) + "\n", file=FILE)
    print_model(program.models["Long"], Console(width=200))
    out = capsys.readouterr().out
    assert f"{SUMMARY_ROWS * 2:,} more layers" in out
    assert out.count("│ dense") == SUMMARY_ROWS
    assert "dense_179" in out  # the last layer is shown


# ---- wrappers spelled as in Keras ----------------------------------------------------------
def test_bidirectional_wraps_a_layer_as_keras_spells_it() -> None:
    program = compile_ok("""\
        model Keras {
            input x : float32[N, T, 8]
            inference output y = Bidirectional(GRU(16, return_sequences = true, reset_after = false), merge_mode = "sum")(x)
        }
        model Flat {
            input x : float32[N, T, 8]
            inference output y = Bidirectional("GRU", 16, return_sequences = true, reset_after = false, merge_mode = "sum")(x)
        }
        """)
    keras_style, flat = program.models["Keras"], program.models["Flat"]
    assert keras_style.layers["bidirectional"].args == flat.layers["bidirectional"].args
    assert keras_style.parameter_count == flat.parameter_count == 2 * 3 * (8 * 16 + 16 * 16 + 16)


def test_bidirectional_of_a_non_recurrent_layer_is_one_error() -> None:
    assert codes("""\
        model M {
            input x : float32[N, T, 8]
            inference output y = Bidirectional(Dense(16))(x)
        }
        """) == ["argument-value"]


def test_labels_read_by_one_hot_are_bounded_by_its_classes() -> None:
    from graphdsl.runtime.data import id_limit

    program = compile_ok("""\
        model M {
            input x : float32[N, 8]
            target y : int32[N]
            p = softmax(Dense(4)(x))
            output p
            loss mse(p, one_hot(y, 4))
        }
        """)
    model = program.models["M"]
    (target,) = model.targets
    limit, reason, _ = id_limit(model, target)
    assert limit == 4 and "one_hot" in reason


def test_a_regularizer_alone_does_not_make_layers_unused() -> None:
    """A model without a loss of its own (inference only) whose layers carry Keras'
    regularizers is not trained, so no layer is 'unreached by the losses'."""
    program = graphdsl.compile("""
model M {
    input a : float32[B, 8]
    h = Dense(4, kernel_initializer = "he_normal")(a)
    inference output y = Dense(4, kernel_regularizer = "l2")(h)
}
""")
    assert [d for d in program.diagnostics if d.severity == "error"] == []
