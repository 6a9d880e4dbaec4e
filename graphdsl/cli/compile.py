"""`graphdsl compile`: check a program, summarise its models, draw them, compare backends."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from graphdsl.cli.common import EXIT_OK, EXIT_USAGE, add_model_options, load_program
from graphdsl.diagnostics import report


def add_compile_command(sub: Any) -> None:
    c = sub.add_parser("compile", help="check a program and summarise its models")
    c.add_argument("file")
    add_model_options(c)
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("--dot", metavar="OUT.dot", help="write a Graphviz picture of the model")
    c.add_argument("--svg", metavar="OUT.svg", help="render the picture to SVG (needs `dot`)")
    c.add_argument("--expand", action="store_true",
                   help="draw every copy of a `repeat` (default: one copy and its count)")
    c.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="reject models whose parameters need more (e.g. 8GB); default: the "
                        "machine's memory")
    c.add_argument("--check-parity", action="store_true",
                   help="build each model in PyTorch and Keras from the same random weights "
                        "and print the largest output difference (needs both frameworks)")


def cmd_compile(args: argparse.Namespace) -> int:
    program, code = load_program(args)
    if program is None:
        return code
    if args.json:
        from graphdsl.compiler import program_json

        print(json.dumps(program_json(program, program.diagnostics), indent=2))
    else:
        from rich.console import Console

        report(program.diagnostics, program.sources)
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
        for model in program.models.values():
            from graphdsl.ir.summary import print_model

            print_model(model, console)
        if not program.models:
            console.print("no models in this file (only blocks); nothing to summarise")
    if args.dot or args.svg:
        code = write_pictures(program, args)
        if code:
            return code
    if args.check_parity:
        try:
            from graphdsl.backends.parity import check_parity_cli
        except ImportError as exc:
            sys.stderr.write(f"graphdsl: error: --check-parity needs PyTorch and Keras: "
                             f"{exc}\n")
            return EXIT_USAGE
        return check_parity_cli(program)
    return EXIT_OK


def write_pictures(program: Any, args: argparse.Namespace) -> int:
    import shutil

    from graphdsl.ir.picture import to_graph

    if not program.models:
        return EXIT_OK
    model = program.model(args.model)
    graph = to_graph(model, expand=args.expand)
    dot = graph.to_string()
    if args.dot:
        atomic_write_text(args.dot, dot)
    if args.svg:
        exe = shutil.which("dot")
        if exe is None:
            sys.stderr.write("graphdsl: error: --svg needs Graphviz's `dot` program; write "
                             "--dot OUT.dot instead, or install graphviz\n")
            return EXIT_USAGE
        svg = graph.create(prog=exe, format="svg")
        atomic_write_bytes(args.svg, svg)
    return EXIT_OK


def atomic_write_bytes(path: str, data: bytes) -> None:
    from graphdsl.runtime.checkpoint import atomic_write_bytes as write

    write(path, data)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode())
