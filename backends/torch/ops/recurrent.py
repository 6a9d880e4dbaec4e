"""LSTM in Keras' layout: kernel [in, 4u], recurrent_kernel [u, 4u], one bias [4u], gate
blocks i, f, c, o (torch's i, f, g, o: the same order).

Without a mask the layer runs torch's fused LSTM kernel (cuDNN on a GPU), the one
``nn.LSTM`` runs: weight_ih = kernel^T, weight_hh = recurrent_kernel^T, bias_ih = bias,
bias_hh = 0. The four tensors are views of one freshly concatenated buffer in cuDNN's
order, so cuDNN uses them as they are (no per-call re-layout and no "weights are not part
of single contiguous chunk" warning). With a mask it runs a step loop: at a masked step h
and c keep their values and the step's output repeats the last h (0 before any valid step).

``go_backwards`` reverses the steps (and the mask) first; like Keras, the returned sequence
is then in the processing order, i.e. reversed.
"""

from __future__ import annotations

import torch

from . import impl


def _fused_weights(kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
                   bias: torch.Tensor | None) -> list[torch.Tensor]:
    w_ih, w_hh = kernel.mT, recurrent_kernel.mT
    parts = [w_ih.reshape(-1), w_hh.reshape(-1)]
    if bias is not None:
        parts += [bias, torch.zeros_like(bias)]
    flat = torch.cat(parts)
    sizes = [p.numel() for p in parts]
    views = list(flat.split(sizes))
    views[0] = views[0].view(w_ih.shape)
    views[1] = views[1].view(w_hh.shape)
    return views


def _lstm_fused(x: torch.Tensor, kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
                bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    units = recurrent_kernel.shape[0]
    zeros = x.new_zeros((1, x.shape[0], units))
    weights = _fused_weights(kernel, recurrent_kernel, bias)
    out, h, c = torch.lstm(x, (zeros, zeros), weights, bias is not None, 1, 0.0, False, False,
                           True)
    return out, h[0], c[0]


def _lstm_masked(x: torch.Tensor, mask: torch.Tensor, kernel: torch.Tensor,
                 recurrent_kernel: torch.Tensor,
                 bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, steps, _ = x.shape
    units = recurrent_kernel.shape[0]
    projected = x @ kernel  # every step's input projection in one product
    if bias is not None:
        projected = projected + bias
    h = x.new_zeros((batch, units))
    c = x.new_zeros((batch, units))
    keep = mask.to(torch.bool).unsqueeze(-1)
    outputs = []
    for t in range(steps):
        z = projected[:, t] + h @ recurrent_kernel
        i, f, g, o = z.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        c = torch.where(keep[:, t], c_new, c)
        h = torch.where(keep[:, t], h_new, h)
        outputs.append(h)
    out = torch.stack(outputs, dim=1) if outputs else x.new_zeros((batch, 0, units))
    return out, h, c


@impl("LSTM")
def lstm(*, x: torch.Tensor, mask: torch.Tensor | None = None, kernel: torch.Tensor,
         recurrent_kernel: torch.Tensor, bias: torch.Tensor | None = None, units: int,
         return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
         unit_forget_bias: bool = True,
         use_bias: bool = True) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # unit_forget_bias only shapes the bias' initial value (the lstm_bias initialiser).
    bias = bias if use_bias else None
    if go_backwards:
        x = x.flip(1)
        mask = mask.flip(1) if mask is not None else None
    if mask is None:
        out, h, c = _lstm_fused(x, kernel, recurrent_kernel, bias)
    else:
        out, h, c = _lstm_masked(x, mask, kernel, recurrent_kernel, bias)
    result = out if return_sequences else h
    if return_state:
        return (result, h, c)
    return result
