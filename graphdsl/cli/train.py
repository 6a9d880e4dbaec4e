"""`graphdsl train` and `graphdsl eval`: options here, the work in the chosen backend.

Every value the train block would reject is rejected here too, with the same words
(elaborate/train_block.setting_problem), before a framework is imported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from graphdsl.cli.common import (
    EXIT_ERRORS,
    EXIT_USAGE,
    add_model_options,
    import_tensorflow_quietly,
    load_program,
)
from graphdsl.elaborate.train_block import setting_problem

FAST_DEV_STEPS = 2


def setting_type(name: str, kind: type) -> Callable[[str], Any]:
    """An argparse type: the text as ``kind``, then the train block's own check."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        problem = setting_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_train_commands(sub: Any) -> None:
    for name, helptext in (("train", "train a model"), ("eval", "evaluate saved weights")):
        p = sub.add_parser(name, help=helptext, description=helptext + ".")
        p.add_argument("file", help="the program (.gdl)")
        add_model_options(p, "the model to " + name + " (default: " + (
            "every model with a train block)" if name == "train" else
            "the model named in the weights' metadata)"))
        p.add_argument("--backend", choices=("torch", "keras"), default="torch",
                       help="the framework to run in (default: torch)")
        p.add_argument("--data", metavar="FILE", help=(
            "the data: an .npz with arrays named after the inputs and targets, a folder of "
            ".npy files, a token file (.bin) or a text corpus (.txt, .txt.gz); overrides the "
            "train block's `data` (docs/data.md)"
            if name == "train" else
            "score every sample of FILE (default: the validation share of the train "
            "block's data)"))
        p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                       help="where to run (default: the train block's, else auto)")
        p.add_argument("--batch", type=setting_type("batch", int), metavar="N",
                       help="samples per forward pass, over all processes (overrides the "
                            "train block)")
        p.add_argument("--seed", type=setting_type("seed", int), metavar="N",
                       help="seed of initial values, data order and dropout")
        p.add_argument("--json", action="store_true",
                       help="print the result as JSON on stdout, and no progress")
        p.add_argument("--memory-limit", metavar="SIZE",
                       help="reject models whose parameters need more (e.g. 8GB); default: "
                            "the machine's memory")
        if name == "train":
            p.add_argument("--epochs", type=setting_type("epochs", int), metavar="N",
                           help="passes over the training data")
            p.add_argument("--steps", type=setting_type("steps", int), metavar="N",
                           help="stop after N steps")
            p.add_argument("--lr", type=setting_type("lr", float), metavar="RATE",
                           help="learning rate of every optimizer group")
            p.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                           help="arithmetic precision (default: fp32)")
            p.add_argument("--compile", action="store_true",
                           help="run the training step through torch.compile (torch only)")
            p.add_argument("--accumulate", type=setting_type("accumulate", int), metavar="K",
                           help="add up K batches' gradients per optimizer step")
            p.add_argument("--shard", action="store_true",
                           help="under torchrun: shard the model over the processes (FSDP2)")
            p.add_argument("--devices", type=setting_type("devices", int), metavar="N",
                           help="--backend keras: train on N devices (MirroredStrategy)")
            p.add_argument("--out", default=None, metavar="FOLDER",
                           help="the run folder: checkpoints, metrics.jsonl and "
                                "final.safetensors (default: runs/MODEL; with several "
                                "models, FOLDER/MODEL each)")
            p.add_argument("--resume", action="store_true",
                           help="continue from the last checkpoint in --out")
            p.add_argument("--force", action="store_true",
                           help="start over in an --out folder that holds an earlier run "
                                "(removes that run's files)")
            p.add_argument("--val-data", metavar="FILE",
                           help="a separate validation file (the train block's `val_data`)")
            p.add_argument("--fast-dev-run", nargs="?", const=FAST_DEV_STEPS, default=None,
                           type=setting_type("steps", int), metavar="N",
                           help=f"try the program on N (default {FAST_DEV_STEPS}) batches "
                                "made up from its declared inputs: no data needed, nothing "
                                "kept unless --out is given")
        else:
            p.add_argument("--weights", required=True, metavar="FILE",
                           help="the checkpoint to evaluate (final.safetensors or "
                                "checkpoints/step-N.safetensors of a run)")


def out_problem(folder: str) -> str | None:
    """Why checkpoints cannot be written under ``folder``, found before training starts."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return (f"--out {folder}: {probe} is a file, not a folder" if probe ==
                os.path.abspath(folder) else f"--out {folder}: {probe} is a file, so no "
                "folder can be made under it")
    try:  # the real test: permissions, read-only mounts, quotas
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return f"--out {folder}: cannot write in {probe} ({exc.strerror or exc})"
    return None


def run_command(args: argparse.Namespace) -> int:
    if args.command == "train" and args.out:
        problem = out_problem(args.out)
        if problem:
            sys.stderr.write(f"graphdsl: error: {problem}\n")
            return EXIT_USAGE
    for option, path in (("--data", args.data), ("--val-data", getattr(args, "val_data", None))):
        if path and not os.path.exists(path):
            sys.stderr.write(f"graphdsl: error: {option} {path}: no such file\n")
            return EXIT_USAGE
    program, code = load_program(args)
    if program is None:
        return code
    try:
        if args.backend == "keras":
            import_tensorflow_quietly()
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
    scratch = None
    if getattr(args, "fast_dev_run", None):
        args.steps, args.epochs = args.fast_dev_run, 1
        if not args.out:
            args.out = scratch = tempfile.mkdtemp(prefix="graphdsl-fast-dev-run-")
    try:
        return int(runner(program, args))
    except OSError as exc:  # a full disk, a folder made read-only during the run, ...
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"graphdsl: error: {where}{exc.strerror or exc}\n")
        return EXIT_ERRORS
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
