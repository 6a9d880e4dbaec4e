"""Recurrent layers against the frameworks' own: keras.layers.GRU/LSTM/SimpleRNN/Bidirectional
and torch.nn.GRU/LSTM/RNN, given the same weights (converted to torch's layout as each op's
canonical definition says), against a graphdsl program compiled for both backends.

Outputs agree within 1e-5, and the program's parameter count is Keras' count_params().
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pytest
import torch

import graphdsl

pytestmark = [pytest.mark.keras, pytest.mark.torch]

TOL = 1e-5
B, T, D, U = 3, 6, 4, 5
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
KERAS_LAYERS = {"LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU,
                "SimpleRNN": keras.layers.SimpleRNN}


def rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@dataclass
class Setup:
    """One layer: its kind, the DSL's arguments, Keras' keyword arguments, and the call."""

    kind: str
    dsl_args: str
    keras_args: dict[str, Any] = field(default_factory=dict)
    masked: bool = False
    initial_state: bool = False
    outputs: int = 1  # tensors the layer returns
    bidirectional: str | None = None  # merge mode of a Bidirectional around the layer

    @property
    def id(self) -> str:
        wrapped = f"Bidirectional-{self.bidirectional}-" if self.bidirectional else ""
        return f"{wrapped}{self.kind}({self.dsl_args})" + "-masked" * self.masked + \
            "-initial" * self.initial_state

    @property
    def states(self) -> int:
        return (2 if self.kind == "LSTM" else 1) * (2 if self.bidirectional else 1)


def weights(kind: str, reset_after: bool, r: np.random.Generator) -> list[np.ndarray]:
    """kernel, recurrent_kernel, bias in Keras' (the canonical) layout."""
    gates = GATES[kind] * U
    bias_shape = (2, gates) if kind == "GRU" and reset_after else (gates,)
    return [(r.standard_normal(s) * 0.5).astype(np.float32)
            for s in ((D, gates), (U, gates), bias_shape)]


SETUPS = [
    Setup("GRU", "return_sequences = true"),
    Setup("GRU", "reset_after = false, return_sequences = true", {"reset_after": False}),
    Setup("GRU", "return_state = true, go_backwards = true", outputs=2, masked=True),
    Setup("GRU", "reset_after = false, return_sequences = true, return_state = true",
          {"reset_after": False}, masked=True, initial_state=True, outputs=2),
    Setup("GRU", "return_sequences = true, dropout = 0.3, recurrent_dropout = 0.2",
          {"dropout": 0.3, "recurrent_dropout": 0.2}),  # inference: no dropout
    Setup("SimpleRNN", "return_sequences = true"),
    Setup("SimpleRNN", "activation = relu, return_sequences = true", {"activation": "relu"},
          masked=True),
    Setup("SimpleRNN", "return_state = true", outputs=2, initial_state=True),
    Setup("LSTM", "return_sequences = true, return_state = true", outputs=3,
          initial_state=True),
    Setup("LSTM", "return_sequences = true, go_backwards = true", masked=True,
          initial_state=True),
    *(Setup("LSTM", "return_sequences = true", bidirectional=merge, masked=True,
            outputs=2 if merge == "none" else 1) for merge in ("concat", "sum", "mul", "ave",
                                                               "none")),
    Setup("GRU", "", bidirectional="concat", initial_state=True),
    Setup("GRU", "reset_after = false, return_state = true", {"reset_after": False},
          bidirectional="concat", masked=True, outputs=3),
    Setup("SimpleRNN", "return_sequences = true", bidirectional="sum"),
]


def program_text(s: Setup) -> str:
    names = [f"o{i}" for i in range(s.outputs)]
    args = s.dsl_args
    if s.bidirectional:
        args = f'"{s.kind}", {U}, merge_mode = "{s.bidirectional}"' + (f", {args}" if args else "")
        layer = f"Bidirectional({args})"
    else:
        layer = f"{s.kind}({U}{', ' if args else ''}{args})"
    call = ["x"] + ["mask = m"] * s.masked
    if s.initial_state:
        call.append("initial_state = [" + ", ".join(f"s{i}" for i in range(s.states)) + "]")
    lines = ["model M {", f"    input x : float32[B, {T}, {D}]"]
    lines += [f"    input m : bool[B, {T}]"] * s.masked
    lines += [f"    input s{i} : float32[B, {U}]" for i in range(s.states)] * s.initial_state
    lines.append(f"    {', '.join(names)} = {layer}({', '.join(call)})")
    lines += [f"    inference output {n}" for n in names]
    lines.append("}")
    return "\n".join(lines) + "\n"


def keras_layer(s: Setup) -> keras.layers.Layer:
    options = {"units": U, **s.keras_args}
    for flag in ("return_sequences", "return_state", "go_backwards"):
        if f"{flag} = true" in s.dsl_args:
            options[flag] = True
    if s.bidirectional:
        merge = None if s.bidirectional == "none" else s.bidirectional
        return keras.layers.Bidirectional(KERAS_LAYERS[s.kind](**options), merge_mode=merge)
    return KERAS_LAYERS[s.kind](**options)


def inputs_for(s: Setup) -> dict[str, np.ndarray]:
    r = rng("inputs", s.id)
    data = {"x": r.standard_normal((B, T, D)).astype(np.float32)}
    if s.masked:
        data["m"] = np.arange(T)[None, :] < np.array([T, 3, 1])[:, None]
    if s.initial_state:
        data.update({f"s{i}": r.standard_normal((B, U)).astype(np.float32)
                     for i in range(s.states)})
    return data


@pytest.mark.parametrize("s", SETUPS, ids=lambda s: s.id)
def test_matches_the_keras_layer(s: Setup) -> None:
    r = rng("weights", s.id)
    reset_after = s.keras_args.get("reset_after", True)
    layer = keras_layer(s)
    data = inputs_for(s)
    layer.build((B, T, D))
    directions = [weights(s.kind, reset_after, r) for _ in range(2 if s.bidirectional else 1)]
    layer.set_weights([w for d in directions for w in d])
    call: dict[str, Any] = {}
    if s.masked:
        call["mask"] = data["m"]
    if s.initial_state:
        call["initial_state"] = [data[f"s{i}"] for i in range(s.states)]
    expected = layer(data["x"], **call)
    expected = [np.asarray(e) for e in (expected if isinstance(expected, (list, tuple))
                                        else [expected])]
    assert len(expected) == s.outputs
    names = ("kernel", "recurrent_kernel", "bias")
    if s.bidirectional:
        values = {f"bidirectional.{side}_{n}": w for side, d in zip(("forward", "backward"),
                                                                     directions, strict=True)
                  for n, w in zip(names, d, strict=True)}
    else:
        path = {"GRU": "gru", "LSTM": "lstm", "SimpleRNN": "simple_rnn"}[s.kind]
        values = {f"{path}.{n}": w for n, w in zip(names, directions[0], strict=True)}
    source = program_text(s)
    program = graphdsl.compile(source)
    assert program.model(None).parameter_count == layer.count_params()
    module = graphdsl.compile(source, backend="torch", values=values).eval()
    model = graphdsl.compile(source, backend="keras", values=values)
    ours = {"torch": module(**{k: torch.from_numpy(v) for k, v in data.items()}),
            "keras": model(data)}
    for backend, out in ours.items():
        for i, e in enumerate(expected):
            got = np.asarray(out[f"o{i}"].detach() if backend == "torch" else out[f"o{i}"])
            np.testing.assert_allclose(got, e, rtol=TOL, atol=TOL,
                                       err_msg=f"{backend} output {i}")


def torch_weights(kind: str, kernel: np.ndarray, recurrent_kernel: np.ndarray,
                  bias: np.ndarray) -> dict[str, torch.Tensor]:
    """The canonical definitions' conversion to torch.nn.LSTM/GRU/RNN."""
    def reorder(w: np.ndarray) -> np.ndarray:  # GRU: Keras' z, r, h -> torch's r, z, n
        if kind != "GRU":
            return w
        z, r, h = np.split(w, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1)

    if kind == "GRU":
        bias_ih, bias_hh = reorder(bias[0]), reorder(bias[1])
    else:
        bias_ih, bias_hh = bias, np.zeros_like(bias)
    return {"weight_ih_l0": torch.from_numpy(reorder(kernel).T.copy()),
            "weight_hh_l0": torch.from_numpy(reorder(recurrent_kernel).T.copy()),
            "bias_ih_l0": torch.from_numpy(bias_ih.copy()),
            "bias_hh_l0": torch.from_numpy(bias_hh.copy())}


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "SimpleRNN-tanh", "SimpleRNN-relu"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_the_torch_module(kind: str, bidirectional: bool) -> None:
    kind, _, activation = kind.partition("-")
    r = rng("torch", kind, activation, bidirectional)
    directions = [weights(kind, True, r) for _ in range(2 if bidirectional else 1)]
    if kind == "LSTM":
        reference: torch.nn.RNNBase = torch.nn.LSTM(D, U, batch_first=True,
                                                    bidirectional=bidirectional)
    elif kind == "GRU":
        reference = torch.nn.GRU(D, U, batch_first=True, bidirectional=bidirectional)
    else:
        reference = torch.nn.RNN(D, U, nonlinearity=activation, batch_first=True,
                                 bidirectional=bidirectional)
    state = torch_weights(kind, *directions[0])
    if bidirectional:
        state.update({f"{k}_reverse": v for k, v in torch_weights(kind, *directions[1]).items()})
    reference.load_state_dict(state)
    x = r.standard_normal((B, T, D)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))[0].numpy()
    args = f"return_sequences = true{', activation = ' + activation if activation else ''}"
    names = ("kernel", "recurrent_kernel", "bias")
    if bidirectional:
        layer = f'Bidirectional("{kind}", {U}, {args})'
        values = {f"bidirectional.{side}_{n}": w for side, d in zip(("forward", "backward"),
                                                                     directions, strict=True)
                  for n, w in zip(names, d, strict=True)}
    else:
        layer = f"{kind}({U}, {args})"
        path = {"GRU": "gru", "LSTM": "lstm", "SimpleRNN": "simple_rnn"}[kind]
        values = {f"{path}.{n}": w for n, w in zip(names, directions[0], strict=True)}
    source = (f"model M {{\n    input x : float32[B, {T}, {D}]\n"
              f"    inference output y = {layer}(x)\n}}\n")
    module = graphdsl.compile(source, backend="torch", values=values).eval()
    model = graphdsl.compile(source, backend="keras", values=values)
    got_torch = module(x=torch.from_numpy(x))["y"].detach().numpy()
    got_keras = np.asarray(model({"x": x})["y"])
    for backend, got in (("torch", got_torch), ("keras", got_keras)):
        np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL, err_msg=backend)
