"""`graphdsl convert`: a graphdsl checkpoint from another tool's weights, through a map."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from graphdsl.cli.common import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, add_model_options, load_program
from graphdsl.diagnostics import report


def add_convert_command(sub: Any) -> None:
    c = sub.add_parser("convert", help="write a graphdsl checkpoint from another tool's "
                       "weights (Hugging Face, PyTorch, Keras) through a weight map")
    c.add_argument("file")
    add_model_options(c)
    c.add_argument("--from", dest="foreign", required=True, metavar="FOREIGN",
                   help="the other tool's weights: .safetensors, a PyTorch state dict "
                        "(.bin/.pt, read with weights_only=True), or Keras .weights.h5")
    c.add_argument("--map", required=True, metavar="MAP",
                   help="a weight-map file, or a shipped map: hf_gpt2, hf_bert, "
                        "torchvision_resnet, torchvision_resnext, keras_mobilenet_v2")
    c.add_argument("--out", required=True, metavar="CKPT.safetensors")


def cmd_convert(args: argparse.Namespace) -> int:
    from graphdsl.runtime import checkpoint as ckpt
    from graphdsl.runtime.convert import convert_file

    program, code = load_program(args)
    if program is None:
        return code
    if not program.models:
        sys.stderr.write(f"graphdsl: error: {args.file} defines no model\n")
        return EXIT_USAGE
    model = program.model(args.model)
    try:
        tensors = convert_file(model, args.foreign, args.map, program.sources)
    except ckpt.CheckpointError as err:
        report(err.diagnostics, program.sources)
        return EXIT_ERRORS
    meta = ckpt.model_metadata(model, program.file, converted_from=os.path.basename(
        args.foreign), weight_map=args.map)
    ckpt.save_checkpoint(args.out, tensors, meta)
    count = sum(int(v.size) for v in tensors.values())
    print(f"wrote {args.out}: {len(tensors)} tensors, {count:,} values, model `{model.name}` "
          f"from {args.foreign} through {args.map}")
    return EXIT_OK
