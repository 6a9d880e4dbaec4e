"""Keras' MultiHeadAttention and the functions for building attention by hand.

MultiHeadAttention runs torch's scaled_dot_product_attention (flash / memory-efficient
kernels on a GPU). The registry's rule, "scores at disallowed pairs become -1e9 before the
softmax", gives disallowed pairs a weight of exactly 0 whenever a query row has an allowed
pair, which a boolean SDPA mask gives too. A row with no allowed pair gets uniform weights
under that rule (all its scores are -1e9): its output is computed as the mean of the values
(and the row is opened up inside SDPA only to keep its kernel away from NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import impl


def _project(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """[B, T, d] @ [d, heads, size] (+ [heads, size]) -> [B, heads, T, size]."""
    d, heads, size = kernel.shape
    y = F.linear(x, kernel.reshape(d, heads * size).mT,
                 bias.reshape(heads * size) if bias is not None else None)
    return y.unflatten(-1, (heads, size)).transpose(1, 2)


def _allowed_pairs(batch: int, q_steps: int, v_steps: int, attention_mask: torch.Tensor | None,
                   causal: bool, mask: torch.Tensor | None, value_mask: torch.Tensor | None,
                   device: torch.device) -> torch.Tensor | None:
    """bool [B or 1, Tq, Tv]: true where query i may attend to value j; None: everywhere."""
    allowed: torch.Tensor | None = None

    def both(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
        return b if a is None else a & b

    if attention_mask is not None:
        allowed = both(allowed, attention_mask.to(torch.bool))
    if causal:
        allowed = both(allowed, torch.ones((q_steps, v_steps), dtype=torch.bool,
                                           device=device).tril().unsqueeze(0))
    if mask is not None:
        allowed = both(allowed, mask.to(torch.bool)[:, :, None])
    if value_mask is not None:
        allowed = both(allowed, value_mask.to(torch.bool)[:, None, :])
    return allowed


@impl("MultiHeadAttention")
def multi_head_attention(
        *, query: torch.Tensor, value: torch.Tensor, key: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None, mask: torch.Tensor | None = None,
        value_mask: torch.Tensor | None = None, query_kernel: torch.Tensor,
        query_bias: torch.Tensor | None = None, key_kernel: torch.Tensor,
        key_bias: torch.Tensor | None = None, value_kernel: torch.Tensor,
        value_bias: torch.Tensor | None = None, output_kernel: torch.Tensor,
        output_bias: torch.Tensor | None = None, num_heads: int, key_dim: int,
        value_dim: int | None = None, dropout: float = 0.0, use_bias: bool = True,
        output_shape: int | None = None, use_causal_mask: bool = False,
        training: bool) -> torch.Tensor:
    if key is None:
        key = value
    if value_mask is None and mask is not None and value is query:
        value_mask = mask
    if not use_bias:
        query_bias = key_bias = value_bias = output_bias = None
    q = _project(query, query_kernel, query_bias)
    k = _project(key, key_kernel, key_bias)
    v = _project(value, value_kernel, value_bias)
    batch, q_steps, v_steps = query.shape[0], query.shape[1], value.shape[1]
    drop = dropout if training else 0.0
    scale = key_dim ** -0.5
    if attention_mask is None and mask is None and value_mask is None:
        # only (maybe) the causal mask: no row is ever fully masked
        if use_causal_mask and q_steps != v_steps:
            allowed = _allowed_pairs(batch, q_steps, v_steps, None, True, None, None,
                                     query.device)
            assert allowed is not None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1),
                                                 dropout_p=drop, scale=scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop,
                                                 is_causal=use_causal_mask, scale=scale)
    else:
        allowed = _allowed_pairs(batch, q_steps, v_steps, attention_mask, use_causal_mask, mask,
                                 value_mask, query.device)
        assert allowed is not None
        any_allowed = allowed.any(dim=-1, keepdim=True)  # [B, Tq, 1]
        opened = allowed | ~any_allowed
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=opened.unsqueeze(1),
                                             dropout_p=drop, scale=scale)
        # fully masked rows: every score is -1e9, so the weights are uniform
        out = torch.where(any_allowed.unsqueeze(1), out, v.mean(dim=-2, keepdim=True))
    heads, size, features = output_kernel.shape
    merged = out.transpose(1, 2).reshape(batch, q_steps, heads * size)
    return F.linear(merged, output_kernel.reshape(heads * size, features).mT, output_bias)


@impl("split_heads")
def split_heads(*, x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(-1, (heads, x.shape[-1] // heads)).transpose(1, 2)


@impl("merge_heads")
def merge_heads(*, x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


@impl("causal_mask")
def causal_mask(*, x: torch.Tensor, axis: int = 1) -> torch.Tensor:
    steps = x.shape[axis]
    return torch.ones((steps, steps), dtype=torch.bool, device=x.device).tril()
