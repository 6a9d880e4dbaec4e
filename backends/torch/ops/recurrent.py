"""LSTM in Keras' layout: kernel [in, 4u], recurrent_kernel [u, 4u], one bias [4u], gate
blocks i, f, c, o (torch's i, f, g, o: the same order).

Without a mask the layer runs torch's fused LSTM kernel (cuDNN on a GPU), the one
``nn.LSTM`` runs: weight_ih = kernel^T, weight_hh = recurrent_kernel^T, bias_ih = bias,
bias_hh = 0. The four tensors are views of one freshly concatenated buffer in cuDNN's
order, so cuDNN uses them as they are (no per-call re-layout and no "weights are not part
of single contiguous chunk" warning). With a mask, at a masked step h and c keep their
values and the step's output repeats the last h (0 before any valid step). When each row's
valid steps form one block (right or left padding: the usual case) and the final c is not
needed, that is computed exactly with the fused kernel: each row is shifted so that its
block starts at step 0, run from the zero state, and its outputs are gathered back (this
costs one host synchronisation to check the mask). Other masks run a step loop.

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


def _valid_blocks(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each row's first valid step and number of valid steps, if every row's valid steps are
    one contiguous block (or none); else None."""
    m = mask.to(torch.bool)
    rises = m.clone()
    rises[:, 1:] &= ~m[:, :-1]
    if bool((rises.sum(dim=1) > 1).any()):
        return None
    return m.to(torch.int64).argmax(dim=1), m.sum(dim=1)


def _lstm_blocks(x: torch.Tensor, start: torch.Tensor, length: torch.Tensor,
                 kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    """The masked LSTM's output sequence for one valid block per row, with the fused kernel."""
    batch, steps, features = x.shape
    t = torch.arange(steps, device=x.device).unsqueeze(0)
    # shift each row left so that its block starts at step 0
    source = (t + start.unsqueeze(1)).clamp(max=steps - 1)
    shifted = x.gather(1, source.unsqueeze(-1).expand(batch, steps, features))
    out, _, _ = _lstm_fused(shifted, kernel, recurrent_kernel, bias)
    # step t reads the block's output t - start, held at the block's last output after it
    last = (length - 1).clamp(min=0).unsqueeze(1)
    read = torch.minimum((t - start.unsqueeze(1)).clamp(min=0), last)
    units = out.shape[-1]
    y = out.gather(1, read.unsqueeze(-1).expand(batch, steps, units))
    started = (t >= start.unsqueeze(1)) & (length.unsqueeze(1) > 0)
    return torch.where(started.unsqueeze(-1), y, torch.zeros((), dtype=y.dtype, device=y.device))


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
        z = torch.addmm(projected[:, t], h, recurrent_kernel)
        gates = torch.sigmoid(z)  # i, f and o (the c block's sigmoid goes unused)
        i, f, o = gates[:, :units], gates[:, units:2 * units], gates[:, 3 * units:]
        g = torch.tanh(z[:, 2 * units:3 * units])
        c_new = torch.addcmul(f * c, i, g)
        h_new = o * torch.tanh(c_new)
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
        # Under torch.compile the step loop traces whole; the fused path needs a
        # data-dependent check of the mask's layout.
        fused_ok = not (return_state or x.shape[1] == 0 or torch.compiler.is_compiling())
        blocks = _valid_blocks(mask) if fused_ok else None
        if blocks is not None:
            out = _lstm_blocks(x, *blocks, kernel, recurrent_kernel, bias)
            return out if return_sequences else out[:, -1]
        out, h, c = _lstm_masked(x, mask, kernel, recurrent_kernel, bias)
    result = out if return_sequences else h
    if return_state:
        return (result, h, c)
    return result
