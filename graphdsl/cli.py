"""The `graphdsl` command: compile (check, summarise, draw), train, eval.

Exit codes: 0 clean (warnings allowed), 1 errors in the program, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .diagnostics import Diagnostic, GraphdslError, SourceMap, print_diagnostics, summary_line

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"graphdsl: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graphdsl", description="A checked language for neural-network "
                     "graphs, compiled to PyTorch or Keras.")
    parser.add_argument("--version", action="version", version="graphdsl 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    c = sub.add_parser("compile", help="check a program and summarise its models")
    c.add_argument("file")
    c.add_argument("--model", help="only this model")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("--dot", metavar="OUT.dot", help="write a Graphviz picture of the model")
    c.add_argument("--svg", metavar="OUT.svg", help="render the picture to SVG (needs `dot`)")
    c.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="reject models whose parameters need more (e.g. 8GB); default 64GiB")
    c.add_argument("--check-parity", action="store_true",
                   help="build each model in PyTorch and Keras from the same random weights "
                        "and print the largest output difference (needs both frameworks)")
    from .training_cli import add_train_commands

    add_train_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "compile":
            return cmd_compile(args)
        from .training_cli import run_command

        return run_command(args)
    except KeyboardInterrupt:
        sys.stderr.write("graphdsl: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a compiler bug: say so plainly, never show a traceback
        sys.stderr.write(f"graphdsl: internal error: {type(exc).__name__}: {exc}\n"
                         "This is a bug in graphdsl, not in your program; please report it "
                         "with the input that caused it.\n")
        return EXIT_INTERNAL


def report(diagnostics: Sequence[Diagnostic], sources: SourceMap) -> None:
    if diagnostics:
        print_diagnostics(diagnostics, sources, sys.stderr)
        sys.stderr.write(summary_line(diagnostics) + "\n")


def load_program(args: Any) -> tuple[Any, int]:
    """Compile args.file; on errors print them and return (None, exit code)."""
    from .checks.resources import parse_bytes
    from .compiler import compile_path

    limit = None
    if getattr(args, "memory_limit", None):
        try:
            limit = parse_bytes(args.memory_limit)
        except ValueError:
            sys.stderr.write(f"graphdsl: error: bad --memory-limit {args.memory_limit!r}\n")
            return None, EXIT_USAGE
    if not os.path.exists(args.file):
        sys.stderr.write(f"graphdsl: error: no such file: {args.file}\n")
        return None, EXIT_USAGE
    try:
        program = compile_path(args.file, model=args.model, memory_limit=limit)
    except GraphdslError as err:
        if getattr(args, "json", False):
            from .compiler import program_json

            print(json.dumps(program_json(None, list(err.diagnostics)), indent=2))
        else:
            report(err.diagnostics, err.sources)
        return None, EXIT_ERRORS
    return program, EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    program, code = load_program(args)
    if program is None:
        return code
    if args.json:
        from .compiler import program_json

        print(json.dumps(program_json(program, program.diagnostics), indent=2))
    else:
        from rich.console import Console

        report(program.diagnostics, program.sources)
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
        for model in program.models.values():
            from .summary import print_model

            print_model(model, console)
        if not program.models:
            console.print("no models in this file (only blocks); nothing to summarise")
    if args.dot or args.svg:
        code = write_pictures(program, args)
        if code:
            return code
    if args.check_parity:
        try:
            from .backends.parity import check_parity_cli
        except ImportError as exc:
            sys.stderr.write(f"graphdsl: error: --check-parity needs PyTorch and Keras: "
                             f"{exc}\n")
            return EXIT_USAGE
        return check_parity_cli(program)
    return EXIT_OK


def write_pictures(program: Any, args: argparse.Namespace) -> int:
    import shutil
    import subprocess
    import tempfile

    from .summary import to_dot

    if not program.models:
        return EXIT_OK
    model = program.model(args.model)
    dot = to_dot(model)
    if args.dot:
        atomic_write_text(args.dot, dot)
    if args.svg:
        exe = shutil.which("dot")
        if exe is None:
            sys.stderr.write("graphdsl: error: --svg needs Graphviz's `dot` program; write "
                             "--dot OUT.dot instead, or install graphviz\n")
            return EXIT_USAGE
        with tempfile.NamedTemporaryFile("w", suffix=".dot", delete=False) as fh:
            fh.write(dot)
        try:
            svg = subprocess.run([exe, "-Tsvg", fh.name], capture_output=True, text=True,
                                 check=True).stdout
        finally:
            os.unlink(fh.name)
        atomic_write_text(args.svg, svg)
    return EXIT_OK


def atomic_write_text(path: str, text: str) -> None:
    from .checkpoint import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


if __name__ == "__main__":
    raise SystemExit(main())
