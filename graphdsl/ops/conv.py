"""Convolution and pooling, channels last (Keras' data_format="channels_last")."""

from __future__ import annotations

from ..diagnostics import choice_help, source_text
from ..ir.types import ShapeError, TensorType
from .core import last_dim_of
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register
from .rules import as_pair, conv_length

_PADDING_DOC = ('"valid", "same" (TensorFlow arithmetic: out = ceil(in / stride), the extra '
                'pad on the right), "causal" (1-D only: all padding on the left), or an int p '
                '(p zeros on both sides)')


def _padding(call: OpCall, causal_ok: bool) -> object:
    value = call.args["padding"]
    allowed = ("valid", "same", "causal") if causal_ok else ("valid", "same")
    if value in allowed or (isinstance(value, int) and value >= 0):
        return value
    raise ShapeError(f"`padding` of `{call.op.name}` must be one of "
                     f"{', '.join(map(source_text, allowed))} or an int, got "
                     f"{source_text(value)}", "padding", code="argument-value",
                     help=choice_help(value, allowed))


def _conv1d(call: OpCall) -> TensorType:
    b, length, _ = call.shape("x", exact_rank=3)
    a = call.args
    out = conv_length(length, a["kernel_size"], a["strides"], a["dilation_rate"],
                      _padding(call, True))
    return TensorType("float32", (b, out, a["filters"]))


_CONV_ARGS = (Arg("filters", "int"), Arg("kernel_size", "ints"), Arg("strides", "ints", 1),
              Arg("padding", "any", "valid", doc=_PADDING_DOC), Arg("dilation_rate", "ints", 1),
              Arg("activation", "activation", "linear"), Arg("use_bias", "bool", True))

register(OpDef(
    "Conv1D", "conv", "layer", "1-D convolution over [batch, steps, channels].",
    inputs=(In("x"),),
    args=tuple(a if a.name not in ("kernel_size", "strides", "dilation_rate")
               else Arg(a.name, "int", a.default) for a in _CONV_ARGS),
    params=(
        ParamSpec("kernel", lambda a, i: (a["kernel_size"], last_dim_of(i), a["filters"]),
                  "glorot_uniform", "[kernel_size, in_channels, filters]"),
        ParamSpec("bias", lambda a, i: (a["filters"],), "zeros", "[filters]",
                  when=lambda a: a["use_bias"], needs_input=False),
    ),
    infer=_conv1d, mask="drop",
    canonical="cross-correlation (no kernel flip), y[t] = sum_k x[t*s + k*d - pad_left] "
              "kernel[k]; " + _PADDING_DOC,
))


def _conv2d(call: OpCall) -> TensorType:
    b, h, w, _ = call.shape("x", exact_rank=4)
    a = call.args
    kh, kw = as_pair(a["kernel_size"], "kernel_size")
    sh, sw = as_pair(a["strides"], "strides")
    dh, dw = as_pair(a["dilation_rate"], "dilation_rate")
    pad = _padding(call, False)
    return TensorType("float32", (b, conv_length(h, kh, sh, dh, pad),
                                  conv_length(w, kw, sw, dw, pad), a["filters"]))


register(OpDef(
    "Conv2D", "conv", "layer", "2-D convolution over [batch, height, width, channels].",
    inputs=(In("x"),), args=_CONV_ARGS,
    params=(
        ParamSpec("kernel", lambda a, i: (*as_pair(a["kernel_size"], "kernel_size"),
                                          last_dim_of(i), a["filters"]),
                  "glorot_uniform", "[kernel_h, kernel_w, in_channels, filters]"),
        ParamSpec("bias", lambda a, i: (a["filters"],), "zeros", "[filters]",
                  when=lambda a: a["use_bias"], needs_input=False),
    ),
    infer=_conv2d, mask="drop",
    canonical="cross-correlation, channels last; " + _PADDING_DOC,
))


def _pool1d(call: OpCall) -> TensorType:
    b, length, c = call.shape("x", exact_rank=3)
    a = call.args
    stride = a["strides"] or a["pool_size"]
    out = conv_length(length, a["pool_size"], stride, 1, _padding(call, False))
    return TensorType(call.input("x").dtype, (b, out, c))


def _pool2d(call: OpCall) -> TensorType:
    b, h, w, c = call.shape("x", exact_rank=4)
    a = call.args
    ph, pw = as_pair(a["pool_size"], "pool_size")
    sh, sw = as_pair(a["strides"] or a["pool_size"], "strides")
    pad = _padding(call, False)
    return TensorType(call.input("x").dtype,
                      (b, conv_length(h, ph, sh, 1, pad), conv_length(w, pw, sw, 1, pad), c))


for _name, _kind, _rule, _dims in (("MaxPooling1D", "max", _pool1d, 1),
                                   ("AveragePooling1D", "average", _pool1d, 1),
                                   ("MaxPooling2D", "max", _pool2d, 2),
                                   ("AveragePooling2D", "average", _pool2d, 2)):
    _size_kind = "int" if _dims == 1 else "ints"
    register(OpDef(
        _name, "conv", "layer", f"{_kind.capitalize()} pooling over {_dims}-D windows.",
        inputs=(In("x"),),
        args=(Arg("pool_size", _size_kind, 2), Arg("strides", _size_kind, None, optional=True),
              Arg("padding", "any", "valid")),
        infer=_rule, mask="drop",
        canonical=f"{_kind} over each window; strides default to pool_size; padded positions "
                  "(\"same\" or an int) never win a max and are not counted in an average; a "
                  "window of padding alone gives -inf (max) or 0 (average)",
    ))


def _global1d(call: OpCall) -> TensorType:
    b, _, c = call.shape("x", exact_rank=3)
    return TensorType("float32", (b, c))


def _global2d(call: OpCall) -> TensorType:
    b, _, _, c = call.shape("x", exact_rank=4)
    return TensorType("float32", (b, c))


register(OpDef(
    "GlobalAveragePooling1D", "conv", "layer", "Mean over the steps; masked steps are skipped.",
    inputs=(In("x"), In("mask", "bool", optional=True)), infer=_global1d, mask="consume",
    canonical="y = sum_t x[t] m[t] / max(sum_t m[t], 1), m the mask (all ones if none)",
))
register(OpDef(
    "GlobalMaxPooling1D", "conv", "layer", "Max over the steps; masked steps are skipped.",
    inputs=(In("x"), In("mask", "bool", optional=True)), infer=_global1d, mask="consume",
    canonical="y = max over t of where(m[t], x[t], -1e9): masked steps never win; a row "
              "with every step masked gives -1e9",
))
register(OpDef(
    "GlobalAveragePooling2D", "conv", "layer", "Mean over height and width.",
    inputs=(In("x"),), infer=_global2d, mask="drop", canonical="y = mean over axes 1 and 2",
))
register(OpDef(
    "GlobalMaxPooling2D", "conv", "layer", "Max over height and width.",
    inputs=(In("x"),), infer=_global2d, mask="drop", canonical="y = max over axes 1 and 2",
))


def _zero_pad2d(call: OpCall) -> TensorType:
    from ..ir.types import dim_add

    b, h, w, c = call.shape("x", exact_rank=4)
    ph, pw = as_pair(call.args["padding"], "padding")
    return TensorType(call.input("x").dtype, (b, dim_add(h, 2 * ph), dim_add(w, 2 * pw), c))


register(OpDef(
    "ZeroPadding2D", "conv", "layer", "Pads height and width with zeros on both sides.",
    inputs=(In("x", "any"),), args=(Arg("padding", "ints", 1),), infer=_zero_pad2d, mask="drop",
    canonical="padding (ph, pw) zeros above and below, left and right",
))
