"""Keras' layers without weights (merges, activations, Permute, RepeatVector) and the merges'
functional forms, written as Keras code writes them."""

from __future__ import annotations

import pytest

from graphdsl import GraphdslError
from graphdsl.compiler import compile_text

PROGRAM = """
model Merged {
    input a : float32[B, 4]
    input b : float32[B, 4]
    input q : float32[B, 5, 8]
    input k : float32[B, 7, 8]
    inference output cat = Concatenate(axis = -1)([a, b, a])
    inference output cat_f = concatenate([a, b], axis = 1)
    inference output total = Add()([Dense(4, name = "proj")(a), b, a])
    inference output total_f = add([a, b])
    inference output difference = Subtract()([a, b])
    inference output product = Multiply(name = "gate")([a, b])
    inference output mean = Average()([a, b])
    inference output high = Maximum()([a, b, a])
    inference output low = minimum([a, b])
    inference output scores = Dot(axes = 2)([q, k])
    inference output cosine = Dot(axes = 1, normalize = true)([a, b])
}
"""


def test_merge_layers_have_kerass_output_shapes() -> None:
    model = compile_text(PROGRAM, "<test>").model()
    shapes = {model.node(n)["name"]: str(model.node(n)["type"]) for n in model.outputs}
    assert shapes == {
        "cat": "float32[B, 12]", "cat_f": "float32[B, 8]", "total": "float32[B, 4]",
        "total_f": "float32[B, 4]", "difference": "float32[B, 4]", "product": "float32[B, 4]",
        "mean": "float32[B, 4]", "high": "float32[B, 4]", "low": "float32[B, 4]",
        "scores": "float32[B, 5, 7]", "cosine": "float32[B, 1]"}
    # the tensors are computed once: one Dense, no second copy for the rewritten sum
    assert [n for n in model.params] and list(model.layers) == ["proj"]


@pytest.mark.parametrize(("line", "message"), [
    ("Subtract()([a, b, a])", "`Subtract` merges exactly two tensors, got 3"),
    ("Dot(axes = 1)([a, c])", "`Dot` contracts axis 1 of float32[B, 4] with axis 1 of"),
    ("Dot(axes = 0)([a, b])", "`axes` of `Dot` is an axis"),
    ("Concatenate(axis = 1)(a)", "is called on a list of tensors written out"),
    ("Add(mode = 1)([a, b])", "`Add` has no argument `mode`"),
    ("Permute([2, 2])(a)", "`dims` of `Permute` is an order of the axes"),
    ("RepeatVector(0)(a)", "`n` of `RepeatVector` is a positive int"),
    ("RepeatVector()(a)", "`RepeatVector` needs `n`"),
    ("ReLU(threshold = 0.5)(a)", "`ReLU` with a `threshold` other than 0"),
    ("ReLU()(a, b)", "`ReLU(...)` is called on one tensor"),
    ("Attention(use_scale = true)([a, b])", "`Attention` with `use_scale = true` is not"),
    ("Attention()([a, b])", "`Attention` takes tensors [B, T, dim]"),
    ("Unknown()([a, c])", "`Unknown` is not defined"),
])
def test_merge_mistakes_are_diagnostics(line: str, message: str) -> None:
    source = f"""
model M {{
    input a : float32[B, 4]
    input b : float32[B, 4]
    input c : float32[B, 5]
    inference output y = {line}
}}
"""
    with pytest.raises(GraphdslError) as caught:
        compile_text(source, "<test>")
    assert message in str(caught.value)


def test_a_layer_without_weights_kept_in_a_variable_says_how_to_call_it() -> None:
    source = """
model M {
    input a : float32[B, 4]
    layer act = LeakyReLU(negative_slope = 0.2)
    inference output y = act(a)
}
"""
    with pytest.raises(GraphdslError) as caught:
        compile_text(source, "<test>")
    assert "called where it is made: `LeakyReLU(...)(x)`" in \
        caught.value.diagnostics[0].help


def test_time_distributed_shapes_and_mistakes() -> None:
    source = """
model M {
    input clip : float32[B, 5, 8, 8, 3]
    input ids  : int32[B, T]
    inference output frames = TimeDistributed(Flatten())(TimeDistributed(
        Conv2D(4, 3, padding = "same"))(clip))
    inference output steps = TimeDistributed(Dense(6))(Embedding(50, 8)(ids))
}
"""
    model = compile_text(source, "<test>").model()
    shapes = {model.node(n)["name"]: str(model.node(n)["type"]) for n in model.outputs}
    assert shapes == {"frames": "float32[B, 5, 256]", "steps": "float32[B, T, 6]"}
    for line, message in (("TimeDistributed(Flatten())(seq)", "needs them and the sizes"),
                          ("TimeDistributed(Dense(3))(flat)", "takes a tensor [B, T, ...]"),
                          ("TimeDistributed(relu)(seq)", "wraps a layer")):
        bad = f"""
model M {{
    input seq : float32[B, T, 4, 2]
    input flat : float32[B, 4]
    inference output y = {line}
}}
"""
        with pytest.raises(GraphdslError) as caught:
            compile_text(bad, "<test>")
        assert message in str(caught.value), line


def test_an_unknown_function_on_a_list_is_one_error() -> None:
    """The list's items are still checked, but not stacked: tensors of two shapes would be a
    second error for the one mistake."""
    source = """
model M {
    input q : float32[B, 5, 8]
    input v : float32[B, 7, 8]
    inference output y = Attentionn()([q, v])
}
"""
    with pytest.raises(GraphdslError) as caught:
        compile_text(source, "<test>")
    assert [d.code for d in caught.value.diagnostics] == ["unknown-name"]
