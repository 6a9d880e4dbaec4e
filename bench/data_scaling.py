"""Training on a token file bigger than memory: peak resident memory and step time.

Run by hand (not in CI):
    .venv/bin/python bench/data_scaling.py                    # a 4 GB token file
    .venv/bin/python bench/data_scaling.py --gigabytes 0.5    # smaller, same measurement
It writes a flat uint16 token file of the given size (nanoGPT's format, in chunks, so
writing it needs little memory), then trains the same small GPT for the same number of
steps in two fresh processes:
  mapped:    `data = "tokens.bin"`, memory-mapped, random windows, read in the background;
  in memory: the same number of windows cut from the file's head into an .npz, loaded whole.
Each process reports its peak resident set size (ru_maxrss, framework included) and the
median wall time between consecutive steps (so waiting for data counts); the two kinds
alternate, and the step-time figure is the median over pairs of mapped / in memory.
Goals: the mapped run's peak under 1 GB, its step time within 5% of the in-memory run's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

VOCAB = 4096
PROGRAM = """
block Block(d: int, heads: int) {{
    input x : float32[B, T, d]
    n = LayerNormalization(epsilon = 1e-5)(x)
    x = x + MultiHeadAttention(heads, d / heads)(n, n, use_causal_mask = true)
    m = Dense(4 * d, activation = gelu_tanh)(LayerNormalization(epsilon = 1e-5)(x))
    output x + Dense(d)(m)
}}
model MiniGPT(vocab: int = {vocab}, context: int = {context}, d: int = 128, layers: int = 2,
              heads: int = 4) {{
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
}}
train MiniGPT {{
    optimizer * = adamw(lr = 3e-4)
    batch = {batch}
    sequence_length = {context}
    validation = 0.0
}}
"""


def write_tokens(path: str, gigabytes: float) -> int:
    tokens = int(gigabytes * 1e9) // 2
    chunk = 1 << 25  # 32 M tokens, 64 MB
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:
        for start in range(0, tokens, chunk):
            rng.integers(0, VOCAB, min(chunk, tokens - start), dtype=np.uint16).tofile(fh)
    return tokens


def child(folder: str, data: str, steps: int) -> None:
    """One training run in this (fresh) process; prints its figures as JSON."""
    import graphdsl
    from graphdsl.backends.torch.train import train_model

    program = graphdsl.compile_file(os.path.join(folder, "gpt.gdl"))
    starts: list[float] = []
    from graphdsl.backends.torch import train as torch_train

    step = torch_train.TorchEngine.train_step

    def timed(self, batch, lr_factor):  # type: ignore[no-untyped-def]
        starts.append(time.perf_counter())
        return step(self, batch, lr_factor)

    torch_train.TorchEngine.train_step = timed  # type: ignore[method-assign]
    train_model(program, program.model("MiniGPT"),
                {"data": data, "steps": steps, "epochs": 10**6, "device": "cpu"},
                out=os.path.join(folder, "run-" + os.path.basename(data)), quiet=True)
    gaps = [b - a for a, b in zip(starts[5:], starts[6:], strict=False)]  # past warm-up
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "step_ms": 1000 * statistics.median(gaps)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.folder, args.child[0], int(args.child[1]))
        return
    folder = args.folder or tempfile.mkdtemp(prefix="graphdsl-data-scaling-")
    with open(os.path.join(folder, "gpt.gdl"), "w", encoding="utf-8") as fh:
        fh.write(PROGRAM.format(vocab=VOCAB, context=args.context, batch=args.batch))
    big = os.path.join(folder, "tokens.bin")
    started = time.perf_counter()
    if os.path.exists(big) and os.path.getsize(big) == int(args.gigabytes * 1e9) // 2 * 2:
        tokens = os.path.getsize(big) // 2  # kept from an earlier run in --folder
    else:
        tokens = write_tokens(big, args.gigabytes)
    print(f"have {tokens:,} tokens ({os.path.getsize(big) / 1e9:.2f} GB) in "
          f"{time.perf_counter() - started:.0f} s to {big}")
    windows = args.steps * args.batch * 2
    head = np.fromfile(big, np.uint16, count=windows * args.context + 1).astype(np.int32)
    np.savez(os.path.join(folder, "windows.npz"),
             ids=head[:-1].reshape(windows, args.context),
             next=head[1:].reshape(windows, args.context))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    results: dict[str, dict[str, float]] = {}
    ratios = []
    # Alternating pairs of runs, so that other load on the machine hits both kinds; the
    # figure is the median over pairs of (mapped / in memory).
    for _ in range(args.repeats):
        for label, data in (("in memory", "windows.npz"), ("mapped", "tokens.bin")):
            done = subprocess.run([sys.executable, __file__, "--folder", folder, "--child",
                                   os.path.join(folder, data), str(args.steps)],
                                  capture_output=True, text=True, env=env, check=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{label:>10}: peak RSS {run['peak_rss_mb']:7.0f} MB, "
                  f"step {run['step_ms']:7.2f} ms (median of {args.steps - 6})")
            best = results.setdefault(label, run)
            best["peak_rss_mb"] = max(best["peak_rss_mb"], run["peak_rss_mb"])
            results[label]["last"] = run["step_ms"]
        ratios.append(results["mapped"]["last"] / results["in memory"]["last"])
    ratio = statistics.median(ratios)
    print(f"pairs: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"mapped / in memory step time: {ratio:.3f} (median of pairs; goal <= 1.05); "
          "mapped peak RSS "
          f"{results['mapped']['peak_rss_mb']:.0f} MB (goal < 1024) for a "
          f"{os.path.getsize(big) / 1e9:.2f} GB file")
    if not args.folder:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
