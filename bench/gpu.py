"""GPT-2 small on one GPU: graphdsl's engines against a hand-written nanoGPT-style module.

Run by hand (not in CI):
    .venv/bin/python bench/gpu.py                      # GPT-2 small, bf16, --compile, CUDA
    .venv/bin/python bench/gpu.py --backend keras      # the Keras engine, bf16, XLA
    .venv/bin/python bench/gpu.py --tiny               # a 2-layer toy on CPU: a smoke check
One run trains, on the same random batches and from the same weights:
  graphdsl  examples/gpt2_small.gdl (dropout set to 0, as nanoGPT's benchmark does) through
            the engine `graphdsl train` uses (torch: TorchEngine with --compile, which
            compiles the loss pass and the optimizer step; keras: KerasEngine, XLA);
  hand      a nanoGPT-style nn.Module of the same architecture (fused q/k/v, SDPA causal
            attention, tied head), its weights copied from graphdsl's, torch.compile'd.
Both run under bf16 autocast with Adam and read the loss every step (as the driver does).
Reported: median step time, tokens/s and model FLOPs utilisation, MFU = (6 N + 12 L T d)
tokens/s / peak, nanoGPT's estimate (N: parameters without the position table).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import graphdsl
from graphdsl.runtime.training import resolve_settings

ROOT = Path(__file__).resolve().parents[1]
PEAK_TFLOPS = {"H100": 989.5, "H200": 989.5, "A100": 312.0, "L4": 121.0, "A10": 125.0}


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, heads)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, context: int, d: int, layers: int, heads: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids: torch.Tensor, next: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.wte(ids.long()) + self.wpe(torch.arange(t, device=ids.device))
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # the head tied to wte
        return F.cross_entropy(logits.flatten(0, 1).float(), next.long().flatten())

    @torch.no_grad()
    def load_from(self, a: dict[str, np.ndarray]) -> None:
        """graphdsl's canonical arrays (Keras layouts: kernels [in, out]) -> nn.Linear."""
        def put(target: torch.Tensor, value: np.ndarray) -> None:
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)).reshape(target.shape))

        d = self.wte.weight.shape[1]
        put(self.wte.weight, a["wte.embeddings"])
        put(self.wpe.weight, a["wpe.embeddings"])
        for i, block in enumerate(self.h):
            p = f"gpt2_block.{i}."
            m = p + "multi_head_attention."
            put(block.ln_1.weight, a[p + "layer_normalization.gamma"])
            put(block.ln_1.bias, a[p + "layer_normalization.beta"])
            put(block.ln_2.weight, a[p + "layer_normalization_1.gamma"])
            put(block.ln_2.bias, a[p + "layer_normalization_1.beta"])
            put(block.attn.c_attn.weight, np.concatenate(
                [a[m + f"{z}_kernel"].reshape(d, d).T for z in ("query", "key", "value")]))
            put(block.attn.c_attn.bias, np.concatenate(
                [a[m + f"{z}_bias"].reshape(d) for z in ("query", "key", "value")]))
            put(block.attn.c_proj.weight, a[m + "output_kernel"].reshape(d, d).T)
            put(block.attn.c_proj.bias, a[m + "output_bias"])
            put(block.c_fc.weight, a[p + "dense.kernel"].T)
            put(block.c_fc.bias, a[p + "dense.bias"])
            put(block.c_proj.weight, a[p + "dense_1.kernel"].T)
            put(block.c_proj.bias, a[p + "dense_1.bias"])
        put(self.ln_f.weight, a["layer_normalization.gamma"])
        put(self.ln_f.bias, a["layer_normalization.beta"])


def program_text(sizes: dict[str, int]) -> str:
    text = (ROOT / "examples" / "gpt2_small.gdl").read_text(encoding="utf-8")
    text = text.replace("dropout = 0.1", "dropout = 0.0").replace("Dropout(0.1)",
                                                                  "Dropout(0.0)")
    for name, default in (("vocab", 50257), ("context", 1024), ("d", 768), ("layers", 12),
                          ("heads", 12)):
        text = text.replace(f"{name}: int = {default}", f"{name}: int = {sizes[name]}")
    return text


def median_step(step: Any, warmup: int, steps: int, sync: Any) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("torch", "keras"), default="torch")
    parser.add_argument("--tiny", action="store_true", help="a toy size, on CPU")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's bf16 dense peak (default: known GPUs by name)")
    args = parser.parse_args()
    sizes = dict(vocab=50257, context=1024, d=768, layers=12, heads=12)
    if args.tiny:
        sizes = dict(vocab=256, context=32, d=64, layers=2, heads=2)
        args.batch, args.steps, args.warmup = 4, 3, 2
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    compiled = not args.no_compile
    source = program_text(sizes)
    program = graphdsl.compile(source, file="gpt2_small.gdl")
    model = program.model("GPT2")
    settings = resolve_settings(model, {"device": device, "precision": "bf16", "lr": 3e-4},
                                compile=compiled)
    if args.backend == "torch":
        from graphdsl.backends.torch.train import TorchEngine as Engine
    else:
        from graphdsl.backends.keras.train import KerasEngine as Engine  # type: ignore[assignment]
    engine = Engine(program, model, settings)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, sizes["vocab"], (args.batch, sizes["context"] + 1)).astype(np.int32)
    batch = {"ids": ids[:, :-1], "next": ids[:, 1:]}

    hand = NanoGPT(**sizes).to(device)
    hand.load_from(engine.export_arrays())
    hand_opt = torch.optim.Adam(hand.parameters(), lr=3e-4)
    hand_run: Any = torch.compile(hand) if compiled else hand
    on_device = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}

    def hand_step() -> float:
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = hand_run(**on_device)
        hand_opt.zero_grad(set_to_none=True)
        loss.backward()
        hand_opt.step()
        return float(loss.detach())

    first_graphdsl = engine.eval_batch(batch).total
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
        first_hand = float(hand(**on_device))
    print(f"same weights: loss before training graphdsl {first_graphdsl:.4f}, "
          f"hand {first_hand:.4f} (bf16)")

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    g = median_step(lambda: engine.train_step(batch, 1.0), args.warmup, args.steps, sync)
    h = median_step(hand_step, args.warmup, args.steps, sync)
    tokens = args.batch * sizes["context"]
    params = sum(p.numel() for p in hand.parameters()) - hand.wpe.weight.numel()
    flops_per_token = 6 * params + 12 * sizes["layers"] * sizes["context"] * sizes["d"]
    peak = args.peak_tflops
    if peak is None and device == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"backend={args.backend} device={device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if device == 'cuda' else ''} bf16 "
          f"compile={compiled} batch={args.batch}x{sizes['context']} "
          f"params={params + hand.wpe.weight.numel():,} steps={args.steps}")
    for label, seconds in (("graphdsl", g), ("hand (nanoGPT-style)", h)):
        rate = tokens / seconds
        mfu = f"{100 * rate * flops_per_token / (peak * 1e12):.1f}%" if peak else "n/a"
        print(f"{label:<22} {1e3 * seconds:9.2f} ms/step {rate:12,.0f} tokens/s  MFU {mfu}")
    print(f"graphdsl / hand step time: {g / h:.3f}")
    if not math.isfinite(first_graphdsl):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    main()
