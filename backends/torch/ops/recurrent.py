"""LSTM, GRU, SimpleRNN and Bidirectional in Keras' layout (graphdsl/ops/recurrent.py).

Without a mask (and without recurrent dropout) a layer runs torch's fused kernel (cuDNN
on a GPU), the one ``nn.LSTM``/``nn.GRU``/``nn.RNN`` run, with the weights converted:
weight_ih = kernel^T, weight_hh = recurrent_kernel^T; a GRU's column blocks reordered
from Keras' z, r, h to torch's r, z, n and its two bias rows as bias_ih and bias_hh (only
reset_after GRUs have a fused form); an LSTM's or SimpleRNN's one bias as bias_ih, with
bias_hh = 0. The tensors are views of one freshly concatenated buffer in cuDNN's order, so
cuDNN uses them as they are.

With a mask, at a masked step the state keeps its value and the step's output repeats the
previous output (0 before any valid step). When each row's valid steps form one block
(right or left padding: the usual case) and the final state is not needed, that is
computed exactly with the fused kernel: each row is shifted so that its block starts at
step 0, run from the initial state, and its outputs are gathered back (this costs one host
synchronisation to check the mask). Other cases run a step loop.

``go_backwards`` reverses the steps (and the mask) first; like Keras, the returned sequence
is then in the processing order, i.e. reversed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from graphdsl.ops.recurrent import KINDS

from . import impl
from .core import activate

State = tuple[torch.Tensor, ...]


def _gru_to_torch(w: torch.Tensor) -> torch.Tensor:
    """Keras' gate blocks z, r, h on the last axis -> torch's r, z, n."""
    z, r, h = w.chunk(3, dim=-1)
    return torch.cat([r, z, h], dim=-1)


def _fused_weights(kind: str, kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
                   bias: torch.Tensor | None) -> list[torch.Tensor]:
    if kind == "GRU":
        kernel, recurrent_kernel = _gru_to_torch(kernel), _gru_to_torch(recurrent_kernel)
        biases = [_gru_to_torch(bias[0]), _gru_to_torch(bias[1])] if bias is not None else []
    else:
        biases = [bias, torch.zeros_like(bias)] if bias is not None else []
    w_ih, w_hh = kernel.mT, recurrent_kernel.mT
    parts = [w_ih.reshape(-1), w_hh.reshape(-1), *biases]
    flat = torch.cat(parts)
    views = list(flat.split([p.numel() for p in parts]))
    views[0] = views[0].view(w_ih.shape)
    views[1] = views[1].view(w_hh.shape)
    return views


def _fused_kernel(kind: str, activation: Any, reset_after: bool) -> Any:
    """torch's fused function for this layer, or None where torch has none."""
    if kind == "LSTM":
        return torch.lstm
    if kind == "GRU":
        return torch.gru if reset_after else None
    name = getattr(activation, "name", activation)
    return {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}.get(name)


def _run_fused(kind: str, fused: Any, x: torch.Tensor, states: State, kernel: torch.Tensor,
               recurrent_kernel: torch.Tensor,
               bias: torch.Tensor | None) -> tuple[torch.Tensor, State]:
    weights = _fused_weights(kind, kernel, recurrent_kernel, bias)
    hx: Any = tuple(s.unsqueeze(0) for s in states)
    if kind != "LSTM":
        hx = hx[0]
    result = fused(x, hx, weights, bias is not None, 1, 0.0, False, False, True)
    out, final = result[0], result[1:]
    return out, tuple(s[0] for s in final)


def _valid_blocks(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each row's first valid step and number of valid steps, if every row's valid steps are
    one contiguous block (or none); else None."""
    m = mask.to(torch.bool)
    rises = m.clone()
    rises[:, 1:] &= ~m[:, :-1]
    if bool((rises.sum(dim=1) > 1).any()):
        return None
    return m.to(torch.int64).argmax(dim=1), m.sum(dim=1)


def _run_blocks(run: Any, x: torch.Tensor, start: torch.Tensor,
                length: torch.Tensor) -> torch.Tensor:
    """The masked output sequence for one valid block per row, with the fused kernel."""
    batch, steps, features = x.shape
    t = torch.arange(steps, device=x.device).unsqueeze(0)
    # shift each row left so that its block starts at step 0
    source = (t + start.unsqueeze(1)).clamp(max=steps - 1)
    out = run(x.gather(1, source.unsqueeze(-1).expand(batch, steps, features)))
    # step t reads the block's output t - start, held at the block's last output after it
    last = (length - 1).clamp(min=0).unsqueeze(1)
    read = torch.minimum((t - start.unsqueeze(1)).clamp(min=0), last)
    y = out.gather(1, read.unsqueeze(-1).expand(batch, steps, out.shape[-1]))
    started = (t >= start.unsqueeze(1)) & (length.unsqueeze(1) > 0)
    return torch.where(started.unsqueeze(-1), y, torch.zeros((), dtype=y.dtype, device=y.device))


def _cell(kind: str, z: torch.Tensor, states: State, recurrent_kernel: torch.Tensor,
          recurrent_bias: torch.Tensor | None, keep_h: torch.Tensor | None, activation: Any,
          reset_after: bool) -> State:
    """One step from the input projection z = x_t @ kernel (+ input bias): the new state."""
    h = states[0]
    fed = h * keep_h if keep_h is not None else h  # recurrent dropout
    units = recurrent_kernel.shape[0]
    if kind == "LSTM":
        gates = torch.addmm(z, fed, recurrent_kernel)
        i, f, o = (torch.sigmoid(gates[:, k * units:(k + 1) * units]) for k in (0, 1, 3))
        c = f * states[1] + i * torch.tanh(gates[:, 2 * units:3 * units])
        return o * torch.tanh(c), c
    if kind == "SimpleRNN":
        return (activate(torch.addmm(z, fed, recurrent_kernel), activation),)
    if reset_after:
        inner = fed @ recurrent_kernel
        if recurrent_bias is not None:
            inner = inner + recurrent_bias
        zr = torch.sigmoid(z[:, :2 * units] + inner[:, :2 * units])
        update, reset = zr[:, :units], zr[:, units:]
        candidate = torch.tanh(z[:, 2 * units:] + reset * inner[:, 2 * units:])
    else:
        zr = torch.sigmoid(z[:, :2 * units] + fed @ recurrent_kernel[:, :2 * units])
        update, reset = zr[:, :units], zr[:, units:]
        candidate = torch.tanh(z[:, 2 * units:] + (reset * fed) @ recurrent_kernel[:, 2 * units:])
    return (update * h + (1 - update) * candidate,)


def _step_loop(kind: str, projected: torch.Tensor, states: State, mask: torch.Tensor | None,
               **cell: Any) -> tuple[torch.Tensor, State]:
    batch, steps, _ = projected.shape
    keep = mask.to(torch.bool).unsqueeze(-1) if mask is not None else None
    previous = states[0].new_zeros(states[0].shape)  # the output before any valid step
    outputs = []
    for t in range(steps):
        new = _cell(kind, projected[:, t], states, **cell)
        if keep is not None:
            new = tuple(torch.where(keep[:, t], n, s) for n, s in zip(new, states, strict=True))
            previous = torch.where(keep[:, t], new[0], previous)
        else:
            previous = new[0]
        states = new
        outputs.append(previous)
    out = torch.stack(outputs, dim=1) if outputs else states[0].new_zeros(
        (batch, 0, states[0].shape[-1]))
    return out, states


def _dropout_mask(like: torch.Tensor, rate: float) -> torch.Tensor:
    """0 or 1 / (1 - rate) in like's shape: inverted dropout of ones."""
    return F.dropout(torch.ones_like(like), p=rate, training=True)


def _initial_states(kind: str, x: torch.Tensor, units: int,
                    initial_state: torch.Tensor | None) -> State:
    count = KINDS[kind][1]
    if initial_state is None:
        zeros = x.new_zeros((x.shape[0], units))
        return (zeros,) * count
    if initial_state.dim() == 2:
        return (initial_state,)
    return tuple(initial_state[k] for k in range(count))


def run_recurrent(kind: str, *, x: torch.Tensor, mask: torch.Tensor | None,
                  initial_state: torch.Tensor | None, kernel: torch.Tensor,
                  recurrent_kernel: torch.Tensor, bias: torch.Tensor | None, units: int,
                  return_sequences: bool, return_state: bool, go_backwards: bool,
                  use_bias: bool, dropout: float, recurrent_dropout: float, training: bool,
                  activation: Any = "tanh",
                  reset_after: bool = True) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """One recurrent layer of kind LSTM, GRU or SimpleRNN (the registry's definition)."""
    bias = bias if use_bias else None
    states = _initial_states(kind, x, units, initial_state)
    if go_backwards:
        x = x.flip(1)
        mask = mask.flip(1) if mask is not None else None
    if training and dropout > 0:
        x = x * _dropout_mask(x[:, 0], dropout).unsqueeze(1)  # one mask for every step
    keep_h = _dropout_mask(states[0], recurrent_dropout) \
        if training and recurrent_dropout > 0 else None
    fused = _fused_kernel(kind, activation, reset_after) if keep_h is None else None
    result: tuple[torch.Tensor, State] | None = None
    if fused is not None and mask is None:
        result = _run_fused(kind, fused, x, states, kernel, recurrent_kernel, bias)
    elif fused is not None:
        # Under torch.compile the step loop traces whole; the fused path needs a
        # data-dependent check of the mask's layout.
        blocks = None if (return_state or x.shape[1] == 0 or torch.compiler.is_compiling()) \
            else _valid_blocks(mask)  # type: ignore[arg-type]
        if blocks is not None:
            out = _run_blocks(lambda shifted: _run_fused(kind, fused, shifted, states, kernel,
                                                         recurrent_kernel, bias)[0], x, *blocks)
            return out if return_sequences else out[:, -1]
    if result is None:
        input_bias = bias[0] if kind == "GRU" and reset_after and bias is not None else bias
        projected = x @ kernel  # every step's input projection in one product
        if input_bias is not None:
            projected = projected + input_bias
        result = _step_loop(kind, projected, states, mask, recurrent_kernel=recurrent_kernel,
                            recurrent_bias=bias[1] if input_bias is not bias else None,
                            keep_h=keep_h, activation=activation, reset_after=reset_after)
    out, final = result
    if not return_sequences:
        # the last output: a masked step repeats the one before (0 if no step is valid)
        out = out[:, -1] if out.shape[1] else final[0]
    return (out, *final) if return_state else out


@impl("LSTM")
def lstm(*, x: torch.Tensor, mask: torch.Tensor | None = None,
         initial_state: torch.Tensor | None = None, kernel: torch.Tensor,
         recurrent_kernel: torch.Tensor, bias: torch.Tensor | None = None, units: int,
         return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
         unit_forget_bias: bool = True, use_bias: bool = True, dropout: float = 0.0,
         recurrent_dropout: float = 0.0,
         training: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
    # unit_forget_bias only shapes the bias' initial value (the lstm_bias initialiser).
    return run_recurrent("LSTM", x=x, mask=mask, initial_state=initial_state, kernel=kernel,
                         recurrent_kernel=recurrent_kernel, bias=bias, units=units,
                         return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, use_bias=use_bias, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, training=training)


@impl("GRU")
def gru(*, x: torch.Tensor, mask: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None, kernel: torch.Tensor,
        recurrent_kernel: torch.Tensor, bias: torch.Tensor | None = None, units: int,
        return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
        reset_after: bool = True, use_bias: bool = True, dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        training: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
    return run_recurrent("GRU", x=x, mask=mask, initial_state=initial_state, kernel=kernel,
                         recurrent_kernel=recurrent_kernel, bias=bias, units=units,
                         return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, use_bias=use_bias, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, training=training,
                         reset_after=reset_after)


@impl("SimpleRNN")
def simple_rnn(*, x: torch.Tensor, mask: torch.Tensor | None = None,
               initial_state: torch.Tensor | None = None, kernel: torch.Tensor,
               recurrent_kernel: torch.Tensor, bias: torch.Tensor | None = None, units: int,
               return_sequences: bool = False, return_state: bool = False,
               go_backwards: bool = False, activation: Any = "tanh", use_bias: bool = True,
               dropout: float = 0.0, recurrent_dropout: float = 0.0,
               training: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
    return run_recurrent("SimpleRNN", x=x, mask=mask, initial_state=initial_state,
                         kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias,
                         units=units, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards,
                         use_bias=use_bias, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, training=training,
                         activation=activation)


def merge(mode: str, forward: Any, backward: Any) -> Any:
    if mode == "concat":
        return torch.cat([forward, backward], dim=-1)
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    if mode == "ave":
        return (forward + backward) / 2
    return (forward, backward)


@impl("Bidirectional")
def bidirectional(*, x: torch.Tensor, mask: torch.Tensor | None = None,
                  initial_state: torch.Tensor | None = None, forward_kernel: torch.Tensor,
                  forward_recurrent_kernel: torch.Tensor,
                  forward_bias: torch.Tensor | None = None, backward_kernel: torch.Tensor,
                  backward_recurrent_kernel: torch.Tensor,
                  backward_bias: torch.Tensor | None = None, layer: str, units: int,
                  merge_mode: str = "concat", return_sequences: bool = False,
                  return_state: bool = False, use_bias: bool = True,
                  unit_forget_bias: bool = True, reset_after: bool = True,
                  activation: Any = "tanh", dropout: float = 0.0,
                  recurrent_dropout: float = 0.0,
                  training: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
    count = KINDS[layer][1]
    common = dict(x=x, mask=mask, units=units, return_sequences=return_sequences,
                  return_state=True, use_bias=use_bias, dropout=dropout,
                  recurrent_dropout=recurrent_dropout, training=training,
                  activation=activation, reset_after=reset_after)
    halves = (None, None) if initial_state is None else (initial_state[:count],
                                                         initial_state[count:])
    forward, *forward_states = run_recurrent(
        layer, initial_state=halves[0], kernel=forward_kernel,
        recurrent_kernel=forward_recurrent_kernel, bias=forward_bias, go_backwards=False,
        **common)
    backward, *backward_states = run_recurrent(
        layer, initial_state=halves[1], kernel=backward_kernel,
        recurrent_kernel=backward_recurrent_kernel, bias=backward_bias, go_backwards=True,
        **common)
    if return_sequences:
        backward = backward.flip(1)  # back to the input's order
        if mask is not None:  # Keras' Bidirectional: zeros at masked steps
            keep = mask.to(torch.bool).unsqueeze(-1)
            forward = torch.where(keep, forward, torch.zeros_like(forward))
            backward = torch.where(keep, backward, torch.zeros_like(backward))
    merged = merge(merge_mode, forward, backward)
    outputs = merged if isinstance(merged, tuple) else (merged,)
    if return_state:
        outputs = (*outputs, *forward_states, *backward_states)
    return outputs[0] if len(outputs) == 1 else outputs
