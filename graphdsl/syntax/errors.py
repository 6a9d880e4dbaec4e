"""Syntax errors in human words: what was expected, unclosed brackets and braces,
statements cut short, Python and Keras habits, and where to resume after an error."""

from __future__ import annotations

import re

import lark
from lark import Token

from graphdsl.diagnostics import DiagnosticSink, Note, Span

MAX_NESTING = 200


def token_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line or 1, tok.column or 1, tok.end_line or tok.line or 1,
                tok.end_column or (tok.column or 1) + len(tok))

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
                     "inference", "for", "if"}


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


def bracket_depth_error(text: str, file: str) -> Span | None:
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


def report_syntax_error(exc: lark.exceptions.UnexpectedInput, parser: lark.Lark, text: str,
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
    span = token_span(file, token)
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
    content = text.split("\n")[line - 1]
    if _TOP_LEVEL_LINE.match(content) and not content[:1].isspace() and \
            "{" not in content[: (token.column or 1) - 1]:
        # A mistake in a definition's header (`model M:` and an indented body, as Python
        # writes it; `(units = 8)`): its body cannot be read alone, so it is skipped whole.
        if str(token) == ":" and "LBRACE" in expected:
            hint: str | None = "a definition's body is in braces: `model M { ... }`"
        elif str(token) == "=" and "COLON" in expected:
            hint = "a parameter has a type: `units: int = 8`"
        else:
            hint = _token_help(token, expected, text)
        sink.error("syntax", f"unexpected {_describe_token(token)}; expected "
                   + _describe_expected(parser, expected), span, help=hint)
        lines = text.split("\n")
        following = next((n for n in range(line + 1, len(lines) + 1)
                          if _TOP_LEVEL_LINE.match(lines[n - 1]) and
                          not lines[n - 1][:1].isspace()), len(lines) + 1)
        return _blank_lines(text, line, following - 1)
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
    span = token_span(file, token)
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
    method = re.match(r"\s*\.\s*(\w+)", content[(token.column or 1) - 1 + len(token):])
    if method is not None:  # `model.add(Dense(8))`, `model.compile(...)`: Keras' API
        sink.error("syntax", f"unexpected `{token}.{method.group(1)}`: a {opened[0].split()[0]}"
                   " body holds statements, not method calls", span,
                   help="write each layer as a call on the tensor, `h = Dense(8)(h)`; "
                        "training settings go in a `train` block")
        return _blank_lines(text, line)
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
    next_statement = [Note("the next statement starts here", token_span(file, token))]
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
    if str(token) in ("//", "/"):
        return "comments start with `#`"
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
             "optimizer", "freeze", "restore", "and", "or", "not", "true", "false", "as",
             "for", "in", "if", "else"}


# Statement keywords as Python, Keras or PyTorch habits spell them.
_STATEMENT_HABITS = {
    "metrics": "a metric statement starts with `metric` (one metric each): "
               "`metric accuracy(logits, y)`",
    "losses": "a loss statement starts with `loss` (one term each, or a weighted sum)",
    "outputs": "an output statement starts with `output` (one each)",
    "inputs": "an input statement starts with `input` (one each)",
    "targets": "a target statement starts with `target` (one each)",
    "layers": "a layer statement starts with `layer` (one each)",
    "return": "a model's results are `output` statements: `output y = ...`",
    "def": "a reusable piece is a `block`: `block Name(arg: int = 1) { ... }`",
    "class": "a model is `model Name { ... }`; a reusable piece is a `block`",
    "self": "there is no `self`: name layers with `layer name = ...`",
}


def _token_help(token: Token, expected: set[str], text: str) -> str | None:
    if token.type in ("OPTIMIZER", "FREEZE", "RESTORE") and "RBRACE" in expected and \
            "FREEZE" not in expected:
        return f"`{token}` belongs in a `train` block: `train M {{ optimizer * = adam() }}`"
    if token.type == "REPEAT":
        return "`repeat ...` is not an operand by itself: put it in parentheses, e.g. " \
            "`x + (repeat 2 Block()(x))`"
    line_before = text.split("\n")[(token.line or 1) - 1][: (token.column or 1) - 1].split()
    if token.type == "SHARED" and len(line_before) >= 2 and line_before[-2] == "as":
        return "a `repeat N shared` has one copy, so it has no copy number: drop `as " \
            f"{line_before[-1]}`, or drop `shared` to give each copy its own weights"
    if str(token) in _KEYWORDS and "NAME" in expected:
        return f"`{token}` is a keyword and cannot be used as a name"
    before = text.split("\n")[(token.line or 1) - 1][: (token.column or 1) - 1].split()
    if str(token) in ("//", "/") and not before:
        return "comments start with `#`"
    line_text = text.split("\n")[(token.line or 1) - 1]
    column = (token.column or 1) - 1
    if line_text[column:column + 2] in ("+=", "-=", "*=", "/="):
        op = line_text[column]
        return f"graphdsl has no `{op}=`: write `{before[0] if before else 'h'} = " \
            f"{before[0] if before else 'h'} {op} ...`"
    if "elif" in before[-1:]:
        return "graphdsl writes `else if`"
    count = re.search(r"\brepeat\s+([A-Za-z_]\w*\s*\[[^\]]*\])", line_text[:column])
    if count is not None:
        return "the count of `repeat` is a number, a name or an expression in parentheses: " \
            f"`repeat ({count.group(1)}) Block()(x)`"
    if str(token) == ":" and before[:1] in (["for"], ["if"], ["else"], ["}"]):
        return "a loop's or a condition's body is in braces: `for i in range(3) { ... }`"
    if token.type == "ELSE" and "LBRACE" in expected:
        return "graphdsl has no `a if c else b` expression: `where(c, a, b)` picks between " \
            "tensors; `if c { ... } else { ... }` statements decide at compile time"
    if token.type == "FOR" and "RSQB" in expected:
        return "graphdsl has no list comprehensions: use a `for` statement or `repeat`"
    if before[:1] in (["import"], ["from"]) and token.type == "NAME":
        return "`import` reads another graphdsl file, named by a string: `import " \
            "\"layers.gdl\"`; the frameworks need no import"
    if str(token) == ":" and "EQUAL" in expected and len(before) == 1:
        return f"a setting is written `{before[0]} = value`"
    if str(token) == "=" and before == ["loss"]:
        return "`loss` is a keyword and cannot be used as a name: a loss statement is " \
            "`loss mse(p, y)`, or with a name, `loss total = ...`"
    if str(token) == "(" and len(before) == 1 and before[0].isidentifier() and \
            before[0] not in _KEYWORDS:
        return "a call on its own does nothing: bind its result, `y = f(x)`; graphdsl " \
            "has no `print`" if before[0] == "print" else \
            "a call on its own does nothing: bind its result, `y = f(x)`"
    if "lambda" in before:
        return "graphdsl has no `lambda`: a reusable piece of graph is a `block`"
    if len(before) == 1 and before[0] in _STATEMENT_HABITS:
        return _STATEMENT_HABITS[before[0]]
    if str(token) == "=" and before and before[-1] in _KEYWORDS:
        return f"`{before[-1]}` is a keyword and cannot be used as a name"
    if str(token) == "=" and "COMPARE" not in expected:
        return "a statement is `name = expression`; compare with `==`"
    if "RPAR" in expected or "RSQB" in expected:
        return "a `,` or a closing bracket may be missing"
    return None
