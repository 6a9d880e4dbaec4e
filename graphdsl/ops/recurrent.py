"""Recurrent layers, Keras layout: one bias, gates in the order i, f, c (g), o."""

from __future__ import annotations

from ..ir.types import TensorType
from .core import last_dim_of
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register


def _lstm(call: OpCall) -> TensorType | tuple[TensorType, ...]:
    b, t, _ = call.shape("x", exact_rank=3)
    units = call.args["units"]
    state = TensorType("float32", (b, units))
    out = TensorType("float32", (b, t, units)) if call.args["return_sequences"] else state
    if call.args["return_state"]:
        return (out, state, state)
    return out


register(OpDef(
    "LSTM", "recurrent", "layer", "Long short-term memory over [batch, steps, features].",
    inputs=(In("x"), In("mask", "bool", optional=True)),
    args=(Arg("units", "int"), Arg("return_sequences", "bool", False),
          Arg("return_state", "bool", False), Arg("go_backwards", "bool", False),
          Arg("unit_forget_bias", "bool", True), Arg("use_bias", "bool", True)),
    params=(
        ParamSpec("kernel", lambda a, i: (last_dim_of(i), 4 * a["units"]), "glorot_uniform",
                  "[in_features, 4 * units], gate blocks i, f, c, o"),
        ParamSpec("recurrent_kernel", lambda a, i: (a["units"], 4 * a["units"]), "orthogonal",
                  "[units, 4 * units], gate blocks i, f, c, o", needs_input=False),
        ParamSpec("bias", lambda a, i: (4 * a["units"],), "lstm_bias", "[4 * units]",
                  when=lambda a: a["use_bias"], needs_input=False),
    ),
    infer=_lstm, mask="consume-keep", mask_keep=lambda c: bool(c.args["return_sequences"]),
    canonical="z = x_t @ kernel + h @ recurrent_kernel + bias; i, f, c~, o = split(z, 4); "
              "i, f, o = sigmoid; c~ = tanh; c = f c + i c~; h = o tanh(c). Initial state 0. "
              "At a masked step h and c keep their values and the step's output repeats the "
              "last h. The bias starts at 0 with the forget block at 1 (unit_forget_bias). "
              "Without return_sequences the output is h after the last step.",
))
