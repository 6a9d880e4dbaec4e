"""Wall time of the main job (`graphdsl train examples/press_wolf.gdl --model TiedLM`)
against a plain hand-written PyTorch script doing the same work: read and tokenise the
corpus, build the tied LSTM, one epoch of Adam with clipping, score the held-out lines,
save the weights. Both run as fresh processes, so start-up (imports, building, initial
values) counts, as it does for a user.

Run by hand (not in CI), from the repository root:
    .venv/bin/python bench/main_job.py [--repeats 1] [--steps N]
The figure of merit is graphdsl's wall time / the plain script's (and the same for CPU
time, steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAIN = r'''
import gzip, sys, time
from collections import Counter
import numpy as np, torch
from torch import nn
import torch.nn.functional as F

steps_limit = int(sys.argv[1])
torch.manual_seed(1)
lines = gzip.open("examples/data/shakespeare.txt.gz", "rt", encoding="utf-8").read().splitlines()
cut = len(lines) - int(len(lines) * 0.1)

def tokens(part):
    out = []
    for line in part:
        words = line.split()
        if words:
            out += words + ["<eos>"]
    return out

train_tokens, valid_tokens = tokens(lines[:cut]), tokens(lines[cut:])
counts = Counter(t for t in train_tokens if t not in ("<pad>", "<unk>", "<eos>"))
vocab = ["<pad>", "<unk>", "<eos>"] + [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:4997]]
index = {w: i for i, w in enumerate(vocab)}

def sequences(toks, T=35):
    ids = np.array([index.get(t, 1) for t in toks], dtype=np.int64)
    n = (len(ids) - 1) // T
    return (torch.from_numpy(ids[: n * T].reshape(n, T)), torch.from_numpy(ids[1: n * T + 1].reshape(n, T)))

(xt, yt), (xv, yv) = sequences(train_tokens), sequences(valid_tokens)

class TiedLM(nn.Module):
    def __init__(self, vocab=5000, dim=200, p=0.3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm1 = nn.LSTM(dim, dim, batch_first=True)
        self.lstm2 = nn.LSTM(dim, dim, batch_first=True)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.drop = nn.Dropout(p)
    def forward(self, x):
        h = self.drop(self.embed(x))
        h = self.drop(self.lstm1(h)[0])
        h = self.drop(self.lstm2(h)[0])
        return h @ self.embed.weight.T + self.bias

model = TiedLM()
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
order = torch.from_numpy(np.random.default_rng([1, 0]).permutation(len(xt)))
model.train()
for step, i in enumerate(range(0, len(xt), 32)):
    if step >= steps_limit:
        break
    b = order[i: i + 32]
    loss = F.cross_entropy(model(xt[b]).reshape(-1, 5000), yt[b].reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
model.eval()
total, count = 0.0, 0
with torch.no_grad():
    for i in range(0, len(xv), 32):
        logits = model(xv[i: i + 32])
        total += F.cross_entropy(logits.reshape(-1, 5000), yv[i: i + 32].reshape(-1)).item() * len(logits)
        count += len(logits)
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[2] if len(sys.argv) > 2 else "/tmp/plain.safetensors")
print(f"valid loss {total / count:.4f}")
'''


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a fresh process. CPU time is the steadier figure on
    a shared machine, where wall time also counts waiting for other people's work."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="stop both after N steps")
    args = parser.parse_args()
    env = dict(os.environ)
    limit = ["--steps", str(args.steps)] if args.steps else []
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "plain.py"
        script.write_text(PLAIN)
        for repeat in range(args.repeats):
            out = str(Path(scratch) / f"run{repeat}")
            ours = timed([sys.executable, "-m", "graphdsl", "train", "examples/press_wolf.gdl",
                          "--model", "TiedLM", "--out", out, "--json", *limit], env)
            plain = timed([sys.executable, str(script), str(args.steps or 10**9),
                           str(Path(scratch) / "plain.safetensors")], env)
            print(f"wall: graphdsl {ours[0]:.1f} s, plain PyTorch {plain[0]:.1f} s, ratio "
                  f"{ours[0] / plain[0]:.2f}   CPU: graphdsl {ours[1]:.1f} s, plain "
                  f"{plain[1]:.1f} s, ratio {ours[1] / plain[1]:.2f}")


if __name__ == "__main__":
    main()
