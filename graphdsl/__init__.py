"""graphdsl: a checked language for neural-network graphs.

    program = graphdsl.compile(source)          # a DSL string
    program = graphdsl.compile_file("m.gdl")    # a file: the same call underneath
    module  = graphdsl.compile(source, backend="torch")

Errors raise :class:`GraphdslError`, which carries every diagnostic. Importing graphdsl
never imports a framework; a backend is imported only when asked for by name.
"""

from __future__ import annotations

from typing import Any

from .compiler import Program, compile_path, compile_text
from .diagnostics import Diagnostic, GraphdslError

__version__ = "0.1.0"


def compile(source: str, *, file: str = "<string>", model: str | None = None,
            backend: str | None = None, base_dir: str | None = None, **backend_options: Any) -> Any:
    """Check a program given as text. With ``backend``, build that model natively."""
    program = compile_text(source, file, model=model, base_dir=base_dir)
    return _finish(program, model, backend, backend_options)


def compile_file(path: str, *, model: str | None = None, backend: str | None = None,
                 **backend_options: Any) -> Any:
    """Check a program file. With ``backend``, build that model natively."""
    program = compile_path(str(path), model=model)
    return _finish(program, model, backend, backend_options)


def _finish(program: Program, model: str | None, backend: str | None,
            options: dict[str, Any]) -> Any:
    if backend is None:
        return program
    from .backends import get_backend

    return get_backend(backend).build(program, program.model(model), **options)


def train_file(path: str, *, model: str | None = None, backend: str = "torch",
               out: str | None = None, resume: bool = False, **settings: Any) -> Any:
    """Train a model of a program file as `graphdsl train` does; returns the trained module.

    ``settings`` override the train block (epochs, steps, batch, lr, seed, data, device...).
    """
    from .backends import get_backend

    program = compile_path(str(path), model=model)
    return get_backend(backend).train(program, program.model(model), settings, out=out,
                                      resume=resume)


__all__ = ["Diagnostic", "GraphdslError", "Program", "compile", "compile_file", "train_file"]
