"""Attention: Keras' MultiHeadAttention and the parts to build attention by hand."""

from __future__ import annotations

from ..ir.types import ShapeError, TensorType
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register
from .rules import known


def _dims(inputs, which: int) -> int:
    """The feature size of input `which` (query 0, value 1, key 2; key defaults to value)."""
    if which == 2 and (len(inputs) < 3 or inputs[2] is None):
        which = 1
    t = inputs[which]
    return known(t.shape[-1], "the feature size of attention inputs", which)


def _mha(call: OpCall) -> TensorType:
    q = call.shape("query", exact_rank=3)
    v = call.shape("value", exact_rank=3)
    if call.has("key"):
        k = call.shape("key", exact_rank=3)
        if k[1] != v[1]:
            raise ShapeError(f"`key` and `value` must have the same number of steps, got {k[1]} "
                             f"and {v[1]}", "key")
    if q[0] != v[0]:
        raise ShapeError(f"`query` and `value` must have the same batch size, got {q[0]} and "
                         f"{v[0]}", "value")
    if call.has("attention_mask"):
        m = call.shape("attention_mask")
        if len(m) != 3 or m[1] != q[1] or m[2] != v[1]:
            raise ShapeError(f"`attention_mask` must be [{q[0]}, {q[1]}, {v[1]}] (batch, query "
                             f"steps, key steps), got {call.input('attention_mask')}",
                             "attention_mask")
    out_dim = call.args["output_shape"] or q[2]
    return TensorType("float32", (q[0], q[1], out_dim))


def _value_dim(a) -> int:
    return a["value_dim"] or a["key_dim"]


register(OpDef(
    "MultiHeadAttention", "attention", "layer",
    "Multi-head scaled dot-product attention with query/key/value/output projections.",
    inputs=(In("query"), In("value"), In("key", optional=True),
            In("attention_mask", "bool", optional=True), In("mask", "bool", optional=True),
            In("value_mask", "bool", optional=True)),
    args=(Arg("num_heads", "int"), Arg("key_dim", "int"),
          Arg("value_dim", "int", None, optional=True), Arg("dropout", "float", 0.0),
          Arg("use_bias", "bool", True), Arg("output_shape", "int", None, optional=True)),
    call_args=(Arg("use_causal_mask", "bool", False),),
    params=(
        ParamSpec("query_kernel", lambda a, i: (_dims(i, 0), a["num_heads"], a["key_dim"]),
                  "glorot_uniform", "[query_features, heads, key_dim]"),
        ParamSpec("query_bias", lambda a, i: (a["num_heads"], a["key_dim"]), "zeros",
                  "[heads, key_dim]", when=lambda a: a["use_bias"], needs_input=False),
        ParamSpec("key_kernel", lambda a, i: (_dims(i, 2), a["num_heads"], a["key_dim"]),
                  "glorot_uniform", "[key_features, heads, key_dim]"),
        ParamSpec("key_bias", lambda a, i: (a["num_heads"], a["key_dim"]), "zeros",
                  "[heads, key_dim]", when=lambda a: a["use_bias"], needs_input=False),
        ParamSpec("value_kernel", lambda a, i: (_dims(i, 1), a["num_heads"], _value_dim(a)),
                  "glorot_uniform", "[value_features, heads, value_dim]"),
        ParamSpec("value_bias", lambda a, i: (a["num_heads"], _value_dim(a)), "zeros",
                  "[heads, value_dim]", when=lambda a: a["use_bias"], needs_input=False),
        ParamSpec("output_kernel", lambda a, i: (a["num_heads"], _value_dim(a),
                                                 a["output_shape"] or _dims(i, 0)),
                  "glorot_uniform", "[heads, value_dim, output_features]"),
        ParamSpec("output_bias", lambda a, i: (a["output_shape"] or _dims(i, 0),), "zeros",
                  "[output_features]", when=lambda a: a["use_bias"]),
    ),
    infer=_mha, mask="consume-keep", random=True,  # dropout on the attention weights
    canonical="q = query @ query_kernel + query_bias (per head), k from key (value if no key), "
              "v from value; scores = q k^T / sqrt(key_dim); allowed[i, j] = attention_mask "
              "and causal (j <= i) and mask[i] and value_mask[j], each if present; scores at "
              "disallowed pairs become -1e9 before a softmax over j; dropout on the weights in "
              "training; y = sum_heads (weights v) @ output_kernel + output_bias. The output "
              "keeps the query's mask. When `mask` is given and `value` is the query tensor, "
              "`value_mask` defaults to `mask`.",
))


def _split_heads(call: OpCall) -> TensorType:
    b, t, d = call.shape("x", exact_rank=3)
    heads = call.args["heads"]
    size = known(d, "the feature size split into heads", "x")
    if size % heads:
        raise ShapeError(f"cannot split {size} features into {heads} heads", "heads",
                         code="argument-value")
    return TensorType(call.input("x").dtype, (b, heads, t, size // heads))


register(OpDef(
    "split_heads", "attention", "function", "[batch, steps, heads*size] -> [batch, heads, steps, size]",
    inputs=(In("x", "any"),), args=(Arg("heads", "int"),), infer=_split_heads, mask="none",
    canonical="transpose(reshape(x, [B, T, heads, size]), [0, 2, 1, 3])",
))


def _merge_heads(call: OpCall) -> TensorType:
    from ..ir.types import dim_mul

    b, h, t, d = call.shape("x", exact_rank=4)
    return TensorType(call.input("x").dtype, (b, t, dim_mul(h, d)))


register(OpDef(
    "merge_heads", "attention", "function", "[batch, heads, steps, size] -> [batch, steps, heads*size]",
    inputs=(In("x", "any"),), infer=_merge_heads, mask="none",
    canonical="reshape(transpose(x, [0, 2, 1, 3]), [B, T, heads * size])",
))


def _causal_mask(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=2)
    axis = call.args["axis"] % len(shape)
    return TensorType("bool", (shape[axis], shape[axis]))


register(OpDef(
    "causal_mask", "attention", "function",
    "bool[T, T], true where step j may be attended from step i (j <= i); T from x's axis.",
    inputs=(In("x", "any"),), args=(Arg("axis", "int", 1),), infer=_causal_mask, mask="none",
    canonical="lower-triangular ones, including the diagonal",
))
