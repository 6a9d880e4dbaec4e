"""Generated modules against hand-written PyTorch modules given the same weights.

Each reference is what a PyTorch user would write from the paper (nn.Embedding, nn.LSTM,
nn.MultiheadAttention, nn.LayerNorm, nn.Linear, or the attention arithmetic spelled
out), loaded with the generated module's weights through the documented canonical
layouts (Dense kernel [in, out] = nn.Linear.weight^T; LSTM gates i, f, c, o;
MultiHeadAttention kernels [d, heads, size]). Both run in float64 in eval mode; outputs
must agree to 1e-6. The examples are shrunk (conftest.SHRINK); masks include padding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from .conftest import example_module, synthetic_batch

pytestmark = pytest.mark.torch

TOL = 1e-6


def close(actual: torch.Tensor, expected: torch.Tensor, where: torch.Tensor | None = None,
          tol: float = TOL) -> None:
    a, e = actual.detach(), expected.detach()
    if where is not None:
        a, e = a[where], e[where]
    assert a.shape == e.shape
    np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=tol, atol=tol)


def tensor(arrays: dict[str, np.ndarray], name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(arrays[name], dtype=np.float64))


def set_(param: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        assert param.shape == value.shape, (param.shape, value.shape)
        param.copy_(value)


def linear(arrays: dict[str, np.ndarray], prefix: str, bias: bool = True) -> nn.Linear:
    kernel = tensor(arrays, f"{prefix}.kernel")
    layer = nn.Linear(kernel.shape[0], kernel.shape[1], bias=bias).double()
    set_(layer.weight, kernel.T)
    if bias:
        set_(layer.bias, tensor(arrays, f"{prefix}.bias"))
    return layer


def layer_norm(arrays: dict[str, np.ndarray], prefix: str, eps: float) -> nn.LayerNorm:
    gamma = tensor(arrays, f"{prefix}.gamma")
    norm = nn.LayerNorm(gamma.shape[0], eps=eps).double()
    set_(norm.weight, gamma)
    set_(norm.bias, tensor(arrays, f"{prefix}.beta"))
    return norm


def embedding(arrays: dict[str, np.ndarray], name: str) -> nn.Embedding:
    table = tensor(arrays, name)
    emb = nn.Embedding(*table.shape).double()
    set_(emb.weight, table)
    return emb


def multihead(arrays: dict[str, np.ndarray], prefix: str) -> nn.MultiheadAttention:
    """nn.MultiheadAttention from Keras-layout kernels [d, heads, size]."""
    q = tensor(arrays, f"{prefix}.query_kernel")
    d, heads, size = q.shape
    mha = nn.MultiheadAttention(d, heads, batch_first=True).double()
    kernels = [tensor(arrays, f"{prefix}.{p}_kernel").reshape(d, heads * size).T
               for p in ("query", "key", "value")]
    biases = [tensor(arrays, f"{prefix}.{p}_bias").reshape(heads * size)
              for p in ("query", "key", "value")]
    set_(mha.in_proj_weight, torch.cat(kernels))
    set_(mha.in_proj_bias, torch.cat(biases))
    set_(mha.out_proj.weight, tensor(arrays, f"{prefix}.output_kernel").reshape(
        heads * size, d).T)
    set_(mha.out_proj.bias, tensor(arrays, f"{prefix}.output_bias"))
    return mha


def lstm(arrays: dict[str, np.ndarray], prefix: str) -> nn.LSTM:
    """nn.LSTM from Keras' layout: weight_ih = kernel^T, weight_hh = recurrent^T."""
    kernel = tensor(arrays, f"{prefix}.kernel")
    units = kernel.shape[1] // 4
    layer = nn.LSTM(kernel.shape[0], units, batch_first=True).double()
    set_(layer.weight_ih_l0, kernel.T)
    set_(layer.weight_hh_l0, tensor(arrays, f"{prefix}.recurrent_kernel").T)
    set_(layer.bias_ih_l0, tensor(arrays, f"{prefix}.bias"))
    set_(layer.bias_hh_l0, torch.zeros(4 * units, dtype=torch.float64))
    return layer


def built(stem: str, model: str | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """The shrunk example in float64 eval mode, and its weights by canonical name."""
    module = example_module(stem, model).double().eval()
    return module, module.export_arrays()


# ---- an LSTM language model (Press & Wolf) ----------------------------------------------


class ReferenceLSTMLM(nn.Module):
    """Embedding -> LSTM -> LSTM -> Linear, the output weights tied to the embedding (or not)."""

    def __init__(self, arrays: dict[str, np.ndarray], tied: bool):
        super().__init__()
        self.tied = tied
        self.embed = embedding(arrays, "embed.embeddings" if tied else "embedding.embeddings")
        self.lstm1 = lstm(arrays, "lstm")
        self.lstm2 = lstm(arrays, "lstm_1")
        if tied:
            self.out_bias = nn.Parameter(tensor(arrays, "dense.bias"))
        else:
            self.out = linear(arrays, "dense")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm1(self.embed(tokens.long()))
        h, _ = self.lstm2(h)
        if self.tied:
            return F.linear(h, self.embed.weight, self.out_bias)
        return self.out(h)


@pytest.mark.parametrize("model", ["TiedLM", "UntiedLM"])
def test_lstm_language_model_matches_nn_lstm(model: str) -> None:
    module, arrays = built("lstm_lm", model)
    reference = ReferenceLSTMLM(arrays, tied=model == "TiedLM").eval()
    inputs, targets = synthetic_batch(module, batch=3, steps=7, pad=False)
    close(module(**inputs)["logits"], reference(inputs["tokens"]))


def test_tied_lstm_lm_gradients_match_reference() -> None:
    """The tied matrix receives the sum of both uses' gradients, as in the reference."""
    module, arrays = built("lstm_lm", "TiedLM")
    reference = ReferenceLSTMLM(arrays, tied=True).eval()
    inputs, targets = synthetic_batch(module, batch=3, steps=5, pad=False)
    module.compute_losses(inputs, targets).total.backward()
    logits = reference(inputs["tokens"])
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                    targets["next"].long().reshape(-1)).backward()
    close(module.embed.embeddings.grad, reference.embed.weight.grad)
    close(module.lstm.kernel.grad, reference.lstm1.weight_ih_l0.grad.T)
    close(module.lstm_1.recurrent_kernel.grad, reference.lstm2.weight_hh_l0.grad.T)


# ---- attention built from parts (S8): padding and causal masks --------------------------


def reference_attention_lm(arrays: dict[str, np.ndarray], ids: torch.Tensor, heads: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """s08's AttentionLM spelled out: logits, and the attention weights [B, heads, T, T]."""
    emb = embedding(arrays, "embedding.embeddings")
    query, key, value, output = (linear(arrays, f"self_attention.{n}")
                                 for n in ("query", "key", "value", "output"))
    x = emb(ids.long())
    batch, steps, d = x.shape
    size = d // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, steps, heads, size).permute(0, 2, 1, 3)

    q, k, v = split(query(x)), split(key(x)), split(value(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(size)
    pos = torch.arange(steps, dtype=torch.float64)
    distance = (pos[:, None] - pos[None, :]).abs()
    scores = scores - tensor(arrays, "self_attention.slope") * distance
    keep = ids != 0
    visible = keep[:, None, None, :] & torch.ones(steps, steps, dtype=torch.bool).tril()
    weights = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
    attended = (weights @ v).permute(0, 2, 1, 3).reshape(batch, steps, d)
    h = x + output(attended)
    logits = linear(arrays, "dense")(layer_norm(arrays, "layer_normalization", 1e-3)(h))
    return logits, weights


def test_attention_from_parts_matches_reference_with_padding_and_causal_masks() -> None:
    module, arrays = built("s08_attention_from_parts")
    # padding at the end and in the middle: later queries must skip the holes
    ids = torch.tensor([[5, 9, 0, 7, 3, 0, 0], [4, 4, 4, 4, 4, 4, 4],
                        [8, 0, 0, 2, 6, 1, 0]], dtype=torch.int32)
    expected, weights = reference_attention_lm(arrays, ids, heads=2)
    close(module(ids=ids)["logits"], expected)
    # the reference's masked weights are exactly zero (so the match above means the module
    # gives them no weight either), and no row is empty
    hidden = ~((ids != 0)[:, None, None, :] & torch.ones(7, 7, dtype=torch.bool).tril())
    assert bool((weights.masked_select(hidden.expand_as(weights)) == 0).all())
    close(weights.sum(-1), torch.ones_like(weights.sum(-1)))


# ---- MultiHeadAttention in GPT-2 (causal) and BERT (padding) -----------------------------


class ReferenceGPT2(nn.Module):
    def __init__(self, arrays: dict[str, np.ndarray], layers: int):
        super().__init__()
        self.wte = embedding(arrays, "wte.embeddings")
        self.wpe = embedding(arrays, "wpe.embeddings")
        self.blocks = nn.ModuleList()
        for i in range(layers):
            p = f"gpt2_block.{i}"
            self.blocks.append(nn.ModuleDict({
                "ln1": layer_norm(arrays, f"{p}.layer_normalization", 1e-5),
                "attn": multihead(arrays, f"{p}.multi_head_attention"),
                "ln2": layer_norm(arrays, f"{p}.layer_normalization_1", 1e-5),
                "fc": linear(arrays, f"{p}.dense"),
                "proj": linear(arrays, f"{p}.dense_1")}))
        self.ln_f = layer_norm(arrays, "layer_normalization", 1e-5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        steps = ids.shape[1]
        h = self.wte(ids.long()) + self.wpe(torch.arange(steps))
        hidden = torch.ones(steps, steps, dtype=torch.bool).triu(1)  # True: not allowed
        for b in self.blocks:
            n = b["ln1"](h)
            a, _ = b["attn"](n, n, n, attn_mask=hidden, need_weights=False)
            h = h + a
            h = h + b["proj"](F.gelu(b["fc"](b["ln2"](h)), approximate="tanh"))
        return F.linear(self.ln_f(h), self.wte.weight)


def test_gpt2_matches_reference_with_causal_mask() -> None:
    module, arrays = built("gpt2_small")
    reference = ReferenceGPT2(arrays, layers=2).eval()
    inputs, _ = synthetic_batch(module, batch=3, steps=9, pad=False)
    close(module(**inputs)["logits"], reference(inputs["input_ids"]))


class ReferenceBert(nn.Module):
    def __init__(self, arrays: dict[str, np.ndarray], layers: int):
        super().__init__()
        self.word = embedding(arrays, "word.embeddings")
        self.position = embedding(arrays, "position.embeddings")
        self.token_type = embedding(arrays, "token_type.embeddings")
        self.ln = layer_norm(arrays, "layer_normalization", 1e-12)
        self.layers = nn.ModuleList()
        for i in range(layers):
            p = f"bert_layer.{i}"
            self.layers.append(nn.ModuleDict({
                "attn": multihead(arrays, f"{p}.multi_head_attention"),
                "ln1": layer_norm(arrays, f"{p}.layer_normalization", 1e-12),
                "ff1": linear(arrays, f"{p}.dense"),
                "ff2": linear(arrays, f"{p}.dense_1"),
                "ln2": layer_norm(arrays, f"{p}.layer_normalization_1", 1e-12)}))
        self.pooler = linear(arrays, "dense")

    def forward(self, ids: torch.Tensor, keep: torch.Tensor, segment: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        steps = ids.shape[1]
        h = self.word(ids.long()) + self.position(torch.arange(steps)) + \
            self.token_type(segment.long())
        h = self.ln(h)
        padding = keep == 0
        for layer in self.layers:
            a, _ = layer["attn"](h, h, h, key_padding_mask=padding, need_weights=False)
            h = layer["ln1"](h + a)
            h = layer["ln2"](h + layer["ff2"](F.gelu(layer["ff1"](h))))
        return h, torch.tanh(self.pooler(h[:, 0]))


def test_bert_matches_reference_with_padding_mask() -> None:
    module, arrays = built("bert_base")
    reference = ReferenceBert(arrays, layers=2).eval()
    inputs, _ = synthetic_batch(module, batch=4, steps=8, seed=3)
    ids = inputs["input_ids"]
    assert bool((ids == 0).any()), "the batch must contain padding"
    inputs["attention_mask"] = (ids != 0).to(torch.int32)
    inputs["token_type_ids"] = (inputs["token_type_ids"] % 2).to(torch.int32)
    out = module(**inputs)
    sequence, pooled = reference(ids, inputs["attention_mask"], inputs["token_type_ids"])
    # the mask hides padded keys only (as in BERT): padded query positions agree too
    close(out["last_hidden_state"], sequence)
    close(out["pooler_output"], pooled)
