"""What every command shares: exit codes, the argument parser's error handling, loading a
program with its diagnostics reported."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from graphdsl.diagnostics import GraphdslError, report

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


class CommandParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"graphdsl: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def add_model_options(parser: argparse.ArgumentParser, model_help: str | None = None) -> None:
    """`--model M` and `--set NAME=VALUE`: which model of the file, and its parameters.
    Every command that compiles a program adds them here, so they read the same."""
    parser.add_argument("--model", help=model_help or "which model of the file (by default "
                        "`compile` checks them all and the other commands use the last one)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        dest="set_args",
                        help="override a parameter of the model, type-checked like its "
                             "default (repeatable): --set vocab=1000 --set d=64")


def load_program(args: Any) -> tuple[Any, int]:
    """Compile args.file; on errors print them and return (None, exit code)."""
    from graphdsl.arguments import SetOptionError, parse_set_options
    from graphdsl.checks.resources import parse_bytes
    from graphdsl.compiler import compile_path

    try:
        overrides = parse_set_options(getattr(args, "set_args", None))
    except SetOptionError as exc:
        sys.stderr.write(f"graphdsl: error: {exc}\n")
        return None, EXIT_USAGE
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
        program = compile_path(args.file, model=args.model, memory_limit=limit,
                               args=overrides)
    except GraphdslError as err:
        if getattr(args, "json", False):
            from graphdsl.compiler import program_json

            print(json.dumps(program_json(None, list(err.diagnostics)), indent=2))
        else:
            report(err.diagnostics, err.sources)
        return None, EXIT_ERRORS
    return program, EXIT_OK




def import_tensorflow_quietly() -> None:
    """Import TensorFlow and let it find its devices with the process's stderr set aside.

    TensorFlow's C++ start-up lines (oneDNN notices, a `cuInit` failure on a machine without
    a GPU) are written by absl before any setting can silence them, straight to file
    descriptor 2. They are kept from the user unless GRAPHDSL_TF_LOGS=1, and shown if the
    import fails.
    """
    if os.environ.get("GRAPHDSL_TF_LOGS") == "1":
        return
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
