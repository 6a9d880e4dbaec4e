"""Documentation generated from the compiler's own tables, and the checks that keep docs/ true.

    python -m graphdsl.docgen            # rewrite docs/ops.md and every generated part of docs/
    python -m graphdsl.docgen --check    # exit 1 if any of it is stale or an example is wrong

What is generated:

- ``docs/ops.md``, whole: one table per op family from the op registry, then the
  specification tables (activations, initialisers, ...). See :func:`ops_markdown`.
- Regions of hand-written pages between ``<!-- begin generated: NAME -->`` and
  ``<!-- end generated: NAME -->``; NAME is a key of :data:`REGIONS`.
- Output blocks: a fenced block right after ``<!-- output -->`` holds what
  ``graphdsl compile`` prints for the nearest ``gdl`` block above it;
  after ``<!-- output: FILE -->`` it holds the output for ``docs/examples/FILE``.

What is checked (:func:`example_problems`): every ``gdl`` block compiles with no
diagnostic at all, unless an ``<!-- expect: CODE -->`` comment right above it says it
must produce exactly the diagnostic code CODE (and nothing else); a block under
``<!-- file: NAME -->`` must be a verbatim copy of ``docs/examples/NAME``.

Examples compile as if they were files in ``docs/examples`` (imports and data paths
resolve there), and rendered output shows paths relative to that folder, as when
running ``graphdsl compile`` inside it. Only the core is imported: no framework.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compiler import Program, compile_path, compile_text
from .diagnostics import Diagnostic, GraphdslError, SourceMap, render_all, summary_line
from .elaborate.train_block import CHOICES, SETTINGS
from .errorcodes import CODES
from .ops import FAMILIES, REQUIRED, all_ops
from .ops import registry as registry_module
from .ops.elementwise import OPERATORS
from .ops.registry import LAYER_ARGS, Arg, In, OpDef, ParamSpec
from .ops.specs import SPEC_TABLES, SpecDef

DEFAULT_DOCS = Path(__file__).resolve().parent.parent / "docs"
DOCS_MEMORY_LIMIT = 64 * 1024**3
EXAMPLE_NAME = "example.gdl"  # the file name an inline example compiles under
OUTPUT_WIDTH = 160  # the width `graphdsl compile` uses when its output is not a terminal

# --- markdown helpers --------------------------------------------------------------------


def md_text(text: str) -> str:
    """Text made safe for a markdown table cell; `code spans` in it stay code."""
    parts = re.split(r"(`[^`]*`)", text)
    for i, part in enumerate(parts):
        if i % 2:
            parts[i] = part.replace("|", "\\|")
            continue
        for ch in "\\*_[]<>|":
            part = part.replace(ch, "\\" + ch)
        parts[i] = part
    return "".join(parts)


def md_code(text: str) -> str:
    """Inline code that is safe inside a table cell (GFM splits cells on `|` even there)."""
    return "`" + text.replace("|", "\\|") + "`"


def dsl_value(value: Any) -> str:
    """A Python default as the language writes it: true, false, "same", [1, 2]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dsl_value(v) for v in value) + "]"
    return repr(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def docstring_items(doc: str, title: str) -> dict[str, str]:
    """The ``- ``name``: meaning`` items under a line starting with ``title`` in a docstring."""
    items: dict[str, str] = {}
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    current = None
    for line in lines[start + 1:]:
        match = re.match(r"- ``([^`]+)``: (.*)", line)
        if match:
            current = match.group(1)
            items[current] = match.group(2).strip()
        elif current and line.startswith("  ") and line.strip():
            items[current] += " " + line.strip()
        else:
            break
    return items


# --- the op tables -----------------------------------------------------------------------


def _input_cell(i: In) -> str:
    flags = [f for f, on in (("optional", i.optional), ("variadic", i.variadic)) if on]
    text = f"{md_code(i.name)}: {i.dtypes}"
    if flags:
        text += " (" + ", ".join(flags) + ")"
    if i.doc:
        text += " — " + md_text(i.doc)
    return text


def _arg_cell(a: Arg, at_call: bool = False) -> str:
    text = f"{md_code(a.name)}: {a.kind}"
    if a.required:
        text += ", required"
    elif a.default is None:
        text += ", optional"
    elif a.kind in SPEC_TABLES and isinstance(a.default, str):
        text += " = " + md_code(a.default)  # a spec is written as a bare name: relu
    else:
        text += " = " + md_code(dsl_value(a.default))
    if a.choices:
        text += ", one of " + ", ".join(md_code(dsl_value(c)) for c in a.choices)
    if at_call:
        text += " (given at the call)"
    if a.doc:
        text += " — " + md_text(a.doc)
    return text


def _param_cell(p: ParamSpec) -> str:
    text = f"{md_code(p.name)} {md_code(p.layout)}, {p.role}, init {md_code(p.init)}"
    if p.when is not None:
        text += " (only with some arguments)"
    return text


def _op_row(op: OpDef) -> list[str]:
    kind = op.kind + (" (random)" if op.random else "")
    inputs = "<br>".join(_input_cell(i) for i in op.inputs) or "—"
    args = [_arg_cell(a) for a in op.args] + [_arg_cell(a, at_call=True) for a in op.call_args]
    params = "<br>".join(_param_cell(p) for p in op.params) or "—"
    mask = md_code(op.mask) + (" (conditional)" if op.mask_keep is not None else "")
    definition = md_text(op.summary)
    if op.canonical:
        definition += "<br>" + md_text(op.canonical)
    return [md_code(op.name), kind, inputs, "<br>".join(args) or "—", params, mask, definition]


SPEC_INTROS = {
    "activation": "Given as `activation = relu` (a name or a string); each is also a function "
                  "of the same name.",
    "initializer": "Given as `kernel_initializer = he_normal()` (or a bare name) and after `=` "
                   "in a `param` statement. For a kernel `[..., in, out]`, fan_in and fan_out "
                   "are `in` and `out` times the product of the leading dimensions (Keras' "
                   "rule).",
    "constraint": "Given as `kernel_constraint = non_neg()` or after `constrain` in a `param` "
                  "statement. `mode = \"project\"`: the backend projects the parameter after "
                  "every optimizer step. `mode = \"reparam\"`: the stored tensor is "
                  "unconstrained and the constraint is applied where it is used.",
    "regularizer": "Given as `kernel_regularizer = l2(0.01)`. Each adds a loss term named "
                   "`<parameter>.l1` or `<parameter>.l2` whose weight is the factor.",
    "optimizer": "Used in a train block: `optimizer <pattern> = adamw(lr = 2e-5)`.",
    "schedule": "Used in a train block: `schedule = cosine(warmup = 100)`. The optional "
                "`warmup` raises the rate linearly from 0 over that many steps first.",
}
SPEC_TITLES = {"activation": "Activations", "initializer": "Initializers",
               "constraint": "Constraints", "regularizer": "Regularizers",
               "optimizer": "Optimizers", "schedule": "Learning-rate schedules"}


def _spec_arg(name: str, default: Any) -> str:
    if default is REQUIRED:
        return md_code(name) + " (required)"
    if default is None:
        return md_code(name) + " (optional)"
    return md_code(f"{name} = {dsl_value(default)}")


def _spec_args(spec: SpecDef) -> str:
    return ", ".join(_spec_arg(n, d) for n, d in spec.args.items()) or "—"


def specs_markdown(level: int = 2) -> str:
    """One table per kind of specification: name, arguments with defaults, definition."""
    hashes = "#" * level
    parts = []
    for kind, specs in SPEC_TABLES.items():
        rows = [[md_code(s.name), _spec_args(s), md_text(s.canonical)] for s in specs.values()]
        parts.append(f"{hashes} {SPEC_TITLES[kind]}\n\n{SPEC_INTROS[kind]}\n\n"
                     + table(["name", "arguments", "definition"], rows))
    return "\n".join(parts)


def ops_markdown() -> str:
    """docs/ops.md: every op of the registry, by family, then the specification tables."""
    ops = all_ops()
    doc = registry_module.__doc__ or ""
    kinds = docstring_items(doc, "Op kinds")
    masks = docstring_items(doc, "Mask rules")
    out = ["# Ops and specifications\n",
           "<!-- Generated by `python -m graphdsl.docgen` from the op registry "
           "(graphdsl/ops/) and graphdsl/ops/specs.py. Do not edit by hand. -->\n",
           f"graphdsl has {len(ops)} ops in {len(FAMILIES)} families. Each row says what the "
           "checker enforces and what every backend implements exactly.\n",
           "**Kinds.** " + " ".join(f"`{k}`: {v}" for k, v in kinds.items())
           + " *(random)* marks an op that behaves differently in training and inference.\n",
           "**Inputs** are tensors; the type after the name is the element type the op "
           "accepts: `float`, `int`, `bool`, `number` (int or float) or `any`. An *optional* "
           "input may be left out; a *variadic* one takes any number of tensors, written "
           "`concat(a, b)` or `concat([a, b])`.\n",
           "**Arguments** are constants, given positionally in the order shown or by name. A "
           "layer's arguments are given when it is constructed (`Dense(10)`), except those "
           "marked *given at the call*. *optional* means the argument may be left out.\n",
           "**Every layer** also takes " + ", ".join(
               f"`{a.name}` ({md_text(a.doc)})" for a in LAYER_ARGS)
           + ", and for each weight `p` the arguments `p_initializer`, `p_constraint`, "
           "`p_regularizer` and `p_mask` (a fixed 0/1 pattern), or `p = <tensor>` to tie "
           "or structure it. See the language reference.\n",
           "**Parameters** show their canonical layout (the checkpoint layout), whether they "
           "are trained weights or *state* (updated by the layer itself, never by an "
           "optimizer), and their default initializer.\n",
           "**Mask rules** say how a padding mask on an input reaches the output: "
           + " ".join(f"`{k}`: {v}" for k, v in masks.items())
           + " *(conditional)*: the output keeps the mask only when it still has the batch "
           "and step axes that the mask covers (for example LSTM with `return_sequences`, "
           "or a reduction that keeps axes 0 and 1).\n",
           "**Families:** " + ", ".join(f"[{f}](#{f})" for f in FAMILIES)
           + "; then the [specifications](#specifications).\n"]
    header = ["op", "kind", "inputs", "arguments", "parameters", "mask", "definition"]
    for family in FAMILIES:
        rows = [_op_row(op) for op in ops if op.family == family]
        out.append(f"## {family}\n\n" + table(header, rows))
    out.append("## Specifications\n\nNamed specifications are arguments rather than ops. "
               "Their arguments are constants, given positionally in the order shown or by "
               "name: `normal(0, 0.1)`, `normal(stddev = 0.1)`.\n")
    out.append(specs_markdown(level=3))
    return "\n".join(out)


def settings_markdown() -> str:
    """The train block's settings (graphdsl/elaborate/train_block.py)."""
    rows = []
    for name, (kind, default, meaning) in SETTINGS.items():
        shown = "—" if default is None else md_code(dsl_value(default))
        if name in CHOICES:
            kind = "one of " + ", ".join(md_code(dsl_value(c)) for c in CHOICES[name])
        rows.append([md_code(name), kind, shown, md_text(meaning)])
    return table(["setting", "kind", "default", "meaning"], rows)


def codes_markdown() -> str:
    """Every diagnostic code with its one-line meaning, linked to its section."""
    return table(["code", "meaning"],
                 [[f"[`{code}`](#{code})", md_text(meaning)] for code, meaning in CODES.items()])


def operators_markdown() -> str:
    """Each operator of the language and the op it means."""
    return table(["operator", "op"],
                 [[md_code(sym), f"[`{op}`](ops.md#{_family_of(op)})"]
                  for sym, op in OPERATORS.items()])


def _family_of(op_name: str) -> str:
    return next(op.family for op in all_ops() if op.name == op_name)


REGIONS: dict[str, Callable[[], str]] = {
    "specs": lambda: specs_markdown(level=3),
    "settings": settings_markdown,
    "codes": codes_markdown,
    "operators": operators_markdown,
}

# --- blocks of the hand-written pages ----------------------------------------------------

_FENCE = re.compile(r"^```([\w-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*([\w-]+)(?::\s*(.*?))?\s*-->\s*$")


@dataclass
class Block:
    """A fenced block of a markdown page, with the marker comments right above it."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str  # the content, each line ending in "\n"
    markers: dict[str, str] = field(default_factory=dict)
    start: int = 0  # index of the first content line in the page's lines
    end: int = 0  # index of the closing fence

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def blocks(page: Path, text: str | None = None) -> list[Block]:
    """Every top-level fenced block of a page, in order."""
    lines = (page.read_text("utf-8") if text is None else text).splitlines(keepends=True)
    found = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        close = i + 1
        while close < len(lines) and lines[close].rstrip() != "```":
            close += 1
        markers: dict[str, str] = {}
        j = i - 1
        while j >= 0 and _MARKER.match(lines[j]):
            m = _MARKER.match(lines[j])
            assert m is not None
            markers.setdefault(m.group(1), (m.group(2) or "").strip())
            j -= 1
        found.append(Block(page, i + 1, match.group(1), "".join(lines[i + 1:close]), markers,
                           i + 1, close))
        i = close + 1
    return found


def gdl_blocks(docs: Path) -> list[Block]:
    return [b for page in sorted(docs.glob("*.md")) for b in blocks(page) if b.lang == "gdl"]


# --- compiling examples ------------------------------------------------------------------


@dataclass
class Compiled:
    diagnostics: list[Diagnostic]
    program: Program | None
    sources: SourceMap

    @property
    def codes(self) -> set[str]:
        return {d.code for d in self.diagnostics}


def compile_example(examples: Path, text: str | None, name: str = EXAMPLE_NAME) -> Compiled:
    """Compile an example as the file ``examples/name`` (from disk when text is None)."""
    path = str(examples.resolve() / name)
    try:
        # The default limit is the machine's memory; the pages show a 64 GiB machine.
        program = compile_path(path, memory_limit=DOCS_MEMORY_LIMIT) if text is None \
            else compile_text(text, path, memory_limit=DOCS_MEMORY_LIMIT)
    except GraphdslError as err:
        return Compiled(list(err.diagnostics), None, err.sources)
    return Compiled(program.diagnostics, program, program.sources)


def compile_output(compiled: Compiled, examples: Path) -> str:
    """What `graphdsl compile` prints (no colour, paths relative to ``examples``)."""
    from rich.console import Console

    from .ir.summary import print_model

    text = ""
    if compiled.diagnostics:
        text += render_all(compiled.diagnostics, compiled.sources, color=False)
        text += summary_line(compiled.diagnostics) + "\n"
    if compiled.program is not None:
        stream = io.StringIO()
        console = Console(file=stream, width=OUTPUT_WIDTH, color_system=None, no_color=True,
                          force_terminal=False, highlight=False, legacy_windows=False)
        for model in compiled.program.models.values():
            print_model(model, console)
        text += stream.getvalue()
    for prefix in _path_prefixes(examples):
        text = text.replace(prefix, "")
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def _path_prefixes(examples: Path) -> list[str]:
    """How paths into ``examples`` can appear in messages: absolute, or relative to the cwd."""
    prefixes = [str(examples.resolve()) + os.sep]
    try:
        relative = os.path.relpath(examples.resolve())
    except ValueError:  # another drive on Windows
        return prefixes
    if relative != ".":
        prefixes.append(relative + os.sep)
    return prefixes


def _example_name(block: Block) -> str:
    return block.markers.get("file") or EXAMPLE_NAME


def example_problems(block: Block, examples: Path) -> list[str]:
    """What is wrong with a gdl block (empty when it is right)."""
    problems = []
    name = block.markers.get("file")
    if name is not None:
        path = examples / name
        if not path.is_file():
            problems.append(f"{block.where}: `file: {name}` names no file in {examples}")
        elif path.read_text("utf-8") != block.text:
            problems.append(f"{block.where}: the block is not a verbatim copy of {path}")
    compiled = compile_example(examples, block.text, _example_name(block))
    problems += _expectation_problems(block, compiled)
    return problems


def _expectation_problems(block: Block, compiled: Compiled) -> list[str]:
    expected = block.markers.get("expect")
    shown = ", ".join(sorted(compiled.codes)) or "no diagnostic"
    if expected is None:
        if compiled.diagnostics:
            first = compiled.diagnostics[0]
            return [f"{block.where}: expected a clean compile, got {shown} "
                    f"(first: {first.span}: {first.message})"]
        return []
    if expected not in CODES:
        return [f"{block.where}: `expect: {expected}` is not a diagnostic code"]
    if compiled.codes != {expected}:
        return [f"{block.where}: expected exactly [{expected}], got {shown}"]
    return []


# --- refreshing the generated parts ------------------------------------------------------


def refresh_page(page: Path, examples: Path, text: str | None = None) -> str:
    """The page with its generated regions and output blocks brought up to date."""
    text = page.read_text("utf-8") if text is None else text
    text = _refresh_regions(text, page)
    lines = text.splitlines(keepends=True)
    last_gdl: Block | None = None
    replacements: list[tuple[Block, str]] = []
    for block in blocks(page, text):
        if block.lang == "gdl":
            last_gdl = block
        if "output" not in block.markers:
            continue
        source = block.markers["output"]
        if source:
            compiled = compile_example(examples, None, source)
        elif last_gdl is not None:
            compiled = compile_example(examples, last_gdl.text, _example_name(last_gdl))
        else:
            raise ValueError(f"{block.where}: `<!-- output -->` with no gdl block above it")
        replacements.append((block, compile_output(compiled, examples)))
    for block, new in reversed(replacements):
        lines[block.start:block.end] = [new]
    return "".join(lines)


def _refresh_regions(text: str, page: Path) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in REGIONS:
            raise ValueError(f"{page.name}: unknown generated region `{name}`; known: "
                             + ", ".join(REGIONS))
        return (f"<!-- begin generated: {name} -->\n{REGIONS[name]().rstrip()}\n"
                f"<!-- end generated: {name} -->")

    return re.sub(r"<!-- begin generated: ([\w-]+) -->\n.*?<!-- end generated: \1 -->", fill,
                  text, flags=re.S)


def output_expectation_problems(page: Path, examples: Path) -> list[str]:
    """`<!-- expect: CODE -->` above an `<!-- output: FILE -->` block: FILE gives CODE."""
    problems = []
    for block in blocks(page):
        if block.markers.get("output") and "expect" in block.markers:
            compiled = compile_example(examples, None, block.markers["output"])
            problems += _expectation_problems(block, compiled)
    return problems


def generated_files(docs: Path) -> dict[Path, str]:
    """Every file under docs/ whose content is (partly) generated, with its right content."""
    examples = docs / "examples"
    wanted = {docs / "ops.md": ops_markdown()}
    for page in sorted(docs.glob("*.md")):
        if page.name != "ops.md":
            wanted[page] = refresh_page(page, examples)
    return wanted


def stale_files(docs: Path) -> list[Path]:
    return [path for path, text in generated_files(docs).items()
            if not path.is_file() or path.read_text("utf-8") != text]


def all_problems(docs: Path) -> list[str]:
    examples = docs / "examples"
    problems = [p for b in gdl_blocks(docs) for p in example_problems(b, examples)]
    for page in sorted(docs.glob("*.md")):
        problems += output_expectation_problems(page, examples)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphdsl.docgen",
                                     description="Write or check the generated parts of docs/.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if anything is stale or an example is wrong")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS,
                        help=f"the docs folder (default: {DEFAULT_DOCS})")
    args = parser.parse_args(argv)
    docs: Path = args.docs
    if not (docs / "examples").is_dir():
        sys.stderr.write(f"docgen: error: {docs} is not a docs folder (no examples/ in it)\n")
        return 2
    try:
        wanted = generated_files(docs)
    except ValueError as exc:
        sys.stderr.write(f"docgen: error: {exc}\n")
        return 1
    stale = [p for p, text in wanted.items() if not p.is_file() or p.read_text("utf-8") != text]
    if not args.check:
        for path in stale:
            path.write_text(wanted[path], "utf-8")
            print(f"wrote {path}")
    problems = all_problems(docs)
    for problem in problems:
        sys.stderr.write(f"docgen: {problem}\n")
    if args.check:
        for path in stale:
            sys.stderr.write(f"docgen: {path} is stale; run `python -m graphdsl.docgen`\n")
        return 1 if stale or problems else 0
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
