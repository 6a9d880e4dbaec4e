"""Recurrent layers in Keras' layout and gate order: LSTM (i, f, c, o), GRU (z, r, h),
SimpleRNN, and Bidirectional around any of them.

All three share one set of call inputs (x, its padding mask, an optional initial state),
one mask rule (a masked step keeps the state; its output repeats the last output, 0 before
any valid step, as Keras' rnn loop does), ``go_backwards``, ``return_sequences``,
``return_state``, and dropout on the inputs (``dropout``) and on the state fed back
(``recurrent_dropout``) in training only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..diagnostics import source_text
from ..ir.types import Shape, ShapeError, TensorType, shape_str
from .core import last_dim_of
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register

# kind -> (gate blocks in the kernels, states carried, gate names in the kernel's order)
KINDS: dict[str, tuple[int, int, str]] = {
    "LSTM": (4, 2, "i, f, c, o"),
    "GRU": (3, 1, "z, r, h"),
    "SimpleRNN": (1, 1, "the one block"),
}

_INPUTS = (In("x"), In("mask", "bool", optional=True),
           In("initial_state", optional=True,
              doc="LSTM: `[h, c]` (stacked: [2, batch, units]); GRU and SimpleRNN: h "
                  "[batch, units] (or `[h]`)"))

_DROPOUT_ARGS = (
    Arg("dropout", "float", 0.0, doc="fraction of the input's features dropped in training"),
    Arg("recurrent_dropout", "float", 0.0,
        doc="fraction of the fed-back state dropped in training"),
)

DROPOUT_CANON = (" Training with dropout: one mask m ~ bernoulli(1 - dropout) / (1 - dropout) "
                 "over [batch, features] is drawn per call and multiplies x_t at every step; "
                 "with recurrent_dropout one mask over [batch, units] multiplies the h fed "
                 "back (LSTM and SimpleRNN: h @ recurrent_kernel; GRU: h in every gate's "
                 "recurrent product). Inference: no dropout.")

MASK_CANON = (" Initial state: `initial_state` or 0. At a masked step the state keeps its "
              "value and the step's output repeats the previous output (0 before any valid "
              "step). go_backwards reverses the steps (and mask) first; the returned sequence "
              "is then in processing order (reversed). Without return_sequences the output is "
              "the last output; return_state adds the final state(s).")


def _check_rates(args: Mapping[str, Any]) -> None:
    for name in ("dropout", "recurrent_dropout"):
        rate = args.get(name, 0.0)
        if not 0.0 <= rate < 1.0:
            raise ShapeError(f"`{name}` must be in [0, 1), got {source_text(rate)}", name,
                             code="argument-value")


def _check_initial_state(call: OpCall, kind: str, directions: int, b: Any, units: int) -> None:
    if not call.has("initial_state"):
        return
    shape = call.shape("initial_state")
    states = KINDS[kind][1] * directions
    wanted: list[Shape] = [(states, b, units)]
    if states == 1:
        wanted.insert(0, (b, units))
    if tuple(shape) not in wanted:
        listed = ("[h, c]" if kind == "LSTM" else "[h]") if directions == 1 else \
            f"the forward states, then the backward ones ({states} tensors)"
        raise ShapeError(f"`initial_state` of `{call.op.name}` must be "
                         f"{' or '.join(map(shape_str, wanted))}, got "
                         f"{call.input('initial_state')}", "initial_state",
                         help=f"pass {listed}, each [batch, units]")


def _recurrent(kind: str):
    def rule(call: OpCall) -> TensorType | tuple[TensorType, ...]:
        b, t, _ = call.shape("x", exact_rank=3)
        units = call.args["units"]
        _check_rates(call.args)
        _check_initial_state(call, kind, 1, b, units)
        state = TensorType("float32", (b, units))
        out = TensorType("float32", (b, t, units)) if call.args["return_sequences"] else state
        if call.args["return_state"]:
            return (out, *[state] * KINDS[kind][1])
        return out

    return rule


def _keeps_mask(call: OpCall) -> bool:
    return bool(call.args["return_sequences"])


def _gates(kind: str, a: Mapping[str, Any]) -> int:
    return KINDS[kind][0] * int(a["units"])


def _bias_shape(kind: str, a: Mapping[str, Any]) -> tuple[int, ...]:
    if kind == "GRU" and a.get("reset_after", True):
        return (2, _gates(kind, a))
    return (_gates(kind, a),)


def _kernels(prefix: str, kind_of: Any, order: str) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec(f"{prefix}kernel", lambda a, i: (last_dim_of(i), _gates(kind_of(a), a)),
                  "glorot_uniform", f"[in_features, gates * units], gate blocks {order}"),
        ParamSpec(f"{prefix}recurrent_kernel", lambda a, i: (a["units"], _gates(kind_of(a), a)),
                  "orthogonal", f"[units, gates * units], gate blocks {order}",
                  needs_input=False),
    )


def _params(kind: str) -> tuple[ParamSpec, ...]:
    bias_layout = f"[{KINDS[kind][0]} * units]"
    if kind == "GRU":
        bias_layout = ("[2, 3 * units] (reset_after): row 0 the input bias, row 1 the "
                       "recurrent bias; [3 * units] without reset_after")
    return (*_kernels("", lambda a: kind, KINDS[kind][2]),
            ParamSpec("bias", lambda a, i: _bias_shape(kind, a),
                      "lstm_bias" if kind == "LSTM" else "zeros", bias_layout,
                      when=lambda a: a["use_bias"], needs_input=False))


def _direction_bias(prefix: str, kind: str) -> ParamSpec:
    return ParamSpec(f"{prefix}bias", lambda a, i: _bias_shape(kind, a),
                     "lstm_bias" if kind == "LSTM" else "zeros",
                     f"the {kind} bias layout, when layer is {kind}",
                     when=lambda a: bool(a["use_bias"]) and a["layer"] == kind,
                     needs_input=False)


def _direction_params(prefix: str) -> tuple[ParamSpec, ...]:
    """One direction of a Bidirectional: its kind is the `layer` argument. One bias entry
    per kind, since only its initialiser differs (an LSTM's forget block starts at 1)."""
    biases = tuple(_direction_bias(prefix, inner) for inner in KINDS)
    return (*_kernels(prefix, lambda a: str(a["layer"]), "as the wrapped layer's"), *biases)


_COMMON = (Arg("return_sequences", "bool", False), Arg("return_state", "bool", False),
           Arg("go_backwards", "bool", False))

register(OpDef(
    "LSTM", "recurrent", "layer", "Long short-term memory over [batch, steps, features].",
    inputs=_INPUTS,
    args=(Arg("units", "int"), *_COMMON,
          Arg("unit_forget_bias", "bool", True), Arg("use_bias", "bool", True), *_DROPOUT_ARGS),
    params=_params("LSTM"),
    infer=_recurrent("LSTM"), mask="consume-keep", mask_keep=_keeps_mask, random=True,
    canonical="z = x_t @ kernel + h @ recurrent_kernel + bias; i, f, c~, o = split(z, 4); "
              "i, f, o = sigmoid; c~ = tanh; c = f c + i c~; h = o tanh(c). The bias starts "
              "at 0 with the forget block at 1 (unit_forget_bias). return_state gives "
              "(output, h, c). torch.nn.LSTM: weight_ih = kernel^T, weight_hh = "
              "recurrent_kernel^T, bias_ih = bias, bias_hh = 0 (same gate order)."
              + MASK_CANON + DROPOUT_CANON,
))

register(OpDef(
    "GRU", "recurrent", "layer",
    "Gated recurrent unit over [batch, steps, features] (Keras 3: reset_after by default).",
    inputs=_INPUTS,
    args=(Arg("units", "int"), *_COMMON, Arg("reset_after", "bool", True),
          Arg("use_bias", "bool", True), *_DROPOUT_ARGS),
    params=_params("GRU"),
    infer=_recurrent("GRU"), mask="consume-keep", mask_keep=_keeps_mask, random=True,
    canonical="Keras' gate order z, r, h. reset_after (default): x_z, x_r, x_h = split(x_t @ "
              "kernel + bias[0], 3); h_z, h_r, h_h = split(h @ recurrent_kernel + bias[1], 3); "
              "z = sigmoid(x_z + h_z); r = sigmoid(x_r + h_r); h~ = tanh(x_h + r h_h). "
              "Without reset_after (one bias [3 units]): x_z, x_r, x_h = split(x_t @ kernel + "
              "bias, 3); z = sigmoid(x_z + h @ U_z); r = sigmoid(x_r + h @ U_r); h~ = tanh(x_h "
              "+ (r h) @ U_h), U_* the blocks of recurrent_kernel. Then h = z h + (1 - z) h~. "
              "return_state gives (output, h). torch.nn.GRU is reset_after with gates r, z, n: "
              "weight_ih = [kernel_r | kernel_z | kernel_h]^T (the column blocks reordered), "
              "weight_hh likewise from recurrent_kernel, bias_ih = bias[0] and bias_hh = "
              "bias[1], reordered the same way." + MASK_CANON + DROPOUT_CANON,
))

register(OpDef(
    "SimpleRNN", "recurrent", "layer", "Fully connected recurrence: h = activation(x W + h U + b).",
    inputs=_INPUTS,
    args=(Arg("units", "int"), *_COMMON, Arg("activation", "activation", "tanh"),
          Arg("use_bias", "bool", True), *_DROPOUT_ARGS),
    params=_params("SimpleRNN"),
    infer=_recurrent("SimpleRNN"), mask="consume-keep", mask_keep=_keeps_mask, random=True,
    canonical="h = activation(x_t @ kernel + h @ recurrent_kernel + bias); return_state gives "
              "(output, h). torch.nn.RNN (tanh or relu): weight_ih = kernel^T, weight_hh = "
              "recurrent_kernel^T, bias_ih = bias, bias_hh = 0." + MASK_CANON + DROPOUT_CANON,
))


# "none" (Keras' None: the language has no None literal) returns both directions' outputs
MERGE_MODES = ("concat", "sum", "mul", "ave", "none")


def _bidirectional(call: OpCall) -> TensorType | tuple[TensorType, ...]:
    a = call.args
    kind = a["layer"]
    b, t, _ = call.shape("x", exact_rank=3)
    units = a["units"]
    _check_rates(a)
    if kind != "SimpleRNN" and a["activation"] is not None and \
            getattr(a["activation"], "name", a["activation"]) != "tanh":
        raise ShapeError(f"`activation` applies to a wrapped SimpleRNN, not to {kind}",
                         "activation", code="argument-value")
    _check_initial_state(call, kind, 2, b, units)
    merge = a["merge_mode"]
    width = 2 * units if merge == "concat" else units
    steps = (b, t) if a["return_sequences"] else (b,)
    one = TensorType("float32", (*steps, units))
    outs: tuple[TensorType, ...] = (one, one) if merge == "none" else \
        (TensorType("float32", (*steps, width)),)
    if a["return_state"]:
        outs += (TensorType("float32", (b, units)),) * (2 * KINDS[kind][1])
    return outs[0] if len(outs) == 1 else outs


_BIDIRECTIONAL_PARAMS = (*_direction_params("forward_"), *_direction_params("backward_"))

register(OpDef(
    "Bidirectional", "recurrent", "layer",
    "Runs a recurrent layer forwards and a copy backwards, spelled as in Keras: "
    "Bidirectional(LSTM(64, return_sequences = true), merge_mode = \"concat\") (also "
    "Bidirectional(\"LSTM\", 64, ...)).",
    inputs=_INPUTS,
    args=(Arg("layer", "str", choices=tuple(KINDS),
              doc="the wrapped recurrent layer; the arguments below configure it"),
          Arg("units", "int"),
          Arg("merge_mode", "str", "concat", choices=MERGE_MODES,
              doc='how the two directions\' outputs combine; "none" returns both'),
          *_COMMON[:2], Arg("use_bias", "bool", True),
          Arg("unit_forget_bias", "bool", True, doc="LSTM only"),
          Arg("reset_after", "bool", True, doc="GRU only"),
          Arg("activation", "activation", "tanh", doc="SimpleRNN only"), *_DROPOUT_ARGS),
    params=_BIDIRECTIONAL_PARAMS,
    infer=_bidirectional, mask="consume-keep", mask_keep=_keeps_mask, random=True,
    canonical="forward = layer(x); backward = layer(x, go_backwards = true) with its own "
              "weights (the backward_* parameters), its output sequence flipped back to the "
              "input's order; each follows its kind's definition (masks included), except that "
              "with return_sequences both directions output 0 at masked steps (as Keras' "
              "Bidirectional makes its layers do). "
              "merge_mode concat: [forward, backward] on the last axis; sum; mul; ave: "
              "(forward + backward) / 2; \"none\" (Keras' None): both outputs. return_state appends the forward "
              "states, then the backward ones; `initial_state` stacks them in that order.",
))
