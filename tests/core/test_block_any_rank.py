"""A block input typed `float32[..., D]` takes tensors of any rank (keras.io's ViT applies
one `mlp` to [B, N, D] tokens and to a [B, F] vector): the named axes are read from both
ends, the rest pass through."""

from __future__ import annotations

from graphdsl.compiler import compile_text

PROGRAM = """
block MLP(hidden: ints) {
    input x : float32[..., D]
    h = x
    for units in hidden {
        h = Dense(units, activation = gelu)(h)
    }
    output h + Dense(hidden[-1])(x)
}

block Corners {
    input x : float32[B, ..., C]
    output Dense(C * 2)(x)
}

model M {
    input  tokens : float32[B, 9, 16]
    input  image  : float32[B, 5, 6, 3]
    inference output per_token = MLP([32, 8])(tokens)
    inference output pooled = MLP([4])(Flatten()(tokens))
    inference output doubled = Corners()(image)
}
"""


def test_a_block_input_with_an_ellipsis_takes_any_rank() -> None:
    model = compile_text(PROGRAM, "<test>").model()
    types = {model.node(n)["name"]: model.node(n)["type"] for n in model.outputs}
    assert str(types["per_token"]) == "float32[B, 9, 8]"
    assert str(types["pooled"]) == "float32[B, 4]"
    assert str(types["doubled"]) == "float32[B, 5, 6, 6]"
    # D was bound per call: 16 for the tokens, 144 for the flattened vector
    sizes = {model.node(p)["name"]: tuple(model.node(p)["type"].shape) for p in model.params}
    assert sizes["mlp.dense.kernel"] == (16, 32)
    assert sizes["mlp_1.dense.kernel"] == (144, 4)
