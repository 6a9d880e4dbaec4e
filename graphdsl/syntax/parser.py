"""Source text -> syntax tree, with syntax errors in human words.

The tree builder is non-recursive, so a long operator chain cannot overflow Python's
stack; bracket nesting is capped before parsing.
After an error the offending line is blanked and the parse retried, so one run
reports several syntax errors.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Token, v_args
from lark.visitors import Transformer_NonRecursive

from graphdsl.diagnostics import DiagnosticSink, Note, Span
from graphdsl.syntax import tree as ast

MAX_NESTING = 200
MAX_SYNTAX_ERRORS = 10
# Past this size a file gets its first syntax error only: each retry re-parses it whole.
RECOVERY_SIZE_LIMIT = 200_000


def _grammar_text() -> str:
    try:
        return resources.files("graphdsl.grammar").joinpath("graphdsl.lark").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # running from a checkout, not installed
        return (Path(__file__).resolve().parents[2] / "grammar" / "graphdsl.lark").read_text()


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(
        _grammar_text(),
        parser="lalr",
        lexer="basic",  # keywords are reserved everywhere, which keeps error messages plain
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )


def _token_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line or 1, tok.column or 1, tok.end_line or tok.line or 1,
                tok.end_column or (tok.column or 1) + len(tok))


def _unquote(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text[1:-1]
    return value if isinstance(value, str) else text[1:-1]


@v_args(meta=True)
class _TreeBuilder(Transformer_NonRecursive):
    """Grammar aliases are method names: no dispatch on node names is needed."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, 1, 1)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), _token_span(self.file, tok))

    # ---- top level
    def start(self, meta: Any, items: list[Any]) -> ast.Module:
        return ast.Module(
            self.file,
            tuple(i for i in items if isinstance(i, ast.Import)),
            tuple(i for i in items if isinstance(i, ast.Definition)),
            tuple(i for i in items if isinstance(i, ast.TrainDef)),
        )

    def import_all(self, meta: Any, c: list[Any]) -> ast.Import:
        path, alias = c
        return ast.Import(self._string(path), self._ident(alias) if alias else None, None,
                          self._span(meta))

    def import_names(self, meta: Any, c: list[Any]) -> ast.Import:
        path, *names = c
        return ast.Import(self._string(path), None, tuple(self._ident(n) for n in names),
                          self._span(meta))

    def _definition(self, kind: str, meta: Any, c: list[Any]) -> ast.Definition:
        name, formals, *body = c
        return ast.Definition(kind, self._ident(name), tuple(formals or ()), tuple(body),
                              self._span(meta))

    def model_def(self, meta: Any, c: list[Any]) -> ast.Definition:
        return self._definition("model", meta, c)

    def block_def(self, meta: Any, c: list[Any]) -> ast.Definition:
        return self._definition("block", meta, c)

    def formals(self, meta: Any, c: list[Any]) -> list[ast.Formal]:
        return [f for f in c if f is not None]

    def formal(self, meta: Any, c: list[Any]) -> ast.Formal:
        name, type_, default = c
        return ast.Formal(self._ident(name), self._ident(type_), default, self._span(meta))

    # ---- statements
    def input_stmt(self, meta: Any, c: list[Any]) -> ast.InputStmt:
        return ast.InputStmt(self._span(meta), self._ident(c[0]), c[1])

    def target_stmt(self, meta: Any, c: list[Any]) -> ast.TargetStmt:
        return ast.TargetStmt(self._span(meta), self._ident(c[0]), c[1])

    def tensor_type(self, meta: Any, c: list[Any]) -> ast.TensorTypeExpr:
        dtype, *dims = c
        return ast.TensorTypeExpr(self._ident(dtype), tuple(d for d in dims if d is not None),
                                  self._span(meta))

    def layer_stmt(self, meta: Any, c: list[Any]) -> ast.LayerStmt:
        return ast.LayerStmt(self._span(meta), self._ident(c[0]), c[1])

    def param_stmt(self, meta: Any, c: list[Any]) -> ast.ParamStmt:
        *names, type_, init, constraint, frozen = c
        return ast.ParamStmt(self._span(meta), tuple(self._ident(n) for n in names), type_,
                             init, constraint, frozen is not None)

    def constrain(self, meta: Any, c: list[Any]) -> ast.Expr:
        return c[0]

    def assign_stmt(self, meta: Any, c: list[Any]) -> ast.Assign:
        *names, value = c
        return ast.Assign(self._span(meta), tuple(self._ident(n) for n in names), value)

    def named_output(self, meta: Any, c: list[Any]) -> ast.OutputStmt:
        inference, name, value = c
        return ast.OutputStmt(self._span(meta), self._ident(name), value, inference is not None)

    def anonymous_output(self, meta: Any, c: list[Any]) -> ast.OutputStmt:
        inference, value = c
        name = ast.Ident(value.id, value.span) if isinstance(value, ast.Name) else None
        return ast.OutputStmt(self._span(meta), name, value, inference is not None)

    def loss_stmt(self, meta: Any, c: list[Any]) -> ast.LossStmt:
        name, value = c
        return ast.LossStmt(self._span(meta), self._ident(name) if name else None, value)

    def metric_stmt(self, meta: Any, c: list[Any]) -> ast.MetricStmt:
        name, value = c
        return ast.MetricStmt(self._span(meta), self._ident(name) if name else None, value)

    # ---- train blocks
    def train_def(self, meta: Any, c: list[Any]) -> ast.TrainDef:
        name, *body = c
        return ast.TrainDef(self._ident(name), tuple(body), self._span(meta))

    def setting(self, meta: Any, c: list[Any]) -> ast.Setting:
        return ast.Setting(self._span(meta), self._ident(c[0]), c[1])

    def optimizer_stmt(self, meta: Any, c: list[Any]) -> ast.OptimizerStmt:
        return ast.OptimizerStmt(self._span(meta), c[0], c[1])

    def freeze_stmt(self, meta: Any, c: list[Any]) -> ast.FreezeStmt:
        return ast.FreezeStmt(self._span(meta), c[0])

    def restore_stmt(self, meta: Any, c: list[Any]) -> ast.RestoreStmt:
        return ast.RestoreStmt(self._span(meta), c[0], self._string(c[1]))

    def quoted_pattern(self, meta: Any, c: list[Any]) -> ast.Pattern:
        return ast.Pattern(_unquote(str(c[0])), self._span(meta))

    def dotted_pattern(self, meta: Any, c: list[Any]) -> ast.Pattern:
        return ast.Pattern(".".join(str(t) for t in c), self._span(meta))

    # ---- expressions
    def repeat(self, meta: Any, c: list[Any]) -> ast.Repeat:
        count, shared, body = c
        return ast.Repeat(self._span(meta), count, shared is not None, body)

    def logical_or(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), "or", c[0], c[1])

    def logical_and(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), "and", c[0], c[1])

    def logical_not(self, meta: Any, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(self._span(meta), "not", c[0])

    def compare(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), str(c[1]), c[0], c[2])

    def binary(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), str(c[1]), c[0], c[2])

    def unary(self, meta: Any, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(self._span(meta), str(c[0]), c[1])

    def call(self, meta: Any, c: list[Any]) -> ast.Call:
        func, arguments = c
        arguments = arguments or []
        args = tuple(a for a in arguments if not isinstance(a, ast.Keyword))
        keywords = tuple(a for a in arguments if isinstance(a, ast.Keyword))
        return ast.Call(self._span(meta), func, args, keywords)

    def arguments(self, meta: Any, c: list[Any]) -> list[Any]:
        return [a for a in c if a is not None]

    def keyword(self, meta: Any, c: list[Any]) -> ast.Keyword:
        return ast.Keyword(str(c[0]), c[1], _token_span(self.file, c[0]))

    def loss_keyword(self, meta: Any, c: list[Any]) -> ast.Keyword:
        span = self._span(meta)
        return ast.Keyword("loss", c[0], Span(span.file, span.line, span.column, span.line,
                                               span.column + 4))

    def subscript(self, meta: Any, c: list[Any]) -> ast.Subscript:
        return ast.Subscript(self._span(meta), c[0], tuple(c[1]))

    def subscripts(self, meta: Any, c: list[Any]) -> list[ast.Expr]:
        items: list[ast.Expr] = []
        for item in c:
            if item is None:
                continue
            if isinstance(item, Token):  # ELLIPSIS
                items.append(ast.EllipsisExpr(_token_span(self.file, item)))
            else:
                items.append(item)
        return items

    def slice(self, meta: Any, c: list[Any]) -> ast.Slice:
        start, stop, step = (c + [None, None, None])[:3]
        return ast.Slice(self._span(meta), start, stop, step)

    def attribute(self, meta: Any, c: list[Any]) -> ast.Attribute:
        return ast.Attribute(self._span(meta), c[0], str(c[1]), _token_span(self.file, c[1]))

    def name(self, meta: Any, c: list[Any]) -> ast.Name:
        return ast.Name(self._span(meta), str(c[0]))

    def int(self, meta: Any, c: list[Any]) -> ast.Number:
        return ast.Number(self._span(meta), int(str(c[0])))

    def float(self, meta: Any, c: list[Any]) -> ast.Number:
        return ast.Number(self._span(meta), float(str(c[0])))

    def string(self, meta: Any, c: list[Any]) -> ast.String:
        return self._string(c[0])

    def _string(self, tok: Token) -> ast.String:
        return ast.String(_token_span(self.file, tok), _unquote(str(tok)))

    def true(self, meta: Any, c: list[Any]) -> ast.Bool:
        return ast.Bool(self._span(meta), True)

    def false(self, meta: Any, c: list[Any]) -> ast.Bool:
        return ast.Bool(self._span(meta), False)

    def list(self, meta: Any, c: list[Any]) -> ast.ListExpr:
        return ast.ListExpr(self._span(meta), tuple(x for x in c if x is not None))


# --- syntax errors in human words ------------------------------------------------------

_TOKEN_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "the end of the file",
    "COMPARE": "a comparison",
}


_OPERATORS = {"+", "-", "*", "/", "//", "@", "%", "**", "and", "or", ".", "(", "["}
_EXPRESSION_STARTS = {"a name", "an integer", "a number", "a string", "`(`", "`[`", "`true`",
                      "`false`", "`-`", "`+`", "`not`", "`repeat`"}
_STATEMENT_STARTS = {"input", "target", "layer", "param", "output", "loss", "metric",
                     "inference"}


def _describe_expected(parser: lark.Lark, expected: set[str]) -> str:
    literals: set[str] = set()
    words: set[str] = set()
    for name in expected:
        if name in _TOKEN_WORDS:
            words.add(_TOKEN_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            words.add(name.lower())
            continue
        if pattern.type == "str":
            literals.add(pattern.value)
        else:
            words.add(name.lower())
    if "a comparison" in words and literals & _OPERATORS:
        words.discard("a comparison")
    if literals & _OPERATORS and len(literals & _OPERATORS) > 2:
        literals -= _OPERATORS
        words.add("an operator")
    if len(literals & _STATEMENT_STARTS) > 3:
        literals -= _STATEMENT_STARTS
        words.add("a statement")
    words |= {f"`{lit}`" for lit in literals}
    if {"a name", "an integer"} <= words:
        words -= _EXPRESSION_STARTS
        words.add("an expression")
    ordered = sorted(words, key=lambda w: (w.startswith("a"), w))
    if len(ordered) > 6:
        return ", ".join(ordered[:6]) + " or something else that fits"
    if len(ordered) == 1:
        return ordered[0]
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


def _open_brackets(text: str, line: int, column: int) -> list[tuple[str, int, int]]:
    """The brackets still open just before (line, column), innermost last, as (bracket,
    line, column); strings and comments are skipped."""
    stack: list[tuple[str, int, int]] = []
    lines = text.split("\n")
    for number, content in enumerate(lines[:line], start=1):
        in_string = escaped = False
        limit = column - 1 if number == line else len(content)
        for col, ch in enumerate(content[:limit], start=1):
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
                continue
            if ch == "#":
                break
            if ch == '"':
                in_string = True
            elif ch in "([{":
                stack.append((ch, number, col))
            elif ch in ")]}" and stack:
                stack.pop()
    return stack


def _unclosed_bracket(text: str, line: int, column: int, file: str) -> Span | None:
    """The innermost `(` or `[` still open at (line, column), if it opened on an earlier
    line."""
    stack = _open_brackets(text, line, column)
    if stack and stack[-1][0] in "([" and stack[-1][1] < line:
        _, open_line, open_col = stack[-1]
        return Span(file, open_line, open_col, open_line, open_col + 1)
    return None


def _open_brace(text: str, line: int, column: int, file: str) -> tuple[str, Span] | None:
    """The definition whose `{` is still open at (line, column): its header (`model M {`)
    and the brace's span."""
    stack = _open_brackets(text, line, column)
    if not stack or stack[-1][0] != "{":
        return None
    _, open_line, open_col = stack[-1]
    header = " ".join(text.split("\n")[open_line - 1][:open_col].split())
    if len(header) > 60:
        header = header[:27] + " ... " + header[-28:]
    return header, Span(file, open_line, open_col, open_line, open_col + 1)


_CONTINUES = ("+", "-", "*", "/", "@", "%", "=", ",", "(", "[", ":", "and", "or", "not", "**")


def _code_of(line: str) -> str:
    """A line without its comment (a `#` inside a string stays)."""
    in_string = escaped = False
    for i, ch in enumerate(line):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#":
            return line[:i].rstrip()
    return line.rstrip()


def _starts_line(text: str, token: Token) -> bool:
    lines = text.split("\n")
    line = token.line or 1
    return line - 1 < len(lines) and not lines[line - 1][: (token.column or 1) - 1].strip()


def _previous_code(text: str, token: Token) -> tuple[int, str] | None:
    """The last line with code before ``token``'s line, without its comment."""
    lines = text.split("\n")
    for number in range((token.line or 1) - 1, 0, -1):
        code = _code_of(lines[number - 1])
        if code.strip():
            return number, code
    return None


def _previous_code_line(text: str, token: Token) -> tuple[int, str] | None:
    """The line before ``token``, when ``token`` starts its line and that line ends
    mid-expression."""
    if not _starts_line(text, token):
        return None
    previous = _previous_code(text, token)
    if previous is not None and previous[1].endswith(_CONTINUES):
        return previous
    return None


def _end_span(text: str, file: str) -> Span:
    lines = text.split("\n")
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    last = lines[-1] if lines else ""
    return Span(file, len(lines), len(last) + 1, len(lines), len(last) + 2)


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    text = str(token)
    if len(text) > 30:
        text = text[:27] + "..."
    return f"`{text}`"


def _bracket_depth_error(text: str, file: str) -> Span | None:
    """The position where brackets nest deeper than MAX_NESTING, outside strings and comments."""
    depth = 0
    line, col = 1, 0
    in_string = in_comment = escaped = False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment, in_string = line + 1, 0, False, False
            continue
        if in_comment:
            continue
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == "#":
            in_comment = True
        elif ch == '"':
            in_string = True
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                return Span(file, line, col, line, col + 1)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
    return None


def _blank_lines(text: str, first: int, last: int | None = None) -> str:
    """The text with lines first..last (inclusive) made blank: line and column numbers of
    everything else stay as they were."""
    lines = text.split("\n")
    for number in range(max(first, 1), min(last if last is not None else first,
                                           len(lines)) + 1):
        lines[number - 1] = " " * len(lines[number - 1])
    return "\n".join(lines)


def parse(text: str, file: str, sink: DiagnosticSink) -> ast.Module | None:
    """Parse one file; syntax errors go to ``sink`` and the result is None."""
    deep = _bracket_depth_error(text, file)
    if deep is not None:
        sink.error("syntax", f"brackets nest more than {MAX_NESTING} levels deep", deep,
                   help="split the expression into named intermediate tensors")
        return None
    parser = _parser()
    attempt = text
    errors = 0
    max_errors = MAX_SYNTAX_ERRORS if len(text) <= RECOVERY_SIZE_LIMIT else 1
    while True:
        try:
            tree = parser.parse(attempt)
        except lark.exceptions.UnexpectedInput as exc:
            errors += 1
            retry = _report_syntax_error(exc, parser, attempt, file, sink)
            if errors >= max_errors or retry is None or retry == attempt:
                return None
            attempt = retry
            continue
        if errors:
            return None
        try:
            module = _TreeBuilder(file).transform(tree)
        except lark.exceptions.VisitError as exc:  # a tree-builder bug must not reach users
            sink.error("syntax", f"internal error while reading the program: {exc.orig_exc}",
                       Span(file, 1, 1, 1, 1))
            return None
        assert isinstance(module, ast.Module)
        return module


# What may stand between definitions, and what may start a statement in a body.
_TOP_LEVEL = frozenset({"MODEL", "BLOCK", "TRAIN", "IMPORT", "FROM", "$END"})
_STATEMENT_STARTS_TOKENS = frozenset({"INPUT", "TARGET", "LAYER", "PARAM", "OUTPUT", "LOSS",
                                      "METRIC", "INFERENCE", "OPTIMIZER", "FREEZE", "RESTORE",
                                      "RBRACE"})
_TOP_LEVEL_LINE = re.compile(r"\s*(model|block|train|import|from)\b")
_BLOCK_AS_LAYER = re.compile(r"\s*block\s+([A-Za-z_]\w*)\s*=\s*(.+)$")


def _acceptable(exc: lark.exceptions.UnexpectedToken) -> set[str]:
    """The tokens that could really come next. LALR merges lookaheads, so ``exc.expected``
    also lists tokens that only fit in other contexts (`constrain` after an `input`
    statement); the interactive parser tries each one."""
    interactive = exc.interactive_parser
    if interactive is None:
        return set(exc.expected)
    return set(interactive.accepts()) or set(exc.expected)


def _report_syntax_error(exc: lark.exceptions.UnexpectedInput, parser: lark.Lark, text: str,
                         file: str, sink: DiagnosticSink) -> str | None:
    """Report one syntax error; return the text to parse again to find the next one (the
    erroneous part blanked out), or None to stop."""
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        span = Span(file, exc.line, exc.column, exc.line, exc.column + 1)
        char = exc.char
        shown = repr(char) if not char.isprintable() or char.isspace() else f"`{char}`"
        sink.error("syntax", f"unexpected character {shown}", span,
                   help=_character_help(char))
        return _blank_lines(text, exc.line)
    if isinstance(exc, lark.exceptions.UnexpectedToken):
        return _report_unexpected_token(exc, parser, text, file, sink)
    line = getattr(exc, "line", 1) or 1
    column = getattr(exc, "column", 1) or 1
    sink.error("syntax", str(exc).splitlines()[0], Span(file, line, column, line, column + 1))
    return _blank_lines(text, line)


def _report_unexpected_token(exc: lark.exceptions.UnexpectedToken, parser: lark.Lark,
                             text: str, file: str, sink: DiagnosticSink) -> str | None:
    token = exc.token
    expected = _acceptable(exc)
    if token.type == "$END":
        _report_end_of_file(text, file, expected, parser, sink)
        return None
    line = token.line or 1
    span = _token_span(file, token)
    if expected <= _TOP_LEVEL:
        # Between definitions: skip to the next line that starts one.
        sink.error("syntax", f"unexpected {_describe_token(token)}; expected "
                   + _describe_expected(parser, expected), span,
                   help=_top_level_help(token))
        lines = text.split("\n")
        following = next((n for n in range(line + 1, len(lines) + 1)
                          if _TOP_LEVEL_LINE.match(lines[n - 1])), len(lines) + 1)
        return _blank_lines(text, line, following - 1)
    opened = _unclosed_bracket(text, line, token.column or 1, file)
    if opened is not None and expected & {"RPAR", "RSQB", "COMMA"}:
        sink.error("syntax", "this bracket is never closed", opened,
                   notes=[Note(f"the statement goes on until {_describe_token(token)}", span)],
                   help="add the closing bracket")
        return _blank_lines(text, opened.line, line - 1) if line > opened.line else \
            _blank_lines(text, opened.line)
    if token.type in _TOP_LEVEL and "RBRACE" in expected:
        retry = _definition_inside_body(token, text, file, sink)
        if retry is not None:
            return retry
    previous = _previous_code_line(text, token)
    if previous is not None:
        number, content = previous
        end = len(content.rstrip()) + 1
        sink.error("syntax", f"the statement is incomplete before {_describe_token(token)}",
                   Span(file, number, end, number, end + 1),
                   notes=[Note("the next statement starts here", span)],
                   help="finish the expression, or remove the trailing operator")
        return _blank_lines(text, number)
    if _starts_line(text, token) and not expected & (_STATEMENT_STARTS_TOKENS | _TOP_LEVEL):
        earlier = _previous_code(text, token)
        if earlier is not None:
            return _report_incomplete_statement(earlier, token, expected, parser, text, file,
                                                sink)
    sink.error("syntax", f"unexpected {_describe_token(token)}; expected "
               + _describe_expected(parser, expected), span,
               help=_token_help(token, expected, text))
    return _blank_lines(text, line)


def _report_end_of_file(text: str, file: str, expected: set[str], parser: lark.Lark,
                        sink: DiagnosticSink) -> None:
    span = _end_span(text, file)
    stack = _open_brackets(text, span.line + 1, 1)
    if stack and stack[-1][0] == "{":
        header, brace = _open_brace(text, span.line + 1, 1, file) or ("{", span)
        sink.error("syntax", f"unexpected end of file: `{header}` is never closed", span,
                   notes=[Note("the `{` is here", brace)],
                   help="add the closing `}`")
        return
    if stack:
        _, open_line, open_col = stack[-1]
        sink.error("syntax", "this bracket is never closed",
                   Span(file, open_line, open_col, open_line, open_col + 1),
                   help="add the closing bracket")
        return
    sink.error("syntax", "unexpected end of file; expected "
               + _describe_expected(parser, expected), span)


def _definition_inside_body(token: Token, text: str, file: str,
                            sink: DiagnosticSink) -> str | None:
    """`block trunk = Encoder()` in a model, or the next definition while one is open."""
    line = token.line or 1
    span = _token_span(file, token)
    content = text.split("\n")[line - 1]
    as_layer = _BLOCK_AS_LAYER.match(_code_of(content)) if token.type == "BLOCK" else None
    if as_layer is not None:
        name, value = as_layer.group(1), as_layer.group(2).strip()
        opened = _open_brace(text, line, token.column or 1, file)
        inside = f"a {opened[0].split()[0]}" if opened else "a definition"
        sink.error("syntax", f"unexpected `block` inside {inside}", span,
                   help=f"a layer (or a block used as a layer) is named with `layer {name} = "
                   f"{value}`; `block` defines one at the top level")
        return _blank_lines(text, line)
    opened = _open_brace(text, line, token.column or 1, file)
    if opened is None or not _starts_line(text, token):
        return None
    header, brace = opened
    sink.error("syntax", f"`{header}` is never closed: `{token}` starts a new definition",
               span, notes=[Note("the `{` is here", brace)],
               help="add the closing `}` before it")
    # Close the open definition just before the token, keeping every position.
    offset = sum(len(x) + 1 for x in text.split("\n")[: line - 1]) + (token.column or 1) - 1
    if offset > 0 and text[offset - 1] in " \t":
        return text[: offset - 1] + "}" + text[offset:]
    return text[:offset] + "}" + text[offset:]


def _report_incomplete_statement(earlier: tuple[int, str], token: Token, expected: set[str],
                                 parser: lark.Lark, text: str, file: str,
                                 sink: DiagnosticSink) -> str:
    """The statement before ``token`` stops short: report it where it stops."""
    number, code = earlier
    end = len(code) + 1
    where = Span(file, number, end, number, end + 1)
    last = re.search(r"(\w+|\S)$", code)
    word = last.group(1) if last else ""
    next_statement = [Note("the next statement starts here", _token_span(file, token))]
    if expected == {"LSQB"} and re.search(r":\s*\w+$", code):
        sink.error("syntax", f"a tensor type needs its shape in brackets: expected `[` after "
                   f"`{word}`", where,
                   help=f"`{word}[...]` lists the dimensions; `{word}[]` is a scalar")
    else:
        sink.error("syntax", "the statement is incomplete: expected "
                   + _describe_expected(parser, expected) + f" after `{word}`", where,
                   notes=next_statement)
    return _blank_lines(text, number)


def _top_level_help(token: Token) -> str | None:
    if str(token) in ("def", "class", "function", "fn", "struct"):
        return "a model is defined with `model Name { ... }`, a block with `block Name { ... }`"
    if str(token) == "}":
        return "this `}` closes nothing"
    return None


def _character_help(char: str) -> str | None:
    if char == "'":
        return 'strings use double quotes: "like this"'
    if char == ";":
        return "statements need no `;`: put each on its own line"
    if char in "&|~":
        return "use `and`, `or` and `not` for masks"
    return None


_KEYWORDS = {"model", "block", "train", "input", "target", "layer", "param", "output", "loss",
             "metric", "import", "from", "repeat", "shared", "frozen", "constrain", "inference",
             "optimizer", "freeze", "restore", "and", "or", "not", "true", "false", "as"}


def _token_help(token: Token, expected: set[str], text: str) -> str | None:
    if token.type == "REPEAT":
        return "`repeat ...` is not an operand by itself: put it in parentheses, e.g. " \
            "`x + (repeat 2 Block()(x))`"
    if str(token) in _KEYWORDS and "NAME" in expected:
        return f"`{token}` is a keyword and cannot be used as a name"
    before = text.split("\n")[(token.line or 1) - 1][: (token.column or 1) - 1].split()
    if str(token) == "=" and before and before[-1] in _KEYWORDS:
        return f"`{before[-1]}` is a keyword and cannot be used as a name"
    if str(token) == "=" and "COMPARE" not in expected:
        return "a statement is `name = expression`; compare with `==`"
    if "RPAR" in expected or "RSQB" in expected:
        return "a `,` or a closing bracket may be missing"
    return None
