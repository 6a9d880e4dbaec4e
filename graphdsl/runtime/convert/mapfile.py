"""The weight-map format: how a foreign checkpoint's tensors become a graphdsl checkpoint.

A map is a text file, one statement a line (docs/weights.md):

    # comments run to the end of the line
    prefix transformer.                      # foreign names may start with this; dropped
    ignore h.{i}.attn.bias *.num_batches_tracked
    tie lm_head.weight = wte.weight          # the same tensor: equal when both are there
    wte.weight -> wte.embeddings
    h.{i}.attn.c_attn.weight -> gpt2_block.{i}.multi_head_attention.query_kernel,
        gpt2_block.{i}.multi_head_attention.key_kernel,
        gpt2_block.{i}.multi_head_attention.value_kernel | split(1) | reshape

A rule is ``SOURCES -> TARGETS`` then transforms after ``|``, applied left to right. A line
that starts with white space continues the one before. In names, ``{x}`` captures one
segment (no ``.`` or ``/``), the same capture in every name of the rule, and ``*`` (in
``ignore`` only) anything. Several sources need ``concat(axis)`` or ``add`` first; several
targets need a ``split(axis)``, after which each transform applies to each part. ``reshape``
without sizes takes the target's shape. Two rules may make one model tensor (the model
ties what the other tool kept apart) when they give the same numbers. Every position is
kept, so that a problem found while converting points at its rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphdsl.diagnostics import DiagnosticSink, Span, suggestion_help

# transform name -> (fewest, most) numeric arguments; None: any number
TRANSFORMS: dict[str, tuple[int, int | None]] = {
    "transpose": (0, None),   # no arguments: reverse the axes
    "reshape": (0, None),     # no arguments: the target's shape
    "split": (1, None),       # split(axis) in equal parts, or split(axis, size, size, ...)
    "concat": (1, 1),         # concat(axis): the sources, joined
    "add": (0, 0),            # the sources, summed
    "slice": (3, 3),          # slice(axis, start, stop)
    "cast": (1, 1),           # cast(float16|float32|float64|int32|int64|bool)
    "scale": (1, 1),          # multiply by a number
}
DTYPES = ("float16", "float32", "float64", "int32", "int64", "bool")


@dataclass(frozen=True)
class Name:
    """A name pattern as written, with its captures in order."""

    text: str
    span: Span

    @property
    def captures(self) -> list[str]:
        return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.text)

    def regex(self) -> re.Pattern[str]:
        out, pos, seen = [], 0, set()
        for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}|\*", self.text):
            out.append(re.escape(self.text[pos:m.start()]))
            if m.group(0) == "*":
                out.append(".*")
            elif m.group(1) in seen:  # the same capture twice: the same text twice
                out.append(f"(?P={m.group(1)})")
            else:
                seen.add(m.group(1))
                out.append(f"(?P<{m.group(1)}>[^./]+)")
            pos = m.end()
        out.append(re.escape(self.text[pos:]))
        return re.compile("".join(out))

    def fill(self, values: dict[str, str]) -> str:
        return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: values[m.group(1)], self.text)


@dataclass(frozen=True)
class Transform:
    name: str
    args: tuple[float | int | str, ...]
    span: Span


@dataclass
class Rule:
    sources: list[Name]
    targets: list[Name]
    transforms: list[Transform]
    span: Span  # the whole rule, for problems about it


@dataclass
class Tie:
    copy: Name
    original: Name
    span: Span


@dataclass
class WeightMap:
    file: str
    prefixes: list[str] = field(default_factory=list)
    ignores: list[Name] = field(default_factory=list)
    ties: list[Tie] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


@dataclass
class _Token:
    text: str
    line: int
    column: int

    def span(self, file: str) -> Span:
        return Span(file, self.line, self.column, self.line, self.column + len(self.text))


def _logical_lines(text: str) -> list[list[_Token]]:
    """Statements as tokens (words, `->`, `,`, `=`, `|`, `(`, `)`), continuation lines
    joined, comments dropped."""
    statements: list[list[_Token]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        tokens = [_Token(m.group(0), number, m.start() + 1)
                  for m in re.finditer(r"->|[,=|()]|[^\s,=|()]+", line)]
        if not tokens:
            continue
        if raw[:1].isspace() and statements:
            statements[-1].extend(tokens)
        else:
            statements.append(tokens)
    return statements


def parse_map(text: str, file: str, sink: DiagnosticSink) -> WeightMap:
    """The map in ``text``; every mistake in it is a `weight-map` error in ``sink``."""
    result = WeightMap(file)
    for tokens in _logical_lines(text):
        head = tokens[0]
        start, end = head.span(file), tokens[-1].span(file)
        whole = Span(file, start.line, start.column, end.end_line, end.end_column)
        if head.text in ("prefix", "ignore"):
            words = [t for t in tokens[1:] if t.text != ","]
            if not words:
                sink.error("weight-map", f"`{head.text}` needs at least one name", whole)
            for t in words:
                if head.text == "prefix":
                    result.prefixes.append(t.text)
                else:
                    result.ignores.append(Name(t.text, t.span(file)))
        elif head.text == "tie":
            texts = [t.text for t in tokens]
            if len(tokens) != 4 or texts[2] != "=":
                sink.error("weight-map", "expected `tie COPY = ORIGINAL`", whole)
                continue
            result.ties.append(Tie(Name(tokens[1].text, tokens[1].span(file)),
                                   Name(tokens[3].text, tokens[3].span(file)), whole))
        elif any(t.text == "->" for t in tokens):
            rule = _parse_rule(tokens, file, whole, sink)
            if rule is not None:
                result.rules.append(rule)
        else:
            sink.error("weight-map", f"`{head.text}` is not a statement of a weight map",
                       head.span(file),
                       help="a rule is `SOURCE -> TARGET | transform ...`; the other "
                            "statements are `prefix`, `ignore` and `tie`")
    return result


def _names(tokens: list[_Token], file: str, sink: DiagnosticSink, what: str,
           where: Span) -> list[Name]:
    names = []
    expect_name = True
    for t in tokens:
        if t.text == ",":
            if expect_name:
                sink.error("weight-map", f"a comma where a {what} name belongs", t.span(file))
            expect_name = True
            continue
        if not expect_name:
            sink.error("weight-map", f"separate {what} names with commas", t.span(file))
        if not re.fullmatch(r"[^\s{}*]*(\{[A-Za-z_][A-Za-z0-9_]*\}[^\s{}*]*)*", t.text):
            sink.error("weight-map", f"`{t.text}` is not a {what} name (captures are "
                       "`{name}`; `*` only in `ignore`)", t.span(file))
        names.append(Name(t.text, t.span(file)))
        expect_name = False
    if not names:
        sink.error("weight-map", f"the rule has no {what}", where)
    return names


def _parse_rule(tokens: list[_Token], file: str, whole: Span,
                sink: DiagnosticSink) -> Rule | None:
    arrow = next(i for i, t in enumerate(tokens) if t.text == "->")
    bar = next((i for i, t in enumerate(tokens) if t.text == "|"), len(tokens))
    if bar < arrow:
        sink.error("weight-map", "transforms come after the targets", tokens[bar].span(file))
        return None
    errors = len(sink.items)
    sources = _names(tokens[:arrow], file, sink, "source", whole)
    targets = _names(tokens[arrow + 1:bar], file, sink, "target", whole)
    names_ok = len(sink.items) == errors
    transforms = _transforms(tokens[bar:], file, sink)
    if not names_ok:  # counting names that are not names would only repeat the mistake
        return None
    captured = {c for s in sources for c in s.captures}
    for name in targets + sources[1:]:
        for c in name.captures:
            if c not in sources[0].captures:
                sink.error("weight-map", f"`{{{c}}}` is not captured by the first source "
                           f"`{sources[0].text}`", name.span,
                           help=suggestion_help(c, captured))
    names = [t.name for t in transforms]
    if len(sources) > 1 and (not names or names[0] not in ("concat", "add")):
        sink.error("weight-map", f"{len(sources)} sources need `concat(axis)` or `add` as "
                   "the first transform", whole)
    if len(sources) == 1 and any(n in ("concat", "add") for n in names):
        sink.error("weight-map", "`concat` and `add` join several sources; this rule has one",
                   whole)
    splits = names.count("split")
    if len(targets) > 1 and splits != 1:
        sink.error("weight-map", f"{len(targets)} targets need one `split(axis)`", whole)
    if len(targets) == 1 and splits:
        sink.error("weight-map", "`split` makes several parts; this rule has one target",
                   whole)
    for t in transforms:
        if t.name == "split" and len(t.args) > 1 and len(t.args) - 1 != len(targets):
            sink.error("weight-map", f"`split` gives {len(t.args) - 1} sizes for "
                       f"{len(targets)} targets", t.span)
    if len(sink.items) > errors:
        return None
    return Rule(sources, targets, transforms, whole)


def _transforms(tokens: list[_Token], file: str, sink: DiagnosticSink) -> list[Transform]:
    """`| name` or `| name(arg, ...)`, repeated."""
    out: list[Transform] = []
    i = 0
    while i < len(tokens):
        bar = tokens[i]
        if bar.text != "|" or i + 1 >= len(tokens):
            sink.error("weight-map", "expected `| transform`", bar.span(file))
            return out
        name = tokens[i + 1]
        i += 2
        args: list[_Token] = []
        end = name
        if i < len(tokens) and tokens[i].text == "(":
            close = next((j for j in range(i, len(tokens)) if tokens[j].text == ")"), None)
            if close is None:
                sink.error("weight-map", "unclosed `(`", tokens[i].span(file))
                return out
            args = [t for t in tokens[i + 1:close] if t.text != ","]
            end = tokens[close]
            i = close + 1
        span = Span(file, name.line, name.column, end.line, end.column + len(end.text))
        limits = TRANSFORMS.get(name.text)
        if limits is None:
            sink.error("weight-map", f"unknown transform `{name.text}`", name.span(file),
                       help=suggestion_help(name.text, TRANSFORMS) or
                       "transforms: " + ", ".join(TRANSFORMS))
            continue
        values: list[float | int | str] = []
        for a in args:
            if name.text == "cast":
                if a.text not in DTYPES:
                    sink.error("weight-map", f"`cast` takes one of {', '.join(DTYPES)}",
                               a.span(file))
                values.append(a.text)
                continue
            try:
                values.append(float(a.text) if name.text == "scale" else int(a.text))
            except ValueError:
                sink.error("weight-map", f"`{name.text}` takes "
                           f"{'a number' if name.text == 'scale' else 'integers'}, "
                           f"got `{a.text}`", a.span(file))
        fewest, most = limits
        if len(values) < fewest or (most is not None and len(values) > most):
            count = str(fewest) if fewest == most else f"at least {fewest}" \
                if most is None else f"{fewest} to {most}"
            sink.error("weight-map", f"`{name.text}` takes {count} argument"
                       f"{'s' * (count != '1')}, got {len(values)}", span)
            continue
        out.append(Transform(name.text, tuple(values), span))
    return out
