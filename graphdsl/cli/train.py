"""`graphdsl train` and `graphdsl eval`: options here, the work in the chosen backend."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from graphdsl.cli.common import EXIT_USAGE, add_model_options, load_program


def add_train_commands(sub: Any) -> None:
    for name, helptext in (("train", "train a model"), ("eval", "evaluate saved weights")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("file")
        add_model_options(p)
        p.add_argument("--backend", choices=("torch", "keras"), default="torch")
        p.add_argument("--data")
        p.add_argument("--device", choices=("auto", "cpu", "cuda"))
        p.add_argument("--batch", type=int)
        p.add_argument("--seed", type=int)
        p.add_argument("--json", action="store_true")
        p.add_argument("--memory-limit", metavar="SIZE")
        if name == "train":
            p.add_argument("--epochs", type=int)
            p.add_argument("--steps", type=int)
            p.add_argument("--lr", type=float)
            p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
            p.add_argument("--compile", action="store_true")
            p.add_argument("--accumulate", type=int, metavar="K",
                           help="add up K batches' gradients per optimizer step")
            p.add_argument("--shard", action="store_true",
                           help="under torchrun: shard the model over the processes (FSDP2)")
            p.add_argument("--devices", type=int, metavar="N",
                           help="--backend keras: train on N devices (MirroredStrategy)")
            p.add_argument("--out", default=None)
            p.add_argument("--resume", action="store_true")
            p.add_argument("--force", action="store_true",
                           help="start over in an --out folder that holds an earlier run "
                                "(removes that run's files)")
            p.add_argument("--val-data", metavar="FILE",
                           help="a separate validation file (the train block's `val_data`)")
        else:
            p.add_argument("--weights", required=True)


def run_command(args: argparse.Namespace) -> int:
    program, code = load_program(args)
    if program is None:
        return code
    try:
        from graphdsl.backends import get_backend

        backend = get_backend(args.backend)
        runner = getattr(backend, "run_" + args.command, None)
    except ImportError as exc:
        sys.stderr.write(f"graphdsl: error: the {args.backend} backend needs its framework: "
                         f"{exc}\n")
        return EXIT_USAGE
    if runner is None:
        sys.stderr.write(f"graphdsl: error: the {args.backend} backend cannot "
                         f"{args.command} yet\n")
        return EXIT_USAGE
    return int(runner(program, args))
