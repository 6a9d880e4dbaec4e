"""The `graphdsl` command: compile (check, summarise, draw), train, eval, predict, export,
convert.

Exit codes: 0 clean (warnings allowed), 1 errors in the program, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from graphdsl.cli.common import EXIT_ERRORS, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, CommandParser
from graphdsl.cli.compile import add_compile_command, cmd_compile
from graphdsl.cli.completion import add_completion_command, completion_script
from graphdsl.cli.convert import add_convert_command, cmd_convert
from graphdsl.cli.export import add_export_command, cmd_export
from graphdsl.cli.predict import add_predict_command, cmd_predict
from graphdsl.cli.train import add_train_commands, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="graphdsl", description="A checked language for neural-network "
                           "graphs, compiled to PyTorch or Keras.")
    parser.add_argument("--version", action="version", version="graphdsl 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    add_compile_command(sub)
    add_train_commands(sub)
    add_convert_command(sub)
    add_predict_command(sub)
    add_export_command(sub)
    add_completion_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "completion":
        sys.stdout.write(completion_script(parser))
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "compile":
            return cmd_compile(args)
        if args.command == "convert":
            return cmd_convert(args)
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "export":
            return cmd_export(args)
        return run_command(args)
    except KeyboardInterrupt:
        sys.stderr.write("graphdsl: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`, a closed terminal): what was left to say is lost,
        # so the run cannot count as clean. Point both streams at devnull so that Python's
        # own flush at exit does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        return EXIT_ERRORS
    except Exception as exc:  # a compiler bug: say so plainly, never show a traceback
        sys.stderr.write(f"graphdsl: internal error: {type(exc).__name__}: {exc}\n"
                         "This is a bug in graphdsl, not in your program; please report it "
                         "with the input that caused it.\n")
        return EXIT_INTERNAL


def run() -> NoReturn:
    """The `graphdsl` command and `python -m graphdsl`: main(), then the process's end."""
    code = main()
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        # Under torchrun, the interpreter's own teardown of the process group's threads
        # aborts a process now and then after a finished run ("terminate called without an
        # active exception", exit -6): leave the group, flush, and end here. Every file is
        # written and closed by now.
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    run()
