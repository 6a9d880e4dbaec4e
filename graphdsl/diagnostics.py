"""Diagnostics are data: collected by every stage, sorted, deduplicated, rendered once.

A diagnostic renders as ``file:line:col: error: message  [code]``, then the source
line with ``^~~~`` under the span, then notes (each with its own position) and a
help line. The same data is available as JSON for editors and tools.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

from .errorcodes import CODES

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True, order=True)
class Span:
    """A region of one source file; lines and columns are 1-based, ends inclusive-exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
        }


@dataclass(frozen=True)
class Note:
    message: str
    span: Span | None = None


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    span: Span | None = None
    notes: tuple[Note, ...] = ()
    help: str | None = None
    # The file a diagnostic without a position is about (one that cannot be read at all):
    # rendered `file: error: ...`, as mypy and gcc do, so the name stays first on the line.
    file: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unregistered diagnostic code {self.code!r}")

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @property
    def location(self) -> str | None:
        """`file:line:col`, or `file` alone, or None for a diagnostic about no file."""
        return str(self.span) if self.span else self.file

    @property
    def shown_location(self) -> str | None:
        """The location as printed: an absolute path below the working directory is shown
        relative to it."""
        if self.span:
            return shown_span(self.span)
        return display_path(self.file) if self.file else None

    def sort_key(self) -> tuple[Any, ...]:
        span = self.span
        where = (span.file, span.line, span.column) if span else (self.file or "", 0, 0)
        return (*where, self.severity != "error", self.code, self.message)

    def to_json(self) -> dict[str, Any]:
        whole_file = {"file": self.file} if self.span is None and self.file else {}
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "span": self.span.to_json() if self.span else None,
            **whole_file,
            "notes": [
                {"message": n.message, "span": n.span.to_json() if n.span else None}
                for n in self.notes
            ],
            "help": self.help,
        }


class GraphdslError(Exception):
    """The one exception type of the public API: it carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: SourceMap | None = None):
        self.diagnostics = tuple(diagnostics)
        self.sources = sources or SourceMap()
        errors = [d for d in self.diagnostics if d.is_error]
        first = errors[0] if errors else (self.diagnostics[0] if self.diagnostics else None)
        summary = (f"{first.location + ': ' if first.location else ''}{first.message} "
                   f"[{first.code}]") if first else "failed"
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        super().__init__(summary + more)

    def render(self, color: bool = False) -> str:
        return render_all(self.diagnostics, self.sources, color=color)


class SourceMap:
    """The text of every file a compilation read, so diagnostics can quote it."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str]] = {}
        self.texts: dict[str, str] = {}

    def add(self, name: str, text: str) -> None:
        # Lines end at \n only, as the lexer counts them: a form feed or U+2028 inside a
        # comment does not start a new line.
        self._lines[name] = [line.removesuffix("\r") for line in text.split("\n")]
        self.texts[name] = text

    def line(self, name: str, number: int) -> str | None:
        lines = self._lines.get(name)
        if lines is None or not 1 <= number <= len(lines):
            return None
        return lines[number - 1]


class DiagnosticSink:
    """Collects diagnostics from every pass; nothing is raised half-way."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.error_count = 0

    def error(self, code: str, message: str, span: Span | None = None, *,
              notes: Iterable[Note] = (), help: str | None = None,
              file: str | None = None) -> None:
        self.error_count += 1
        self.items.append(Diagnostic("error", code, message, span, tuple(notes), help, file))

    def warning(self, code: str, message: str, span: Span | None = None, *,
                notes: Iterable[Note] = (), help: str | None = None,
                file: str | None = None) -> None:
        self.items.append(Diagnostic("warning", code, message, span, tuple(notes), help,
                                     file))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            self.error_count += d.is_error
            self.items.append(d)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        seen: set[tuple[Any, ...]] = set()
        unique = []
        for d in sorted(self.items, key=Diagnostic.sort_key):
            # One line that a loop or a `repeat` runs several times, each time with other
            # values, is one mistake: same code, place and notes is the same diagnostic.
            # (A block called twice differs in its call-site notes: each call is reported.)
            # Same code, place and message is the same diagnostic too (a block's default
            # that is wrong in each call).
            keys = {("notes", d.severity, d.code, d.span, d.file, tuple(n.span for n in d.notes)),
                    ("message", d.code, d.message, d.span, d.file)}
            if not keys & seen:
                seen |= keys
                unique.append(d)
        return unique


def source_text(value: Any) -> str:
    """A constant as it is written in a program: strings in double quotes, `true`/`false`,
    lists in brackets (Python's repr would show 'single quotes' and True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(source_text(v) for v in value) + "]"
    return repr(value)


def display_path(path: str) -> str:
    """A file as diagnostics name it: an absolute path below the working directory
    relative to it (as mypy and rustc print paths); any other path as it is."""
    if not os.path.isabs(path):
        return path
    try:
        relative = os.path.relpath(path)
    except (OSError, ValueError):  # no working directory, or another drive
        return path
    outside = relative == os.pardir or relative.startswith(os.pardir + os.sep)
    return path if outside else relative


def shown_span(span: Span) -> str:
    return f"{display_path(span.file)}:{span.line}:{span.column}"


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches by difflib ratio, the way mypy's best_matches does it."""
    pool = sorted(set(candidates))
    by_case = {c.lower(): c for c in pool}
    exact_case = by_case.get(word.lower())
    if exact_case and exact_case != word:
        return [exact_case]
    return difflib.get_close_matches(word, pool, n=n, cutoff=0.6)


def choice_help(value: Any, choices: Iterable[Any]) -> str | None:
    """`did you mean "same"?` for a misspelt string among a fixed set of choices."""
    if not isinstance(value, str):
        return None
    close = did_you_mean(value, [c for c in choices if isinstance(c, str)], n=1)
    return f"did you mean {source_text(close[0])}?" if close else None


def suggestion_help(word: str, candidates: Iterable[str]) -> str | None:
    matches = did_you_mean(word, candidates)
    if not matches:
        return None
    return "did you mean " + " or ".join(f"`{m}`" for m in matches) + "?"


# --- rendering -------------------------------------------------------------------------

_STYLE = {"error": "bold red", "warning": "bold yellow", "note": "bold cyan"}


def _caret_line(source_line: str, span: Span) -> tuple[str, str]:
    """The gutter-free text under the source line: spaces, then ``^~~~`` under the span."""
    start = max(span.column - 1, 0)
    if span.end_line == span.line:
        width = max(span.end_column - span.column, 1)
    else:
        width = max(len(source_line) - start, 1)
    prefix = "".join("\t" if ch == "\t" else " " for ch in source_line[:start])
    return prefix, "^" + "~" * (width - 1)


def render(diag: Diagnostic, sources: SourceMap, color: bool = False) -> str:
    from rich.console import Console
    from rich.text import Text

    out = Text()
    where = f"{diag.shown_location}: " if diag.shown_location else ""
    out.append(where, style="bold")
    out.append(f"{diag.severity}:", style=_STYLE[diag.severity])
    out.append(f" {diag.message}  [{diag.code}]\n")
    _append_quote(out, diag.span, sources, _STYLE[diag.severity])
    for note in diag.notes:
        out.append("  ")
        if note.span:
            out.append(f"{shown_span(note.span)}: ", style="bold")
        out.append("note:", style=_STYLE["note"])
        out.append(f" {note.message}\n")
        _append_quote(out, note.span, sources, _STYLE["note"], indent="  ")
    if diag.help:
        out.append("  = ")
        out.append("help:", style="bold")
        out.append(f" {diag.help}\n")
    console = Console(
        file=_NullIO(), force_terminal=color, no_color=not color, width=10_000,
        highlight=False, soft_wrap=True, color_system="standard" if color else None,
    )
    with console.capture() as capture:
        console.print(out, end="")
    return capture.get()


# A longer source line is quoted in part: this many characters around the span.
QUOTE_WIDTH = 160
_ELLIPSIS = "..."


def _quote_window(text: str, span: Span) -> tuple[str, Span]:
    """The part of a long line worth quoting, and the span moved to match it."""
    if len(text) <= QUOTE_WIDTH:
        return text, span
    start = max(0, min(span.column - 1 - QUOTE_WIDTH // 2, len(text) - QUOTE_WIDTH))
    end = start + QUOTE_WIDTH
    before = _ELLIPSIS if start > 0 else ""
    after = _ELLIPSIS if end < len(text) else ""
    shift = start - len(before)
    end_column = span.end_column if span.end_line == span.line else len(text) + 1
    end_column = min(end_column, end + 1)
    moved = Span(span.file, span.line, span.column - shift, span.line, end_column - shift)
    return before + text[start:end] + after, moved


def _append_quote(out: Any, span: Span | None, sources: SourceMap, style: str,
                  indent: str = "") -> None:
    if span is None:
        return
    text = sources.line(span.file, span.line)
    if text is None:
        return
    text, span = _quote_window(text.rstrip("\n"), span)
    gutter = f"{span.line:>5} | "
    out.append(f"{indent}{gutter}", style="blue")
    out.append(text + "\n")
    prefix, carets = _caret_line(text, span)
    out.append(indent + " " * (len(gutter) - 2) + "| ", style="blue")
    out.append(prefix)
    out.append(carets + "\n", style=style)


class _NullIO(io.StringIO):
    """Rich renders into a capture; nothing reaches this file."""


def render_all(diagnostics: Sequence[Diagnostic], sources: SourceMap, color: bool = False) -> str:
    return "".join(render(d, sources, color) for d in diagnostics)


def summary_line(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = sum(d.severity == "warning" for d in diagnostics)
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' * (errors != 1)}")
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    return ", ".join(parts) if parts else "no issues"


def use_color(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def dump_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2)


def print_diagnostics(diagnostics: Sequence[Diagnostic], sources: SourceMap,
                      stream: IO[str] | None = None) -> None:
    stream = stream or sys.stderr
    stream.write(render_all(diagnostics, sources, color=use_color(stream)))


__all__ = [
    "Diagnostic", "DiagnosticSink", "GraphdslError", "Note", "Severity", "SourceMap", "Span",
    "choice_help", "did_you_mean", "display_path", "dump_json", "print_diagnostics", "render",
    "render_all", "source_text", "suggestion_help", "summary_line", "use_color",
]


def report(diagnostics: Sequence[Diagnostic], sources: SourceMap) -> None:
    """Print diagnostics and their summary line to stderr (nothing when there are none)."""
    if diagnostics:
        print_diagnostics(diagnostics, sources, sys.stderr)
        sys.stderr.write(summary_line(diagnostics) + "\n")
