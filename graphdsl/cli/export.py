"""`graphdsl export`: a model with saved weights in a format other tools read.

Formats: ``onnx`` (through torch.onnx's dynamo exporter), ``torch-source`` (a folder
with a readable ``model.py`` and ``model.safetensors``, needing only torch and
safetensors), ``keras-source`` (the same for Keras 3), ``keras`` (a ``.keras`` file) and
``savedmodel`` (a TensorFlow SavedModel with a serving signature named after the inputs).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from graphdsl.cli.common import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, add_model_options, load_program

# format -> (backend, function of that backend's `export` module)
FORMATS = {
    "onnx": ("torch", "export_onnx"),
    "torch-source": ("torch", "export_source"),
    "keras-source": ("keras", "export_source"),
    "keras": ("keras", "export_keras"),
    "savedmodel": ("keras", "export_savedmodel"),
}


def add_export_command(sub: Any) -> None:
    p = sub.add_parser("export", help="write a model with saved weights in another format")
    p.add_argument("file")
    add_model_options(p)
    p.add_argument("--weights", required=True, help="a graphdsl checkpoint (.safetensors)")
    p.add_argument("--format", required=True, choices=tuple(FORMATS))
    p.add_argument("--out", required=True, metavar="PATH",
                   help="a file (onnx, keras) or a folder (torch-source, keras-source, "
                        "savedmodel)")


def cmd_export(args: argparse.Namespace) -> int:
    import importlib

    from graphdsl.backends import ExportError
    from graphdsl.cli.predict import load_weights

    if args.format == "keras" and not args.out.endswith(".keras"):
        sys.stderr.write(f"graphdsl: error: --format keras writes a .keras file; --out "
                         f"{args.out} does not end in .keras\n")
        return EXIT_USAGE
    program, code = load_program(args)
    if program is None:
        return code
    model = program.model(args.model)
    weights = load_weights(program, model, args.weights)
    if weights is None:
        return EXIT_ERRORS
    backend, function = FORMATS[args.format]
    try:
        module = importlib.import_module(f"graphdsl.backends.{backend}.export")
    except ImportError as exc:
        sys.stderr.write(f"graphdsl: error: --format {args.format} needs the {backend} "
                         f"backend's framework: {exc}\n")
        return EXIT_USAGE
    try:
        notes = getattr(module, function)(program, model, weights, args.out) or []
    except ImportError as exc:  # onnx, onnxscript: in graphdsl[all]
        sys.stderr.write(f"graphdsl: error: --format {args.format} needs a package that is "
                         f"not installed: {exc}; install graphdsl[all]\n")
        return EXIT_USAGE
    except ExportError as exc:
        sys.stderr.write(f"graphdsl: error: {exc}\n")
        return EXIT_ERRORS
    for note in notes:
        sys.stderr.write(f"graphdsl: warning: {note}\n")
    sys.stderr.write(f"wrote {args.format} export of `{model.name}` to {args.out}\n")
    return EXIT_OK
