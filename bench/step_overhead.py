"""Train-step time of graphdsl's generated models against hand-written twins.

Run by hand (not in CI):
    .venv/bin/python bench/step_overhead.py [--device cuda] [--precision bf16] [--compile]
    .venv/bin/python bench/step_overhead.py --backend keras [--compile]   # XLA with --compile
Both models get the same weights and batches; steps alternate between them so drift in
machine speed hits both equally. The figure of merit is median(graphdsl step) /
median(hand-written step); goal <= 1.02.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import graphdsl

LM = """
model TiedLM(vocab: int = 5000, dim: int = 200, p: float = 0.3) {
    input  tokens : int32[B, T]
    target next   : int32[B, T]
    layer embed = Embedding(vocab, dim)
    h = Dropout(p)(embed(tokens))
    h = Dropout(p)(LSTM(dim, return_sequences = true)(h))
    h = Dropout(p)(LSTM(dim, return_sequences = true)(h))
    logits = Dense(vocab, kernel = embed.embeddings.T)(h)
    output logits
    loss crossentropy(logits, next, from_logits = true)
}
"""

GPT = """
block Block(d: int, heads: int) {
    input x : float32[B, T, d]
    n = LayerNormalization(epsilon = 1e-5)(x)
    x = x + MultiHeadAttention(heads, d / heads)(n, n, use_causal_mask = true)
    m = Dense(4 * d, activation = gelu_tanh)(LayerNormalization(epsilon = 1e-5)(x))
    output x + Dense(d)(m)
}
model MiniGPT(vocab: int = 2000, context: int = 64, d: int = 128, layers: int = 4,
              heads: int = 4) {
    input  ids  : int32[B, T]
    target next : int32[B, T]
    layer wte = Embedding(vocab, d)
    layer wpe = Embedding(context, d)
    h = wte(ids) + wpe(positions(ids))
    h = repeat layers Block(d, heads)(h)
    h = LayerNormalization(epsilon = 1e-5)(h)
    logits = Dense(vocab, use_bias = false, kernel = wte.embeddings.T)(h)
    output logits
    loss crossentropy(logits, next, from_logits = true)
}
"""


class HandLM(nn.Module):
    """The same tied LSTM LM written directly in PyTorch."""

    def __init__(self, vocab: int = 5000, dim: int = 200, p: float = 0.3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm1 = nn.LSTM(dim, dim, batch_first=True)
        self.lstm2 = nn.LSTM(dim, dim, batch_first=True)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.p = p

    def forward(self, tokens: torch.Tensor, next: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.embed(tokens.long()), self.p, self.training)
        h = F.dropout(self.lstm1(h)[0], self.p, self.training)
        h = F.dropout(self.lstm2(h)[0], self.p, self.training)
        logits = F.linear(h, self.embed.weight, self.bias)
        return F.cross_entropy(logits.flatten(0, 1), next.long().flatten())

    def load_from(self, g: Any) -> None:
        with torch.no_grad():
            self.embed.weight.copy_(g.embed.embeddings)
            self.bias.copy_(g.dense.bias)
            for mine, theirs in ((self.lstm1, g.lstm), (self.lstm2, g.lstm_1)):
                mine.weight_ih_l0.copy_(theirs.kernel.T)
                mine.weight_hh_l0.copy_(theirs.recurrent_kernel.T)
                mine.bias_ih_l0.copy_(theirs.bias)
                mine.bias_hh_l0.zero_()


class HandBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        n = self.ln1(x)
        x = x + self.attn(n, n, n, attn_mask=causal, need_weights=False)[0]
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class HandGPT(nn.Module):
    def __init__(self, vocab: int = 2000, context: int = 64, d: int = 128, layers: int = 4,
                 heads: int = 4):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(HandBlock(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids: torch.Tensor, next: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        h = self.wte(ids.long()) + self.wpe(torch.arange(t, device=ids.device))
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).triu(1)
        for block in self.blocks:
            h = block(h, causal)
        logits = F.linear(self.ln(h), self.wte.weight)
        return F.cross_entropy(logits.flatten(0, 1), next.long().flatten())


def timed(step: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - start


def compare(name: str, source: str, hand: nn.Module, batch: dict[str, torch.Tensor],
            args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    g = graphdsl.compile(source, backend="torch").to(device)
    hand = hand.to(device)
    if hasattr(hand, "load_from"):
        hand.load_from(g)
    batch = {k: v.to(device) for k, v in batch.items()}
    inputs = {k: batch[k] for k in g.input_names}
    targets = {k: batch[k] for k in g.target_names}
    g_run: Any = torch.compile(g, fullgraph=True) if args.compile else g
    h_run: Any = torch.compile(hand, fullgraph=True) if args.compile else hand
    g_opt = torch.optim.Adam(g.parameters(), 1e-3)
    h_opt = torch.optim.Adam(hand.parameters(), 1e-3)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def g_step() -> None:
        with autocast():
            loss = g_run.compute_losses(inputs, targets).total
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()

    def h_step() -> None:
        with autocast():
            loss = h_run(**batch)
        h_opt.zero_grad(set_to_none=True)
        loss.backward()
        h_opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        g_step()
        h_step()
    g_times, h_times = [], []
    for _ in range(args.steps):
        g_times.append(timed(g_step, sync))
        h_times.append(timed(h_step, sync))
    tokens = batch[g.input_names[0]].numel()
    g_med, h_med = statistics.median(g_times), statistics.median(h_times)
    return {"model": name, "graphdsl_ms": 1e3 * g_med, "hand_ms": 1e3 * h_med,
            "ratio": g_med / h_med, "graphdsl_tokens_s": tokens / g_med,
            "hand_tokens_s": tokens / h_med}


def compare_keras(batch: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """The tied LSTM LM in Keras: graphdsl's GraphModel against a hand-written keras.Model."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    from graphdsl.backends.keras.step import apply_gradients, compute_gradients

    class HandKerasLM(keras.Model):
        def __init__(self, vocab: int = 5000, dim: int = 200, p: float = 0.3):
            super().__init__()
            self.embed = keras.layers.Embedding(vocab, dim)
            self.lstm1 = keras.layers.LSTM(dim, return_sequences=True)
            self.lstm2 = keras.layers.LSTM(dim, return_sequences=True)
            self.drop = keras.layers.Dropout(p)
            self.bias = self.add_weight(shape=(vocab,), initializer="zeros", name="bias")

        def call(self, tokens: Any, training: bool = False) -> Any:
            h = self.drop(self.embed(tokens), training=training)
            h = self.drop(self.lstm1(h), training=training)
            h = self.drop(self.lstm2(h), training=training)
            return keras.ops.matmul(h, keras.ops.transpose(self.embed.embeddings)) + self.bias

    g = graphdsl.compile(LM, backend="keras")
    g.compile(optimizer=keras.optimizers.Adam(1e-3))
    hand = HandKerasLM()
    x = {"tokens": tf.constant(batch["tokens"].numpy())}
    y = {"next": tf.constant(batch["next"].numpy())}
    hand(x["tokens"])
    h_opt = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def g_step_py() -> None:
        _, _, grads = compute_gradients(g, x, y)
        apply_gradients(g, grads)

    def h_step_py() -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(y["next"], hand(x["tokens"], training=True))
        grads = tape.gradient(loss, hand.trainable_variables)
        h_opt.apply_gradients(zip(grads, hand.trainable_variables, strict=True))

    g_step = tf.function(g_step_py, jit_compile=args.compile)
    h_step = tf.function(h_step_py, jit_compile=args.compile)
    for _ in range(args.warmup):
        g_step()
        h_step()
    g_times, h_times = [], []
    for _ in range(args.steps):
        g_times.append(timed(g_step, lambda: None))
        h_times.append(timed(h_step, lambda: None))
    tokens = int(np.prod(batch["tokens"].shape))
    g_med, h_med = statistics.median(g_times), statistics.median(h_times)
    return {"model": "LSTM LM (Keras)", "graphdsl_ms": 1e3 * g_med, "hand_ms": 1e3 * h_med,
            "ratio": g_med / h_med, "graphdsl_tokens_s": tokens / g_med,
            "hand_tokens_s": tokens / h_med}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("torch", "keras"), default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    lm_batch = {"tokens": torch.randint(0, 5000, (args.batch, 35), generator=gen,
                                        dtype=torch.int32)}
    lm_batch["next"] = torch.roll(lm_batch["tokens"], -1, 1)
    gpt_batch = {"ids": torch.randint(0, 2000, (args.batch, 64), generator=gen,
                                      dtype=torch.int32)}
    gpt_batch["next"] = torch.roll(gpt_batch["ids"], -1, 1)
    if args.backend == "keras":
        rows = [compare_keras(lm_batch, args)]
    else:
        rows = [compare("LSTM LM (tied)", LM, HandLM(), lm_batch, args),
                compare("GPT block stack", GPT, HandGPT(), gpt_batch, args)]
    print(f"backend={args.backend} device={args.device} precision={args.precision} "
          f"compile={args.compile} threads={torch.get_num_threads()} steps={args.steps}")
    print(f"{'model':<18} {'graphdsl ms':>12} {'hand ms':>10} {'ratio':>7} "
          f"{'graphdsl tok/s':>15} {'hand tok/s':>11}")
    for r in rows:
        print(f"{r['model']:<18} {r['graphdsl_ms']:>12.2f} {r['hand_ms']:>10.2f} "
              f"{r['ratio']:>7.3f} {r['graphdsl_tokens_s']:>15,.0f} {r['hand_tokens_s']:>11,.0f}")


if __name__ == "__main__":
    main()
