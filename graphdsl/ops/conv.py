"""Convolutions, channels last (Keras' data_format="channels_last"): plain (with groups),
depthwise, separable and transposed, over 1, 2 and 3 spatial axes. Kernels keep Keras'
layouts; pooling is in pooling.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..diagnostics import choice_help, source_text
from ..ir.types import Dim, ShapeError, TensorType, dim_add, dim_mul
from .core import last_dim_of
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register
from .rules import conv_length, ntuple, positive

_PADDING_DOC = ('"valid", "same" (TensorFlow arithmetic: out = ceil(in / stride), the extra '
                'pad on the right), "causal" (1-D only: all padding on the left), or an int p '
                '(p zeros on both sides)')
_AXES = {1: "[batch, steps, channels]", 2: "[batch, height, width, channels]",
         3: "[batch, depth, height, width, channels]"}
_KERNEL_AXES = {1: "kernel_size", 2: "kernel_h, kernel_w", 3: "kernel_d, kernel_h, kernel_w"}


def check_padding(call: OpCall, causal_ok: bool, int_ok: bool = True) -> object:
    value = call.args["padding"]
    allowed = ("valid", "same", "causal") if causal_ok else ("valid", "same")
    if value in allowed or (int_ok and isinstance(value, int) and value >= 0):
        return value
    tail = " or an int" if int_ok else ""
    raise ShapeError(f"`padding` of `{call.op.name}` must be one of "
                     f"{', '.join(map(source_text, allowed))}{tail}, got "
                     f"{source_text(value)}", "padding", code="argument-value",
                     help=choice_help(value, allowed))


def _windows(call: OpCall, rank: int) -> tuple[tuple[int, ...], ...]:
    a = call.args
    sizes = ntuple(a["kernel_size"], rank, "kernel_size")
    strides = ntuple(a["strides"], rank, "strides")
    dilations = ntuple(a["dilation_rate"], rank, "dilation_rate")
    for values, name in ((sizes, "kernel_size"), (strides, "strides"),
                         (dilations, "dilation_rate")):
        positive(values, name)
    return sizes, strides, dilations


def _conv_spatial(call: OpCall, rank: int) -> tuple[Any, tuple[Dim, ...], Dim]:
    """(batch, output spatial sizes, input channels) of a forward convolution."""
    b, *spatial, channels = call.shape("x", exact_rank=rank + 2)
    sizes, strides, dilations = _windows(call, rank)
    pad = check_padding(call, rank == 1)
    out = tuple(conv_length(spatial[i], sizes[i], strides[i], dilations[i], pad)
                for i in range(rank))
    return b, out, channels


def _kernel(a: Mapping[str, Any], rank: int) -> tuple[int, ...]:
    return ntuple(a["kernel_size"], rank, "kernel_size")


def _channels(inputs: Sequence[TensorType]) -> int:
    return last_dim_of(inputs)


def _size_kind(rank: int) -> str:
    return "int" if rank == 1 else "ints"


def _window_args(rank: int) -> tuple[Arg, ...]:
    k = _size_kind(rank)
    return (Arg("kernel_size", k), Arg("strides", k, 1),
            Arg("padding", "any", "valid", doc=_PADDING_DOC), Arg("dilation_rate", k, 1))


_TAIL_ARGS = (Arg("activation", "activation", "linear"), Arg("use_bias", "bool", True))


# ---- Conv1D/2D/3D, with groups
def _conv_rule(rank: int) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        b, out, channels = _conv_spatial(call, rank)
        groups, filters = call.args["groups"], call.args["filters"]
        positive([groups], "groups")
        if isinstance(channels, int) and channels % groups or filters % groups:
            raise ShapeError(f"`groups` = {groups} must divide both the input channels "
                             f"({channels}) and `filters` ({filters})", "groups",
                             code="argument-value")
        return TensorType("float32", (b, *out, filters))
    return rule


def _group_in(a: Mapping[str, Any], inputs: Sequence[TensorType]) -> int:
    return _channels(inputs) // a["groups"]


ShapeFn = Callable[[Mapping[str, Any], Sequence[TensorType]], tuple[int, ...]]


def _conv_kernel(rank: int) -> ShapeFn:
    return lambda a, i: (*_kernel(a, rank), _group_in(a, i), a["filters"])


def _depthwise_kernel(rank: int) -> ShapeFn:
    return lambda a, i: (*_kernel(a, rank), _channels(i), a["depth_multiplier"])


def _pointwise_kernel(rank: int) -> ShapeFn:
    return lambda a, i: (*(1,) * rank, _channels(i) * a["depth_multiplier"], a["filters"])


def _transpose_kernel(rank: int) -> ShapeFn:
    return lambda a, i: (*_kernel(a, rank), a["filters"], _channels(i))


def _depthwise_infer(rank: int) -> Callable[[OpCall], TensorType]:
    return lambda c: _depthwise_rule(_ranked(c, rank))


for _rank in (1, 2, 3):
    register(OpDef(
        f"Conv{_rank}D", "conv", "layer",
        f"{_rank}-D convolution over {_AXES[_rank]}; `groups` splits the channels.",
        inputs=(In("x"),),
        args=(Arg("filters", "int"), *_window_args(_rank), Arg("groups", "int", 1),
              *_TAIL_ARGS),
        params=(
            ParamSpec("kernel", _conv_kernel(_rank),
                      "glorot_uniform", f"[{_KERNEL_AXES[_rank]}, in_channels / groups, filters]"),
            ParamSpec("bias", lambda a, i: (a["filters"],), "zeros", "[filters]",
                      when=lambda a: a["use_bias"], needs_input=False),
        ),
        infer=_conv_rule(_rank), mask="drop",
        canonical="cross-correlation (no kernel flip): y[t] = sum_k x[t*s + k*d - pad_before] "
                  "kernel[k]; with groups g, output channel o sees only input channels of "
                  "group o // (filters / g) (torch's Conv weight is the kernel permuted to "
                  "[filters, in / g, *k]); padding " + _PADDING_DOC,
    ))


# ---- DepthwiseConv1D/2D and SeparableConv1D/2D
def _depthwise_rule(call: OpCall) -> TensorType:
    rank = len(call.input("x").shape or ()) - 2
    b, out, channels = _conv_spatial(call, rank)
    positive([call.args["depth_multiplier"]], "depth_multiplier")
    if "filters" in call.args:
        return TensorType("float32", (b, *out, call.args["filters"]))
    return TensorType("float32", (b, *out, dim_mul(channels, call.args["depth_multiplier"])))


def _depthwise_spec(rank: int) -> ParamSpec:
    return ParamSpec("depthwise_kernel",
                     _depthwise_kernel(rank),
                     "glorot_uniform", f"[{_KERNEL_AXES[rank]}, in_channels, depth_multiplier]")


for _rank in (1, 2):
    register(OpDef(
        f"DepthwiseConv{_rank}D", "conv", "layer",
        f"{_rank}-D depthwise convolution over {_AXES[_rank]}: each channel convolved with "
        "its own `depth_multiplier` filters.",
        inputs=(In("x"),),
        args=(*_window_args(_rank), Arg("depth_multiplier", "int", 1), *_TAIL_ARGS),
        params=(_depthwise_spec(_rank),
                ParamSpec("bias", lambda a, i: (_channels(i) * a["depth_multiplier"],), "zeros",
                          "[in_channels * depth_multiplier]", when=lambda a: a["use_bias"])),
        infer=_depthwise_infer(_rank), mask="drop",
        canonical="output channel c * depth_multiplier + m is input channel c cross-correlated "
                  "with depthwise_kernel[..., c, m] (torch: Conv with groups = in_channels and "
                  "the kernel reshaped to [*k, in * m] and permuted to [in * m, 1, *k]); "
                  "padding " + _PADDING_DOC,
    ))
    register(OpDef(
        f"SeparableConv{_rank}D", "conv", "layer",
        f"{_rank}-D depthwise convolution followed by a pointwise (1x1) one.",
        inputs=(In("x"),),
        args=(Arg("filters", "int"), *_window_args(_rank), Arg("depth_multiplier", "int", 1),
              *_TAIL_ARGS),
        params=(_depthwise_spec(_rank),
                ParamSpec("pointwise_kernel",
                          _pointwise_kernel(_rank),
                          "glorot_uniform",
                          f"[{', '.join(['1'] * _rank)}, in_channels * depth_multiplier, "
                          "filters]"),
                ParamSpec("bias", lambda a, i: (a["filters"],), "zeros", "[filters]",
                          when=lambda a: a["use_bias"], needs_input=False)),
        infer=_depthwise_infer(_rank), mask="drop",
        canonical=f"y = activation(pointwise(DepthwiseConv{_rank}D(x)) + bias): the depthwise "
                  "step has no bias, the pointwise step is a 1x1 convolution",
    ))


def _ranked(call: OpCall, rank: int) -> OpCall:
    call.shape("x", exact_rank=rank + 2)
    return call


# ---- Conv1DTranspose/2D/3D
def transpose_length(length: Dim, kernel: int, stride: int, dilation: int, padding: str,
                     output_padding: int | None) -> Dim:
    """Keras' output length of a transposed convolution (deconv_output_length)."""
    span = dilation * (kernel - 1) + 1
    if output_padding is None:
        extra = max(span - stride, 0) if padding == "valid" else 0
        return dim_add(dim_mul(length, stride), extra)
    pad = 0 if padding == "valid" else span // 2
    return dim_add(dim_mul(dim_add(length, -1), stride), span - 2 * pad + output_padding)


def _transpose_rule(rank: int) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        b, *spatial, _ = call.shape("x", exact_rank=rank + 2)
        sizes, strides, dilations = _windows(call, rank)
        pad = check_padding(call, False, int_ok=False)
        if any(s > 1 for s in strides) and any(d > 1 for d in dilations):
            raise ShapeError("`strides` > 1 cannot be combined with `dilation_rate` > 1 (as in "
                             "Keras)", "dilation_rate", code="argument-value")
        extra = call.args["output_padding"]
        outs = None if extra is None else ntuple(extra, rank, "output_padding")
        if outs is not None:
            positive(outs, "output_padding", zero_ok=True)
            if any(o >= s for o, s in zip(outs, strides, strict=True)):
                raise ShapeError(f"`output_padding` {list(outs)} must be smaller than the "
                                 f"strides {list(strides)}", "output_padding",
                                 code="argument-value")
        out = tuple(transpose_length(spatial[i], sizes[i], strides[i], dilations[i], str(pad),
                                     None if outs is None else outs[i]) for i in range(rank))
        return TensorType("float32", (b, *out, call.args["filters"]))
    return rule


for _rank in (1, 2, 3):
    register(OpDef(
        f"Conv{_rank}DTranspose", "conv", "layer",
        f"{_rank}-D transposed convolution over {_AXES[_rank]} (Keras' arithmetic).",
        inputs=(In("x"),),
        args=(Arg("filters", "int"), *_window_args(_rank)[:3],
              Arg("output_padding", _size_kind(_rank), None, optional=True),
              _window_args(_rank)[3], *_TAIL_ARGS),
        params=(
            ParamSpec("kernel", _transpose_kernel(_rank),
                      "glorot_uniform", f"[{_KERNEL_AXES[_rank]}, filters, in_channels]"),
            ParamSpec("bias", lambda a, i: (a["filters"],), "zeros", "[filters]",
                      when=lambda a: a["use_bias"], needs_input=False),
        ),
        infer=_transpose_rule(_rank), mask="drop",
        canonical="Keras' convolution transpose: z[i*s + k*d] += x[i] kernel[k] (the full "
                  "length (L-1)s + span, span = d(k-1)+1), then y = z[p : p + L_out] (zeros "
                  "past z's end) + bias. L_out without output_padding: L*s + max(span - s, 0) "
                  "(valid) or L*s (same); with output_padding q: (L-1)s + span - 2 pad + q, pad "
                  "0 (valid) or span // 2 (same). p = 0 (valid) or max((L-1)s + span - L_out, "
                  "0) // 2 (same, TensorFlow's SAME arithmetic). torch's ConvTranspose with "
                  "padding P and output_padding Q is this op with padding valid cropped by P "
                  "on the left and P - Q on the right; its weight is the kernel permuted to "
                  "[in, filters, *k]",
    ))


def transpose_window(length: int, kernel: int, stride: int, dilation: int, padding: str,
                     output_padding: int | None) -> tuple[int, int]:
    """(p, L_out): where the output starts in the full transposed convolution, and its length
    (the registry's canonical definition above)."""
    out = transpose_length(length, kernel, stride, dilation, padding, output_padding)
    assert isinstance(out, int)
    full = (length - 1) * stride + dilation * (kernel - 1) + 1
    start = 0 if padding == "valid" else max(full - out, 0) // 2
    return start, out
