"""The front end's driver: read files, follow imports, elaborate models, run the checks."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphdsl.syntax import tree as ast

from .arguments import ModelArguments
from .checks import run_checks
from .checks.resources import machine_memory
from .diagnostics import (
    Diagnostic,
    DiagnosticSink,
    GraphdslError,
    Note,
    SourceMap,
    Span,
    did_you_mean,
    display_path,
)
from .elaborate.budget import MAX_NODES
from .elaborate.core import Elaborator
from .elaborate.train_block import check_train_block
from .elaborate.values import Definition, Namespace
from .ir.graph import ModelGraph
from .syntax.parser import parse

MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class Program:
    """A checked program: its models (graph IR) and any warnings."""

    models: dict[str, ModelGraph]
    diagnostics: list[Diagnostic]
    sources: SourceMap
    file: str
    base_dir: str = "."

    def model(self, name: str | None = None) -> ModelGraph:
        if name is None:
            if not self.models:
                raise GraphdslError([], self.sources)
            return next(reversed(self.models.values()))
        return self.models[name]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


@dataclass
class _Loaded:
    module: ast.Module
    namespace: Namespace
    path: str


@dataclass
class _Session:
    sink: DiagnosticSink = field(default_factory=DiagnosticSink)
    sources: SourceMap = field(default_factory=SourceMap)
    loaded: dict[str, _Loaded | None] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    # Files given as text (a model rebuilt from its saved configuration): path -> text.
    # Data files named by `from_file` need not exist then; saved weights replace them.
    virtual: dict[str, str] = field(default_factory=dict)
    # A saved model's program may import only the files saved with it: nothing else is
    # read from disk (an `import "/dev/zero"` in a planted .keras file reads nothing).
    sealed: bool = False
    max_nodes: int = MAX_NODES  # the elaboration budget of each model


def read_source(path: str, sink: DiagnosticSink, sources: SourceMap, *,
                import_span: Span | None = None, shown: str | None = None) -> str | None:
    """The text of a file, or a diagnostic saying why it cannot be read.

    For an import, ``import_span`` and ``shown`` are the import statement's string and its
    text: a file that is not there is an error of the import, one that is there but cannot
    be decoded an error of the file, with a note at the import.
    """
    if shown is None:
        def fail(message: str) -> None:
            sink.error("bad-file", message, file=path)
        name = path
    else:
        looked = [Note(f"looked for {display_path(path)}")]

        def fail(message: str) -> None:
            sink.error("import-error", message, import_span, notes=looked)
        name = f'"{shown}"'
    if not os.path.exists(path):
        fail(f"no such file: {name}")
        return None
    if os.path.isdir(path):
        fail(f"{name} is a directory, not a .gdl file")
        return None
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            fail(f"{name} is {size} bytes; graphdsl reads files up to {MAX_FILE_BYTES} bytes")
            return None
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        fail(f"cannot read {name}: {exc.strerror or exc}")
        return None
    imported_here = [Note("imported here", import_span)] if import_span is not None else []
    return decode_source(data, path, sink, sources, imported_here)


def decode_source(data: bytes, path: str, sink: DiagnosticSink, sources: SourceMap,
                  notes: Sequence[Note] = ()) -> str | None:
    """UTF-8 text without its byte-order mark, or a `bad-file` diagnostic about ``path``."""
    name = display_path(path)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        sink.error("bad-file", f"{name} is UTF-16 text; save it as UTF-8", file=path,
                   notes=notes)
        return None
    if b"\x00" in data:
        sink.error("bad-file", f"{name} is a binary file, not graphdsl source", file=path,
                   notes=notes)
        return None
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        # Columns count characters, as an editor does, not bytes.
        column = len(data[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        # The text with the bad bytes replaced, so the diagnostic can quote the line.
        sources.add(path, data.decode("utf-8", errors="replace"))
        sink.error("bad-file", f"{name} is not valid UTF-8: byte 0x{data[exc.start]:02x} at "
                   f"line {line}, column {column}", Span(path, line, column, line, column + 1),
                   notes=notes, help="save the file as UTF-8")
        return None


def _load(session: _Session, path: str, text: str | None, import_span: Span | None,
          base_dir: str | None = None, shown: str | None = None) -> _Loaded | None:
    """Parse a file and, first, the files it imports. The root file (``text`` given) keeps
    the name it was given by, imported files their absolute path (diagnostics show it
    relative to the working directory). Every file is keyed by its absolute path, so a file
    importing itself is a cycle at once."""
    key = path if path.startswith("<") else os.path.abspath(path)
    if key in session.stack:
        chain = " -> ".join(os.path.basename(p) for p in [*session.stack, key])
        session.sink.error("import-error", f"import cycle: {chain}", import_span)
        return None
    if key in session.loaded:
        return session.loaded[key]
    if text is None:
        text = session.virtual.get(key)
    if text is None and session.sealed:
        session.sink.error("import-error", f"`{shown or path}` is not one of the files saved "
                           "with this model, and a saved model reads no other file",
                           import_span, help="save the model again from a program whose "
                           "imports it can embed")
        session.loaded[key] = None
        return None
    if text is None:
        text = read_source(key, session.sink, session.sources, import_span=import_span,
                           shown=shown)
        if text is None:
            session.loaded[key] = None
            return None
    session.sources.add(path, text)
    module = parse(text, path, session.sink)
    if module is None:
        session.loaded[key] = None
        return None
    namespace = Namespace(path)
    if base_dir is not None:
        base = base_dir
    else:
        base = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else \
            os.getcwd()
    session.stack.append(key)
    for imp in module.imports:
        target = os.path.normpath(os.path.join(base, imp.path.value))
        loaded = _load(session, target, None, imp.path.span, shown=imp.path.value)
        if loaded is None:
            namespace.failed_imports = True
            if imp.alias is not None:
                namespace.aliases[imp.alias.name] = Namespace(target, failed=True)
            continue
        if imp.names is None:
            if imp.alias is not None:
                namespace.aliases[imp.alias.name] = loaded.namespace
            else:
                for name, d in loaded.namespace.definitions.items():
                    namespace.definitions.setdefault(name, d)
        else:
            for ident in imp.names:
                found = loaded.namespace.definitions.get(ident.name)
                if found is None:
                    namespace.failed_imports = True
                    from .diagnostics import suggestion_help

                    session.sink.error("import-error", f"`{ident.name}` is not defined in "
                                       f"{imp.path.value}", ident.span,
                                       help=suggestion_help(ident.name,
                                                            loaded.namespace.definitions))
                else:
                    namespace.definitions[ident.name] = found
    session.stack.pop()
    own: dict[str, Span] = {}
    for node in module.definitions:
        if node.name.name in own:
            session.sink.error("duplicate-definition", f"`{node.name.name}` is already "
                               "defined", node.name.span,
                               notes=[Note("first defined here", own[node.name.name])])
            continue
        own[node.name.name] = node.name.span
        namespace.definitions[node.name.name] = Definition(node, namespace)
        if node.kind == "block":
            _warn_unread_block_inputs(node, session.sink)
    result = _Loaded(module, namespace, path)
    session.loaded[key] = result
    return result


def compile_text(text: str, file: str = "<string>", *, model: str | None = None,
                 memory_limit: int | None = None, base_dir: str | None = None,
                 files: dict[str, str] | None = None,
                 args: Mapping[str, Any] | None = None,
                 max_nodes: int | None = None) -> Program:
    """Check a program given as text; raise GraphdslError carrying every diagnostic.

    ``files`` gives the text of imported files by absolute path: how a saved model is
    rebuilt from its configuration. With ``files``, nothing at all is read from disk: an
    import that is not among them is an error. ``args`` overrides the
    formals of the selected model (of every model when none is selected): Python values,
    or `CommandLineValue`s for `--set` text (graphdsl/arguments.py).
    """
    session = _Session(virtual=dict(files or {}), sealed=files is not None,
                       max_nodes=max_nodes or MAX_NODES)
    return _compile(session, file, text, model, memory_limit, base_dir, args)


def _root_base(file: str, base_dir: str | None) -> str:
    if base_dir is not None:
        return os.path.abspath(base_dir)
    return os.path.dirname(os.path.abspath(file)) if not file.startswith("<") else os.getcwd()


def compile_path(path: str, *, model: str | None = None,
                 memory_limit: int | None = None,
                 args: Mapping[str, Any] | None = None) -> Program:
    session = _Session()
    text = read_source(path, session.sink, session.sources)
    if text is None:
        raise GraphdslError(session.sink.sorted(), session.sources)
    return _compile(session, path, text, model, memory_limit, None, args)


def _compile(session: _Session, file: str, text: str, model: str | None,
             memory_limit: int | None, base_dir: str | None,
             args: Mapping[str, Any] | None = None) -> Program:
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 20_000))
    # The compiler allocates many small objects and frees nothing until it returns: the
    # cyclic collector's passes are pure overhead here (about a quarter of parse time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        base_dir = _root_base(file, base_dir)
        loaded = _load(session, file, text, None, base_dir=base_dir)
        models: dict[str, ModelGraph] = {}
        if loaded is not None and not (loaded.module.imports or loaded.module.definitions or
                                       loaded.module.trains):
            session.sink.error("bad-file", f"{file} is empty: it defines no model, block or "
                               "train block", file=file)
        elif loaded is not None:
            arguments = ModelArguments(args or {}, session.sources)
            models = _elaborate(session, loaded, model, memory_limit, base_dir, arguments)
    finally:
        sys.setrecursionlimit(old_limit)
        if collecting:
            gc.enable()
    diagnostics = session.sink.sorted()
    if any(d.is_error for d in diagnostics):
        raise GraphdslError(diagnostics, session.sources)
    return Program(models, diagnostics, session.sources, file, base_dir or ".")


def _elaborate(session: _Session, loaded: _Loaded, only: str | None,
               memory_limit: int | None, base_dir: str,
               arguments: ModelArguments) -> dict[str, ModelGraph]:
    module = loaded.module
    defs = {d.name.name: d for d in module.definitions}
    all_models = {d.name.name: d for d in module.definitions if d.kind == "model"}
    trains: dict[str, ast.TrainDef] = {}
    for t in module.trains:
        if t.model.name in trains:
            session.sink.error("duplicate-definition", f"model `{t.model.name}` has two train "
                               "blocks", t.model.span,
                               notes=[Note("the first is here", trains[t.model.name].span)])
            continue
        target = defs.get(t.model.name)
        if target is None or target.kind != "model":
            from .diagnostics import suggestion_help

            visible = loaded.namespace.definitions.get(t.model.name)
            if visible is not None and visible.node.kind == "block":
                session.sink.error("unknown-model", f"`{t.model.name}` is a block, not a model; "
                                   "train a model that uses it", t.model.span,
                                   notes=[Note("the block is defined here",
                                               visible.node.name.span)])
                continue
            session.sink.error("unknown-model", f"`train {t.model.name}`: no model named "
                               f"`{t.model.name}`", t.model.span,
                               help=suggestion_help(t.model.name, all_models))
            continue
        trains[t.model.name] = t
    if only is not None and only not in all_models:
        from .diagnostics import suggestion_help

        session.sink.error("unknown-model", f"no model named `{only}` in {loaded.path}", None,
                           help=suggestion_help(only, all_models) or
                           ("models: " + ", ".join(all_models) if all_models else
                            "the file defines no model"))
        return {}
    models: dict[str, ModelGraph] = {}
    wanted = _with_submodels(only, all_models) if only is not None else set(all_models)
    # Arguments from outside go to the selected model; with none selected, to every model
    # of the file that declares them. Models it uses as layers keep their own defaults.
    selected = [all_models[only]] if only is not None else list(all_models.values())
    if arguments:
        arguments.check_names(selected, session.sink)
    for name, node in all_models.items():
        if name not in wanted:
            continue
        definition = loaded.namespace.definitions.get(name)
        if not isinstance(definition, Definition) or definition.node is not node:
            continue
        given: dict[str, Any] = {}
        if arguments and any(node is s for s in selected):
            definition = Definition(arguments.apply(node), definition.namespace)
            given = arguments.for_model(node)
        elaborator = Elaborator(session.sink, loaded.namespace, all_models, base_dir,
                                max_nodes=session.max_nodes)
        elaborator.missing_files_ok = bool(session.virtual)
        graph = elaborator.model(definition)
        graph.arguments = given
        train = trains.get(name)
        if train is not None:
            graph.train = check_train_block(train, graph, session.sink, base_dir, elaborator)
        run_checks(graph, session.sink,
                   memory_limit=memory_limit if memory_limit is not None else
                   machine_memory())
        models[name] = graph
    return models


def _with_submodels(name: str, all_models: dict[str, ast.Definition]) -> set[str]:
    """A model and the models of this file it uses as layers (they can be used alone)."""
    wanted, stack = set(), [name]
    while stack:
        current = stack.pop()
        if current in wanted or current not in all_models:
            continue
        wanted.add(current)
        used = _names_used(all_models[current])
        stack.extend(n for n in all_models if n != current and n in used)
    return wanted


def _names_used(node: ast.Definition) -> set[str]:
    """Every name an expression of the definition's body reads (the dimensions of tensor
    types are sizes, not reads)."""
    import dataclasses

    found: set[str] = set()
    pending: list[Any] = list(node.body)
    while pending:
        item = pending.pop()
        if isinstance(item, ast.Name):
            found.add(item.id)
        if isinstance(item, ast.TensorTypeExpr):
            continue
        if dataclasses.is_dataclass(item):
            pending.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, tuple):
            pending.extend(item)
    return found


def _warn_unread_block_inputs(node: ast.Definition, sink: DiagnosticSink) -> None:
    """A block input that its body never reads: the caller's tensor goes nowhere. (A model's
    unused inputs are found on its graph, which also sees inputs read but dropped.)"""
    read = _names_used(node)
    # A misspelt read (`xx` for `x`) is reported as an unknown name; the input it meant is
    # not also unused.
    bound = {t.name for s in node.body if isinstance(s, ast.Assign) for t in s.targets} | \
        {s.name.name for s in node.body if isinstance(s, (ast.InputStmt, ast.LayerStmt))} | \
        {f.name.name for f in node.formals}
    for name in read - bound:
        read.update(did_you_mean(name, [s.name.name for s in node.body
                                        if isinstance(s, ast.InputStmt)]))
    for stmt in node.body:
        if isinstance(stmt, ast.InputStmt) and stmt.name.name not in read:
            sink.warning("unused-input", f"input `{stmt.name.name}` of block "
                         f"`{node.name.name}` is never used", stmt.name.span,
                         help="remove it (and the argument that callers pass for it), or use "
                         "it")


def program_json(program: Program | None, diagnostics: list[Diagnostic]) -> dict[str, Any]:
    from .ir.summary import model_json

    return {
        "ok": not any(d.is_error for d in diagnostics),
        "diagnostics": [d.to_json() for d in diagnostics],
        "models": [model_json(m) for m in program.models.values()] if program else [],
    }
