"""graphdsl: a checked language for neural-network graphs.

    program = graphdsl.compile(source)          # a DSL string
    program = graphdsl.compile_file("m.gdl")    # a file: the same call underneath
    module  = graphdsl.compile(source, backend="torch")

Errors raise :class:`GraphdslError`, which carries every diagnostic. Importing graphdsl
never imports a framework; a backend is imported only when asked for by name.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Mapping
from typing import Any

from .compiler import Program, compile_path, compile_text
from .diagnostics import Diagnostic, GraphdslError

__version__ = "0.1.0"


def compile(source: str, *, file: str = "<string>", model: str | None = None,
            backend: str | None = None, base_dir: str | None = None,
            args: Mapping[str, Any] | None = None, **backend_options: Any) -> Any:
    """Check a program given as text. With ``backend``, build that model natively.

    ``args`` overrides the model's parameters (`model GPT2(vocab: int = 50257, ...)`), as
    `--set vocab=100` does on the command line: ``args={"vocab": 100}``.
    """
    program = compile_text(source, file, model=model, base_dir=base_dir, args=args)
    return _finish(program, model, backend, backend_options)


def compile_file(path: str, *, model: str | None = None, backend: str | None = None,
                 args: Mapping[str, Any] | None = None, **backend_options: Any) -> Any:
    """Check a program file. With ``backend``, build that model natively; ``args`` as for
    :func:`compile`."""
    program = compile_path(str(path), model=model, args=args)
    return _finish(program, model, backend, backend_options)


def _finish(program: Program, model: str | None, backend: str | None,
            options: dict[str, Any]) -> Any:
    if backend is None:
        return program
    from .backends import get_backend

    return get_backend(backend).build(program, program.model(model), **options)


def train_file(path: str, *, model: str | None = None, backend: str = "torch",
               out: str | None = None, resume: bool = False, force: bool = False,
               args: Mapping[str, Any] | None = None, **settings: Any) -> Any:
    """Train a model of a program file as `graphdsl train` does; returns the trained module.

    ``settings`` override the train block (epochs, steps, batch, lr, seed, data, device...);
    ``args`` the model's parameters, as for :func:`compile`. A folder ``out`` that holds an
    earlier run is continued with ``resume`` or cleared with ``force``, as on the command
    line.
    """
    from .backends import get_backend

    program = compile_path(str(path), model=model, args=args)
    return get_backend(backend).train(program, program.model(model), settings, out=out,
                                      resume=resume, force=force)


def _register_with_keras() -> None:
    """Make graphdsl's Keras classes known to Keras' loader (`keras.saving.load_model`)."""
    # Keras without TensorFlow: nothing graphdsl can build there.
    with contextlib.suppress(ImportError):
        importlib.import_module("graphdsl.backends.keras.model")


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Registers graphdsl's classes the moment the user imports Keras, so that importing
    graphdsl is all a saved model needs, whichever of the two is imported first. Keras is
    never imported by graphdsl itself."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            _register_with_keras()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "keras" in sys.modules:
    _register_with_keras()
elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())


__all__ = ["Diagnostic", "GraphdslError", "Program", "compile", "compile_file", "train_file"]
