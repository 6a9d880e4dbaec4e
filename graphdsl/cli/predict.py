"""`graphdsl predict`: run a model with saved weights over an .npz of inputs and write
every output (inference outputs included) to an .npz, one array per output name."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from graphdsl.cli.common import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, add_model_options, load_program
from graphdsl.diagnostics import report

if TYPE_CHECKING:
    import numpy as np


def add_predict_command(sub: Any) -> None:
    p = sub.add_parser("predict", help="run a model with saved weights over input arrays")
    p.add_argument("file")
    add_model_options(p)
    p.add_argument("--weights", required=True, help="a graphdsl checkpoint (.safetensors)")
    p.add_argument("--data", required=True, metavar="IN.npz",
                   help="an .npz with one array per input of the model")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--backend", choices=("torch", "keras"), default="torch")
    p.add_argument("--batch", type=int, default=64, help="samples per forward pass")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def load_weights(program: Any, model: Any, path: str) -> dict[str, np.ndarray] | None:
    """The checkpoint's arrays for ``model``, or None after reporting why not."""
    from graphdsl.runtime import checkpoint as ckpt

    try:
        return ckpt.select(model, ckpt.load_checkpoint(path), "*",
                           source=os.path.basename(path))
    except ckpt.CheckpointError as exc:
        report(exc.diagnostics, program.sources)
        return None


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from graphdsl.runtime.data import DataError, load_npz

    if args.batch is not None and args.batch < 1:
        sys.stderr.write(f"graphdsl: error: --batch must be at least 1, got {args.batch}\n")
        return EXIT_USAGE
    program, code = load_program(args)
    if program is None:
        return code
    model = program.model(args.model)
    weights = load_weights(program, model, args.weights)
    if weights is None:
        return EXIT_ERRORS
    try:
        data = load_npz(args.data, model, targets=False)
    except DataError as exc:
        report(exc.diagnostics, program.sources)
        return EXIT_ERRORS
    try:
        from graphdsl.backends import get_backend

        backend = get_backend(args.backend)
        run_batch = backend.predictor(program, model, weights, args.device)
    except ImportError as exc:
        sys.stderr.write(f"graphdsl: error: the {args.backend} backend needs its framework: "
                         f"{exc}\n")
        return EXIT_USAGE
    except RuntimeError as exc:  # a device that is not there
        sys.stderr.write(f"graphdsl: error: {exc}\n")
        return EXIT_USAGE
    parts: dict[str, list[np.ndarray]] = {}
    total = len(data)
    with _progress(total, args.quiet) as advance:
        for start in range(0, total, args.batch):
            batch = {k: v[start:start + args.batch] for k, v in data.arrays.items()}
            for name, value in run_batch(batch).items():
                parts.setdefault(name, []).append(value)
            advance(min(args.batch, total - start))
    outputs = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    _write_npz(args.out, outputs)
    if not args.quiet:
        sys.stderr.write(f"wrote {', '.join(f'{k} {list(v.shape)}' for k, v in outputs.items())}"
                         f" to {args.out}\n")
    return EXIT_OK


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    import io

    import numpy as np

    from graphdsl.runtime.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    named: dict[str, Any] = dict(arrays)
    np.savez(buffer, **named)
    atomic_write_bytes(path, buffer.getvalue())


class _progress:
    """A rich progress bar over samples, on stderr (nothing when quiet or not a terminal)."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet = total, quiet
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.quiet or not sys.stderr.isatty():
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress("predict", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("predict", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
