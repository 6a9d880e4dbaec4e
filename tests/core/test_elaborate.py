"""Elaboration to the graph IR, through the public API: shapes, sharing, ties, repetition,
blocks, masks, losses, train blocks and imports. The assertions read the graph itself
(nodes, edges, parameter nodes), not the summary printed from it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import graphdsl
from graphdsl import Diagnostic, GraphdslError
from graphdsl.ir.graph import ModelGraph


def compile_model(source: str, name: str, **options) -> ModelGraph:
    program = graphdsl.compile(textwrap.dedent(source), file="prog.gdl", **options)
    return program.models[name]


def errors_of(source: str) -> list[Diagnostic]:
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile(textwrap.dedent(source), file="prog.gdl")
    errors = [d for d in caught.value.diagnostics if d.is_error]
    assert errors, "GraphdslError without any error diagnostic"
    return errors


def warnings_of(source: str) -> list[Diagnostic]:
    return graphdsl.compile(textwrap.dedent(source), file="prog.gdl").warnings


def output_type(model: ModelGraph, name: str) -> str:
    (node,) = [n for n in model.outputs if model.node(n)["name"] == name]
    return str(model.node(node)["type"])


def param_names(model: ModelGraph) -> list[str]:
    return [model.node(p)["name"] for p in model.params]


def ops_named(model: ModelGraph, op: str) -> list[str]:
    return [n for n in model.ops() if model.node(n)["op"] == op]


def producers(model: ModelGraph, node: str, port: str) -> list[str]:
    return [u for u, d in model.in_edges(node) if d["port"] == port]


# --- symbolic shapes -------------------------------------------------------------------


def test_dense_keeps_leading_symbolic_dimensions() -> None:
    model = compile_model("""
        model M(units: int = 16) {
            input x : float32[B, T, 8]
            inference output y = Dense(units)(x)
        }
        """, "M")
    assert output_type(model, "y") == "float32[B, T, 16]"
    kernel = next(p for p in model.params if model.node(p)["name"] == "dense.kernel")
    assert model.node(kernel)["type"].shape == (8, 16)


def test_shapes_follow_model_parameters_and_dimension_arithmetic() -> None:
    model = compile_model("""
        model M(d: int = 6) {
            input x : float32[B, T, d]
            input z : float32[B, T, 2 * d]
            joined = concat([x, z], axis = -1)
            inference output joined
            inference output first = x[:, 0]
            inference output swapped = x.T
        }
        """, "M")
    assert output_type(model, "joined") == "float32[B, T, 18]"
    assert output_type(model, "first") == "float32[B, 6]"
    assert output_type(model, "swapped") == "float32[B, 6, T]"


def test_different_symbols_do_not_broadcast() -> None:
    (error,) = errors_of("""
        model M {
            input a : float32[B, T, 4]
            input b : float32[B, S, 4]
            inference output y = a + b
        }
        """)
    assert error.code == "shape-mismatch"
    assert "T" in error.message and "S" in error.message
    assert error.span.line == 5


@pytest.mark.parametrize("layer", ["Dense(4)", "Conv1D(4, 3)", "LSTM(4)",
                                   "LayerNormalization()", "BatchNormalization()"])
def test_layers_reject_a_scalar_input(layer: str) -> None:
    errors = errors_of(f"""
        model M {{
            input x : float32[]
            inference output y = {layer}(x)
        }}
        """)
    assert errors[0].code == "shape-mismatch"
    assert errors[0].span.line == 4


def test_concat_joins_along_the_last_axis_and_refuses_a_scalar() -> None:
    source = """
        model M {
            input x : float32[B, 8]
            input z : float32[B, 4]
            inference output y = concat([x, z])
        }
        """
    assert output_type(compile_model(source, "M"), "y") == "float32[B, 12]"
    errors = errors_of(source.replace("concat([x, z])", "concat([x, 1])"))
    assert errors[0].code == "shape-mismatch"
    assert errors[0].span.line == 5


# --- shared layers and ties ------------------------------------------------------------

SHARED = """
    model S {
        input x : float32[B, 8]
        target y : float32[B, 8]
        layer d = Dense(8)
        h = d(d(x))
        output h
        loss mse(h, y)
    }
    """


def test_a_named_layer_called_twice_has_one_set_of_parameters() -> None:
    model = compile_model(SHARED, "S")
    assert param_names(model) == ["d.kernel", "d.bias"]
    assert model.parameter_count == 8 * 8 + 8
    calls = ops_named(model, "Dense")
    assert len(calls) == 2
    assert model.layers["d"].calls == calls
    kernels = {producers(model, call, "kernel")[0] for call in calls}
    assert len(kernels) == 1, "both calls must read the same kernel node"


def test_calling_an_unnamed_layer_constructor_twice_makes_two_layers() -> None:
    model = compile_model(SHARED.replace("layer d = Dense(8)\n", "").replace(
        "h = d(d(x))", "h = Dense(8)(Dense(8)(x))"), "S")
    assert param_names(model) == ["dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias"]
    assert model.parameter_count == 2 * (8 * 8 + 8)


def test_a_shared_layer_called_on_another_width_is_an_error() -> None:
    errors = errors_of(SHARED.replace("input x : float32[B, 8]", "input x : float32[B, 4]"))
    assert errors[0].code == "shape-mismatch"
    assert "`d`" in errors[0].message


TIED = """
    model LM(vocab: int = 50, dim: int = 8) {
        input tokens : int32[B, T]
        target next : int32[B, T]
        layer embed = Embedding(vocab, dim)
        h = LSTM(dim, return_sequences = true)(embed(tokens))
        logits = Dense(vocab, use_bias = false, kernel = embed.embeddings.T)(h)
        output logits
        loss crossentropy(logits, next, from_logits = true)
    }
    """


def test_a_tie_is_one_parameter_node_read_by_two_layers() -> None:
    model = compile_model(TIED, "LM")
    names = param_names(model)
    assert names.count("embed.embeddings") == 1
    assert not any(n.startswith("dense.") for n in names), names
    (table,) = [p for p in model.params if model.node(p)["name"] == "embed.embeddings"]
    (embedding,) = ops_named(model, "Embedding")
    (dense,) = ops_named(model, "Dense")
    assert producers(model, embedding, "embeddings") == [table]
    (kernel_source,) = producers(model, dense, "kernel")
    assert model.node(kernel_source)["op"] == "transpose"
    assert producers(model, kernel_source, "x") == [table]
    assert model.ties() == {"embed.embeddings": ["dense", "embed"]}


def test_a_tie_is_counted_once() -> None:
    tied = compile_model(TIED, "LM")
    untied = compile_model(TIED.replace(", kernel = embed.embeddings.T", ""), "LM")
    assert untied.ties() == {}
    assert untied.parameter_count - tied.parameter_count == 50 * 8


def test_a_tie_of_the_wrong_shape_is_an_error() -> None:
    errors = errors_of(TIED.replace("embed.embeddings.T", "embed.embeddings"))
    assert errors[0].code == "tie-shape"
    assert errors[0].span.line == 7


# --- repetition ------------------------------------------------------------------------

REPEAT = """
    block Blk(d: int) {
        input x : float32[B, d]
        output Dense(d)(x)
    }
    model R {
        input x : float32[B, 8]
        y = repeat 3 MODE Blk(8)(x)
        inference output y
    }
    """


def test_repeat_creates_separate_parameters_per_copy() -> None:
    model = compile_model(REPEAT.replace("MODE ", ""), "R")
    assert model.parameter_count == 3 * (8 * 8 + 8)
    assert len(model.params) == 6
    assert len(ops_named(model, "Dense")) == 3
    assert len({model.node(p)["name"] for p in model.params}) == 6


def test_repeat_shared_reuses_one_set_of_parameters() -> None:
    model = compile_model(REPEAT.replace("MODE ", "shared "), "R")
    assert model.parameter_count == 8 * 8 + 8
    assert len(model.params) == 2
    calls = ops_named(model, "Dense")
    assert len(calls) == 3
    assert len({producers(model, c, "kernel")[0] for c in calls}) == 1


def test_repeat_chains_the_copies() -> None:
    model = compile_model(REPEAT.replace("MODE ", ""), "R")
    first, second, third = ops_named(model, "Dense")
    assert model.node(producers(model, first, "x")[0])["kind"] == "input"
    assert producers(model, second, "x") == [first]
    assert producers(model, third, "x") == [second]


def test_a_repeated_stack_returns_every_hidden_state() -> None:
    source = """
        block Blk(d: int) {
            input x : float32[B, T, d]
            output Dense(d)(x)
        }
        model R {
            input x : float32[B, T, 8]
            layer stack = repeat 3 Blk(8)
            h, states = stack(x, return_states = true)
            inference output h
            inference output first = states[0]
            inference output last = states[3]
        }
        """
    model = compile_model(source, "R")
    assert output_type(model, "last") == "float32[B, T, 8]"
    outputs = {model.node(n)["name"]: n for n in model.outputs}
    assert model.node(producers(model, outputs["first"], "x")[0])["kind"] == "input"
    assert producers(model, outputs["last"], "x") == producers(model, outputs["h"], "x")
    (error,) = errors_of(source.replace("states[3]", "states[4]"))
    assert error.code == "argument-value"


def test_repeat_count_must_not_be_negative() -> None:
    (error,) = errors_of(REPEAT.replace("repeat 3 MODE", "repeat (0 - 1)"))
    assert error.code == "argument-value"
    assert error.span.line == 8


# --- blocks ----------------------------------------------------------------------------


def test_block_inputs_take_the_callers_symbolic_sizes() -> None:
    model = compile_model("""
        block Proj(d: int) {
            input x : float32[N, L, d]
            output Dense(2 * d)(x)
        }
        model U {
            input a : float32[B, T, 8]
            inference output y = Proj(8)(a)
        }
        """, "U")
    assert output_type(model, "y") == "float32[B, T, 16]"


def test_block_inputs_sharing_a_symbol_accept_equal_sizes() -> None:
    model = compile_model("""
        block Pair(d: int) {
            input x : float32[N, d]
            input z : float32[N, d]
            output Dense(d)(x) + Dense(d)(z)
        }
        model U {
            input a : float32[B, 8]
            input b : float32[B, 8]
            inference output y = Pair(8)(a, b)
        }
        """, "U")
    assert output_type(model, "y") == "float32[B, 8]"


def test_block_inputs_must_agree_on_a_shared_symbol() -> None:
    errors = errors_of("""
        block Pair(d: int) {
            input x : float32[N, d]
            input z : float32[N, d]
            output Dense(d)(x) + Dense(d)(z)
        }
        model U {
            input a : float32[B, 8]
            input b : float32[C, 8]
            inference output y = Pair(8)(a, b)
        }
        """)
    assert errors[0].code == "shape-mismatch"
    assert errors[0].span.line == 10, "the error belongs at the call, not inside the block"
    assert "`z`" in errors[0].message


def test_block_input_mismatch_names_the_block_input() -> None:
    errors = errors_of("""
        block Proj(d: int) {
            input x : float32[N, d]
            output Dense(2 * d)(x)
        }
        model U {
            input a : float32[B, 4]
            inference output y = Proj(8)(a)
        }
        """)
    assert errors[0].code == "shape-mismatch"
    assert "`x`" in errors[0].message and "Proj" in errors[0].message


def test_block_parameters_are_named_after_the_block() -> None:
    model = compile_model("""
        block Enc(d: int) {
            input x : float32[B, d]
            output Dense(d)(Dense(d)(x))
        }
        model M {
            input x : float32[B, 4]
            layer encoder = Enc(4)
            inference output y = encoder(x)
        }
        """, "M")
    assert param_names(model) == ["encoder.dense.kernel", "encoder.dense.bias",
                                  "encoder.dense_1.kernel", "encoder.dense_1.bias"]


# --- masks -----------------------------------------------------------------------------

MASKED = """
    model L(vocab: int = 100) {
        input ids : int32[B, T]
        target y : int32[B, T]
        h = Embedding(vocab, 16, mask_zero = true)(ids)
        h = LSTM(16, return_sequences = true)(h)
        logits = Dense(vocab)(h)
        output logits
        loss crossentropy(logits, y, from_logits = true)
        metric acc = accuracy(logits, y, where = mask_of(h))
    }
    """


def test_mask_zero_mask_reaches_the_lstm_and_the_loss() -> None:
    model = compile_model(MASKED, "L")
    (lstm,) = ops_named(model, "LSTM")
    (loss_op,) = ops_named(model, "crossentropy")
    (lstm_mask,) = producers(model, lstm, "mask")
    (loss_mask,) = producers(model, loss_op, "mask")
    assert lstm_mask == loss_mask
    (ids,) = model.inputs
    mask_inputs = [model.node(u)["kind"] for u, _ in model.in_edges(lstm_mask)]
    assert "input" in mask_inputs, "the padding mask is computed from the ids"
    assert producers(model, lstm_mask, "x") == [ids]


def test_mask_of_is_the_padding_mask() -> None:
    model = compile_model(MASKED, "L")
    (accuracy,) = ops_named(model, "accuracy")
    (lstm,) = ops_named(model, "LSTM")
    assert producers(model, accuracy, "where") == producers(model, lstm, "mask")


def test_without_mask_zero_nothing_is_masked() -> None:
    model = compile_model(MASKED.replace(", mask_zero = true", "").replace(
        ", where = mask_of(h)", ""), "L")
    (lstm,) = ops_named(model, "LSTM")
    (loss_op,) = ops_named(model, "crossentropy")
    assert producers(model, lstm, "mask") == []
    assert producers(model, loss_op, "mask") == []


def test_mask_of_an_unmasked_tensor_is_an_error() -> None:
    (error,) = errors_of(MASKED.replace(", mask_zero = true", ""))
    assert error.code == "argument-value"
    assert error.span.line == 10


def test_a_reduction_that_drops_the_mask_warns() -> None:
    source = """
        model P {
            input ids : int32[B, T]
            e = Embedding(100, 8, mask_zero = true)(ids)
            pooled = mean(e, axis = 1)
            inference output pooled
        }
        """
    (warning,) = warnings_of(source)
    assert warning.code == "mask-ignored"
    assert warning.span.line == 5
    masked = source.replace("mean(e, axis = 1)",
                            "mean(e, axis = 1, where = expand_dims(mask_of(e), axis = -1))")
    assert warnings_of(masked) == []


def test_mask_ignored_help_suggests_a_fix_that_compiles() -> None:
    source = """
        model P {
            input ids : int32[B, T]
            e = Embedding(100, 8, mask_zero = true)(ids)
            pooled = mean(e, axis = 1)
            inference output pooled
        }
        """
    (warning,) = warnings_of(source)
    suggested = warning.help.split("`")[1]          # e.g. mean(x, axis = 1, where = mask_of(x))
    assert "where" in suggested
    fixed = source.replace("mean(e, axis = 1)",
                           suggested.replace("(x,", "(e,").replace("mask_of(x)", "mask_of(e)"))
    assert warnings_of(fixed) == []


# --- losses ----------------------------------------------------------------------------

TERMS = """
    model Two {
        input x : float32[B, 8]
        target y : int32[B]
        z = Dense(4)(x)
        output cls = Dense(3)(z)
        output recon = Dense(8)(z)
        loss 1.0 * crossentropy(cls, y, from_logits = true) + 0.5 * mse(recon, x)
             - 0.1 * mean(square(z))
    }
    """


def test_weighted_loss_terms_become_separate_named_terms() -> None:
    model = compile_model(TERMS, "Two")
    terms = [(model.node(n)["name"], model.node(n)["weight"]) for n in model.losses]
    assert terms == [("crossentropy", 1.0), ("mse", 0.5), ("mean", -0.1)]
    for loss in model.losses:
        (term_op,) = producers(model, loss, "x")
        assert model.node(term_op)["types"][0].shape == ()


def test_terms_of_a_named_loss_carry_its_name_and_stay_unique() -> None:
    model = compile_model(TERMS.replace("loss 1.0 *", "loss total = 1.0 *").replace(
        "0.5 * mse(recon, x)", "0.5 * mse(recon, x) + 2 * mse(recon, x)"), "Two")
    terms = [(model.node(n)["name"], model.node(n)["weight"]) for n in model.losses]
    assert terms == [("total.crossentropy", 1.0), ("total.mse", 0.5), ("total.mse_1", 2.0),
                     ("total.mean", -0.1)]


def test_a_loss_that_is_not_a_scalar_is_an_error() -> None:
    errors = errors_of(TERMS.replace("mean(square(z))", "square(z)"))
    assert [e.code for e in errors] == ["loss-not-scalar"]


def test_a_regularizer_argument_adds_a_loss_term_on_that_parameter() -> None:
    regularized = TERMS.replace("Dense(4)(x)", "Dense(4, kernel_regularizer = l2(0.01))(x)")
    model = compile_model(regularized, "Two")
    terms = {model.node(n)["name"]: n for n in model.losses}
    assert model.node(terms["dense.kernel.l2"])["weight"] == 0.01
    (penalty,) = producers(model, terms["dense.kernel.l2"], "x")
    (kernel,) = [p for p in model.params if model.node(p)["name"] == "dense.kernel"]
    assert kernel in {u for u, _ in model.in_edges(penalty)}
    assert len(model.losses) == 4


# --- train blocks ----------------------------------------------------------------------

TRAINED = """
    block Enc(d: int) {
        input x : float32[B, d]
        output Dense(d)(Dense(d)(x))
    }
    model C {
        input x : float32[B, 8]
        target y : int32[B]
        layer encoder = Enc(8)
        layer embed = Dense(8)
        output logits = Dense(2)(encoder(embed(x)))
        loss crossentropy(logits, y, from_logits = true)
    }
    train C {
        TRAIN
    }
    """


def trained(body: str) -> str:
    return TRAINED.replace("TRAIN", textwrap.dedent(body).strip().replace("\n", "\n        "))


def test_optimizer_groups_take_the_first_matching_pattern() -> None:
    model = compile_model(trained("""
        optimizer encoder.* = adamw(lr = 2e-5, weight_decay = 0.01)
        optimizer "*.kernel" = sgd(lr = 0.1)
        optimizer * = adam(lr = 1e-3)
        """), "C")
    groups = model.train.groups
    assert set(groups) == set(param_names(model))
    assert {n for n, g in groups.items() if g == "encoder.*"} == {
        "encoder.dense.kernel", "encoder.dense.bias",
        "encoder.dense_1.kernel", "encoder.dense_1.bias"}
    assert {n for n, g in groups.items() if g == "*.kernel"} == {"embed.kernel", "dense.kernel"}
    assert {n for n, g in groups.items() if g == "*"} == {"embed.bias", "dense.bias"}
    assert [pattern for pattern, _, _ in model.train.optimizers] == ["encoder.*", "*.kernel", "*"]


def test_a_pattern_behind_a_broader_one_is_reported_as_shadowed() -> None:
    warnings = warnings_of(trained("""
        optimizer * = adam(lr = 1e-3)
        optimizer encoder.* = adamw(lr = 2e-5)
        """))
    assert [w.code for w in warnings] == ["optimizer-shadowed"]
    assert "encoder.*" in warnings[0].message


def test_a_parameter_without_an_optimizer_is_an_error() -> None:
    (error,) = errors_of(trained("optimizer encoder.* = adamw(lr = 2e-5)"))
    assert error.code == "optimizer-coverage"
    for name in ("embed.kernel", "embed.bias", "dense.kernel", "dense.bias"):
        assert name in error.message
    assert "encoder.dense" not in error.message


def test_frozen_parameters_need_no_optimizer_and_are_not_trainable() -> None:
    model = compile_model(trained("""
        freeze embed.*
        optimizer encoder.* = adamw(lr = 2e-5)
        optimizer dense.* = adam(lr = 1e-3)
        """), "C")
    frozen = {model.node(p)["name"] for p in model.params if not model.node(p)["trainable"]}
    assert frozen == {"embed.kernel", "embed.bias"}
    assert model.parameter_count - model.trainable_count == 8 * 8 + 8
    assert "embed.kernel" not in model.train.groups


def test_freezing_nothing_warns() -> None:
    warnings = warnings_of(trained("freeze decoder.*"))
    assert len(warnings) == 1
    assert "decoder.*" in warnings[0].message


def test_frozen_params_and_untrainable_layers_are_not_counted_as_trainable() -> None:
    model = compile_model("""
        model F {
            input x : float32[B, 8]
            param w : float32[8, 8] = normal(0, 0.1) frozen
            param v : float32[8] = zeros()
            inference output y = Dense(8, trainable = false)(x @ w) + v
        }
        """, "F")
    trainable = {model.node(p)["name"]: model.node(p)["trainable"] for p in model.params}
    assert trainable == {"w": False, "v": True, "dense.kernel": False, "dense.bias": False}
    assert (model.parameter_count, model.trainable_count) == (64 + 8 + 72, 8)


# --- imports ---------------------------------------------------------------------------

LIBRARY = """
block Enc(d: int) {
    input x : float32[B, d]
    output Dense(d)(x)
}
block Head(d: int) {
    input x : float32[B, d]
    output Dense(2)(x)
}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_import_styles_bring_definitions_in(tmp_path: Path) -> None:
    write(tmp_path, "lib/blocks.gdl", LIBRARY)
    main = write(tmp_path, "main.gdl", """
        import "lib/blocks.gdl" as lib
        from "lib/blocks.gdl" import Enc
        model M {
            input x : float32[B, 4]
            inference output y = lib.Head(4)(Enc(4)(x))
        }
        """)
    model = graphdsl.compile_file(str(main)).models["M"]
    assert param_names(model) == ["enc.dense.kernel", "enc.dense.bias",
                                  "head.dense.kernel", "head.dense.bias"]
    assert output_type(model, "y") == "float32[B, 2]"


def test_imports_are_relative_to_the_importing_file(tmp_path: Path) -> None:
    write(tmp_path, "lib/blocks.gdl", LIBRARY)
    write(tmp_path, "lib/wrap.gdl", """
        import "blocks.gdl"
        block Wrapped(d: int) {
            input x : float32[B, d]
            output Head(d)(Enc(d)(x))
        }
        """)
    main = write(tmp_path, "main.gdl", """
        from "lib/wrap.gdl" import Wrapped
        model M {
            input x : float32[B, 4]
            inference output y = Wrapped(4)(x)
        }
        """)
    model = graphdsl.compile_file(str(main)).models["M"]
    assert output_type(model, "y") == "float32[B, 2]"


def test_a_missing_import_is_reported_at_the_path(tmp_path: Path) -> None:
    main = write(tmp_path, "main.gdl", """
        import "nowhere.gdl"
        model M {
            input x : float32[B, 4]
            inference output y = Dense(2)(x)
        }
        """)
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile_file(str(main))
    (error,) = caught.value.diagnostics
    assert error.code == "import-error"
    assert (error.span.line, error.span.column) == (2, 8)
    assert error.span.file == str(main)


def test_importing_an_undefined_name_suggests_the_right_one(tmp_path: Path) -> None:
    write(tmp_path, "blocks.gdl", LIBRARY)
    main = write(tmp_path, "main.gdl", """
        from "blocks.gdl" import Encc
        model M {
            input x : float32[B, 4]
            inference output y = Dense(2)(x)
        }
        """)
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile_file(str(main))
    (error,) = caught.value.diagnostics
    assert error.code == "import-error"
    assert (error.span.line, error.span.column) == (2, 26)
    assert "`Enc`" in (error.help or "")


def test_an_error_inside_an_imported_file_names_that_file(tmp_path: Path) -> None:
    library = write(tmp_path, "blocks.gdl", LIBRARY.replace("output Dense(2)(x)",
                                                            "output Dense(2)(x))"))
    main = write(tmp_path, "main.gdl", """
        import "blocks.gdl"
        model M {
            input x : float32[B, 4]
            inference output y = Enc(4)(x)
        }
        """)
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile_file(str(main))
    errors = [d for d in caught.value.diagnostics if d.is_error]
    assert errors[0].code == "syntax"
    assert Path(errors[0].span.file).resolve() == library.resolve()
    assert errors[0].span.line == 8


def test_an_import_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.gdl", 'import "b.gdl"\n' + LIBRARY)
    write(tmp_path, "b.gdl", 'import "a.gdl"\n')
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile_file(str(tmp_path / "a.gdl"))
    (error,) = caught.value.diagnostics
    assert error.code == "import-error"
    assert "cycle" in error.message
    assert "a.gdl -> b.gdl -> a.gdl" in error.message
