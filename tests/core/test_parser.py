"""The parser and the positions it records, through the public API.

Every position is computed from the source text (the column of a substring), never
copied from the compiler's own output, so a wrong line or column fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import graphdsl
from graphdsl import Diagnostic, GraphdslError

FILE = "prog.gdl"

SMALL = textwrap.dedent("""\
    model Small(units: int = 8) {
        input x : float32[B, T, 8]
        target y : float32[B, T, 8]
        layer d = Dense(units)
        h = d(x)
        output h
        loss mse(h, y)
    }
    """)


def position(source: str, needle: str) -> tuple[int, int]:
    """1-based (line, column) of the first occurrence of ``needle`` in ``source``."""
    start = source.index(needle)
    line = source.count("\n", 0, start) + 1
    column = start - (source.rfind("\n", 0, start) + 1) + 1
    return line, column


def errors_of(source: str) -> list[Diagnostic]:
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile(source, file=FILE)
    errors = [d for d in caught.value.diagnostics if d.is_error]
    assert errors, "GraphdslError without any error diagnostic"
    return errors


def node_by(model, **attributes) -> dict:
    found = [d for _, d in model.graph.nodes(data=True)
             if all(d.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"expected one node with {attributes}, found {len(found)}"
    return found[0]


# --- positions of graph nodes ----------------------------------------------------------


def test_input_and_target_nodes_point_at_their_names() -> None:
    model = graphdsl.compile(SMALL, file=FILE).models["Small"]
    for kind, name, needle in (("input", "x", "x :"), ("target", "y", "y :")):
        span = node_by(model, kind=kind, name=name)["span"]
        assert (span.file, span.line, span.column) == (FILE, *position(SMALL, needle))
        assert span.end_column == span.column + len(name)


def test_layer_parameters_point_at_the_layer_constructor() -> None:
    model = graphdsl.compile(SMALL, file=FILE).models["Small"]
    span = node_by(model, kind="param", name="d.kernel")["span"]
    assert (span.line, span.column) == position(SMALL, "Dense(units)")
    assert span.end_column == span.column + len("Dense(units)")


def test_op_nodes_point_at_the_call() -> None:
    model = graphdsl.compile(SMALL, file=FILE).models["Small"]
    dense = node_by(model, kind="op", op="Dense")["span"]
    assert (dense.line, dense.column) == position(SMALL, "d(x)")
    loss_op = node_by(model, kind="op", op="mse")["span"]
    assert (loss_op.line, loss_op.column) == position(SMALL, "mse(h, y)")


def test_loss_terms_point_at_their_own_term() -> None:
    source = textwrap.dedent("""\
        model Two {
            input x : float32[B, 4]
            target y : float32[B, 4]
            h = Dense(4)(x)
            output h
            loss 2.0 * mse(h, y)
               + 0.5 * mae(h, y)
        }
        """)
    model = graphdsl.compile(source, file=FILE).models["Two"]
    spans = {model.node(n)["name"]: model.node(n)["span"] for n in model.losses}
    assert (spans["mse"].line, spans["mse"].column) == position(source, "mse(h, y)")
    assert (spans["mae"].line, spans["mae"].column) == position(source, "mae(h, y)")


# --- positions of diagnostics ----------------------------------------------------------


def test_unknown_name_is_reported_at_the_name() -> None:
    source = SMALL.replace("h = d(x)", "h = d(xx)")
    (error,) = errors_of(source)
    assert error.code == "unknown-name"
    assert "xx" in error.message
    assert (error.span.file, error.span.line, error.span.column) == \
        (FILE, *position(source, "xx)"))
    assert error.span.end_column == error.span.column + 2


def test_unexpected_character_is_reported_at_the_character() -> None:
    source = SMALL.replace("h = d(x)", "h = d(x) $ 2")
    (error,) = errors_of(source)
    assert error.code == "syntax"
    assert "$" in error.message
    assert (error.span.line, error.span.column) == position(source, "$")


def test_unexpected_token_is_reported_at_the_token() -> None:
    source = SMALL.replace("output h", "output h )")
    (error,) = errors_of(source)
    assert error.code == "syntax"
    assert "`)`" in error.message
    line, column = position(source, "h )")
    assert (error.span.line, error.span.column) == (line, column + 2)


@pytest.mark.parametrize("keyword", ["loss", "output", "layer", "metric", "shared", "input"])
def test_keyword_used_as_a_name_says_so(keyword: str) -> None:
    source = SMALL.replace("h = d(x)", f"{keyword} = d(x)")
    (error,) = errors_of(source)
    assert error.code == "syntax"
    assert error.span.line == position(source, "= d(x)")[0]
    assert f"`{keyword}` is a keyword" in (error.help or ""), error.help


def test_repeat_as_an_operand_asks_for_parentheses() -> None:
    source = SMALL.replace("h = d(x)", "h = x + repeat 2 Dense(8)(x)")
    (error,) = errors_of(source)
    assert error.code == "syntax"
    assert (error.span.line, error.span.column) == position(source, "repeat")
    assert "parenthes" in (error.help or ""), error.help
    fixed = source.replace("x + repeat 2 Dense(8)(x)", "x + (repeat 2 Dense(8)(x))")
    assert graphdsl.compile(fixed).models["Small"]


def test_unclosed_bracket_points_at_the_opening_bracket() -> None:
    source = SMALL.replace("h = d(x)", "h = d(x")
    errors = errors_of(source)
    assert errors[0].code == "syntax"
    assert "never closed" in errors[0].message
    assert (errors[0].span.line, errors[0].span.column) == position(source, "(x\n")


def test_trailing_operator_points_at_the_incomplete_line() -> None:
    source = SMALL.replace("h = d(x)", "h = d(x) +")
    (error,) = errors_of(source)
    assert error.code == "syntax"
    line, column = position(source, "+\n")
    assert (error.span.line, error.span.column) == (line, column + 1)
    assert any(n.span is not None and n.span.line == line + 1 for n in error.notes)


def test_rendered_diagnostic_quotes_the_line_with_a_caret_under_the_column() -> None:
    source = SMALL.replace("h = d(x)", "h = d(xx)")
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile(source, file=FILE)
    line, column = position(source, "xx)")
    rendered = caught.value.render(color=False).splitlines()
    assert rendered[0] == f"{FILE}:{line}:{column}: error: `xx` is not defined  [unknown-name]"
    quoted = source.splitlines()[line - 1]
    assert rendered[1].endswith("| " + quoted)
    gutter = rendered[1].index("| ") + 2
    caret = rendered[2]
    assert caret[gutter + column - 1:gutter + column + 1] == "^~"
    assert caret[gutter:gutter + column - 1].strip() == ""
    assert "\x1b[" not in "\n".join(rendered)


# --- several errors in one run ---------------------------------------------------------


def test_several_syntax_errors_are_reported_in_one_run() -> None:
    source = textwrap.dedent("""\
        model M {
            input x : float32[B, 4]
            a = Dense(4)(x) $
            b = Dense(4)(x))
            c = ;
            output y = Dense(2)(x)
            loss mean(square(y))
        }
        """)
    errors = errors_of(source)
    assert all(e.code == "syntax" for e in errors)
    assert [e.span.line for e in errors] == [3, 4, 5]
    assert [e.span.column for e in errors] == [
        position(source, "$")[1], position(source, "))")[1] + 1, position(source, ";")[1]]


def test_syntax_errors_in_two_definitions_are_both_reported() -> None:
    source = textwrap.dedent("""\
        block B {
            input x : float32[N, 4]
            output Dense(4)(x) )
        }
        model M {
            input x : float32[B, 4]
            output y = Dense(2)(x) ]
            loss mean(square(y))
        }
        """)
    assert [e.span.line for e in errors_of(source)] == [3, 7]


def test_a_flood_of_syntax_errors_is_capped() -> None:
    bad_lines = "\n".join(f"    a{i} = $" for i in range(40))
    source = f"model M {{\n    input x : float32[B, 4]\n{bad_lines}\n}}\n"
    errors = errors_of(source)
    assert 2 <= len(errors) <= 20
    assert len({e.span.line for e in errors}) == len(errors)


# --- what the syntax does not care about -----------------------------------------------


def test_layout_and_comments_do_not_change_the_graph() -> None:
    spread = textwrap.dedent("""\
        # a comment before the model
        model Small(units: int = 8)
        {
            input x :
                float32[B, T, 8]       # trailing comment
            target y : float32[B,
                                 T, 8]
            layer d =
                Dense(
                    units,
                )
            h = d(
                x
            )
            output h
            loss mse(h,
                     y)
        }
        """)
    one_line = " ".join(SMALL.split())
    hashes = {graphdsl.compile(text).models["Small"].graph_hash()
              for text in (SMALL, spread, one_line)}
    assert len(hashes) == 1


def test_a_utf8_byte_order_mark_is_ignored(tmp_path) -> None:
    path = tmp_path / "bom.gdl"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL.encode())
    with_bom = graphdsl.compile_file(str(path)).models["Small"]
    assert with_bom.graph_hash() == graphdsl.compile(SMALL).models["Small"].graph_hash()
    span = node_by(with_bom, kind="input", name="x")["span"]
    assert (span.line, span.column) == position(SMALL, "x :")


# --- determinism -----------------------------------------------------------------------


def test_same_source_gives_the_same_hash() -> None:
    first = graphdsl.compile(SMALL).models["Small"].graph_hash()
    second = graphdsl.compile(SMALL).models["Small"].graph_hash()
    assert first == second
    assert len(first) == 64


@pytest.mark.parametrize("replacements", [
    [("units: int = 8", "units: int = 9"), ("y : float32[B, T, 8]", "y : float32[B, T, 9]")],
    [("layer d =", "layer e ="), ("d(x)", "e(x)")],               # another parameter name
    [("mse(h, y)", "mae(h, y)")],                                 # another loss
    [("Dense(units)", "Dense(units, use_bias = false)")],         # another parameter set
    [("Dense(units)", "Dense(units, activation = relu)")],        # another argument
    [("float32[B, T, 8]", "float32[B, S, 8]")],                   # another symbolic size
], ids=["size", "name", "loss", "parameters", "argument", "symbol"])
def test_different_sources_give_different_hashes(
        replacements: list[tuple[str, str]]) -> None:
    changed = SMALL
    for old, new in replacements:
        assert old in changed
        changed = changed.replace(old, new)
    before = graphdsl.compile(SMALL).models["Small"].graph_hash()
    after = graphdsl.compile(changed).models["Small"].graph_hash()
    assert before != after


_HASH_SCRIPT = """
import graphdsl, sys
source = sys.stdin.read()
print(graphdsl.compile(source).models["Small"].graph_hash())
"""


def test_hash_does_not_depend_on_python_hash_randomisation() -> None:
    source = SMALL.replace("h = d(x)", "h = d(x) + relu(x) * 2")
    hashes = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _HASH_SCRIPT], input=source, env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        hashes.add(done.stdout.strip())
    hashes.add(graphdsl.compile(source).models["Small"].graph_hash())
    assert len(hashes) == 1, hashes


def test_shipped_parse_tables_match_the_grammar() -> None:
    """`python -m graphdsl.syntax.tables` regenerates them after a grammar edit."""
    from graphdsl.syntax import _parse_tables, tables

    assert tables.grammar_digest(tables.grammar_text()) == _parse_tables.DIGEST


def test_parser_loads_from_tables_without_building_or_unpickling(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pickle

    from graphdsl.syntax import parser, tables

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the parser must come from the shipped tables")

    monkeypatch.setattr(tables, "build", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    parser._parser.cache_clear()
    try:
        program = graphdsl.compile(SMALL, file=FILE)
        assert list(program.models) == ["Small"]
    finally:
        parser._parser.cache_clear()


def test_the_pass_through_shortcut_keeps_every_span(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every example parses to the same tree, spans included, with Lark's own callbacks."""
    import pathlib

    from graphdsl.diagnostics import DiagnosticSink
    from graphdsl.syntax import parser, tables

    examples = sorted(pathlib.Path(__file__).parents[2].glob("examples/*.gdl"))
    assert examples
    texts = {p.name: p.read_text() for p in examples}
    parser._parser.cache_clear()
    fast = {name: parser.parse(text, name, DiagnosticSink()) for name, text in texts.items()}
    monkeypatch.setattr(tables, "_fast_pass_through", lambda p: p)
    parser._parser.cache_clear()
    try:
        plain = {name: parser.parse(text, name, DiagnosticSink()) for name, text in texts.items()}
    finally:
        parser._parser.cache_clear()
    assert fast == plain


def test_a_tuple_is_a_list_as_keras_writes_sizes() -> None:
    from graphdsl.compiler import compile_text

    model = compile_text("""
model M {
    input x : float32[B, 16, 16, 3]
    h = Conv2D(8, (3, 3), strides = (2, 2), padding = "same")(x)
    inference output y = Reshape((8 * 8, 8,))(h)
    inference output z = (x)
}
""", "<test>").model()
    conv = next(model.node(n) for n in model.ops() if model.node(n)["op"] == "Conv2D")
    assert conv["args"]["kernel_size"] == [3, 3] and conv["args"]["strides"] == [2, 2]
    types = {model.node(n)["name"]: str(model.node(n)["type"]) for n in model.outputs}
    assert types == {"y": "float32[B, 64, 8]", "z": "float32[B, 16, 16, 3]"}
