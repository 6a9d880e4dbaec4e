"""Property tests: whatever text goes in, `graphdsl.compile` returns a Program or raises
GraphdslError carrying at least one error diagnostic, and that error renders. Any other
exception (IndexError, KeyError, RecursionError, ...) is a compiler bug.

Three sources of text: soups of the grammar's tokens, well-formed programs built from
the language's statements with random pieces, and mutations (tokens or lines deleted,
duplicated, swapped or replaced) of the programs in examples/. Hypothesis runs
derandomized, so CI sees the same cases every time; the whole file stays under a minute.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import graphdsl
from graphdsl import GraphdslError
from graphdsl.compiler import Program, program_json
from graphdsl.ir.summary import to_dot

pytestmark = pytest.mark.slow  # about 30 s in all

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.gdl"))

FUZZ = {"derandomize": True, "deadline": None, "database": None, "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}

KEYWORDS = ["model", "block", "train", "input", "target", "layer", "param", "output", "loss",
            "metric", "import", "from", "as", "repeat", "shared", "frozen", "constrain",
            "inference", "optimizer", "freeze", "restore", "and", "or", "not", "true",
            "false", "for", "in", "if", "else"]
PUNCTUATION = ["{", "}", "(", ")", "[", "]", ",", ":", "=", ".", "...", "+", "-", "*", "/",
               "//", "%", "**", "@", "==", "!=", "<", "<=", ">", ">="]
NAMES = ["x", "y", "h", "M", "B", "T", "d", "Dense", "LSTM", "Embedding", "Conv1D",
         "MultiHeadAttention", "LayerNormalization", "relu", "softmax", "mean", "mask_of",
         "concat", "crossentropy", "mse", "adam", "float32", "int32", "bool", "units",
         "kernel", "embeddings", "mask_zero", "where", "axis", "return_states", "T"]
LITERALS = ["0", "1", "2", "8", "-1", "0.5", "1e-3", '"lib.gdl"', '"x"', "# c\n", "\n"]
TOKENS = KEYWORDS + PUNCTUATION + NAMES + LITERALS

TOKEN_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\.\.\.|\*\*|//|==|!=|<=|>=|'
                      r"[A-Za-z_][A-Za-z0-9_]*|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|\S")


def check_outcome(text: str, file: str = "fuzz.gdl") -> None:
    """The one property: a Program, or a GraphdslError with an error that renders."""
    try:
        result = graphdsl.compile(text, file=file)
    except GraphdslError as err:
        assert err.diagnostics, "GraphdslError without diagnostics"
        assert any(d.is_error for d in err.diagnostics), "GraphdslError without an error"
        assert err.render(color=False)
        program_json(None, list(err.diagnostics))
        event("error: " + next(d.code for d in err.diagnostics if d.is_error))
        return
    assert isinstance(result, Program)
    event("compiled")
    assert not any(d.is_error for d in result.diagnostics)
    program_json(result, result.diagnostics)  # what `graphdsl compile --json` prints
    for model in result.models.values():
        to_dot(model)  # what `graphdsl compile --dot` writes


# --- token soups -----------------------------------------------------------------------

token_soup = st.lists(st.sampled_from(TOKENS), max_size=80).map(" ".join)


@settings(max_examples=250, **FUZZ)
@given(token_soup)
def test_token_soup(text: str) -> None:
    check_outcome(text)


@settings(max_examples=250, **FUZZ)
@given(token_soup)
def test_token_soup_inside_a_model(body: str) -> None:
    check_outcome("model M(d: int = 4) {\n    input x : float32[B, T, 8]\n"
                  f"    target y : int32[B, T]\n    {body}\n}}\n")


# --- well-formed programs with random pieces -------------------------------------------

leaf = st.sampled_from(["x", "h", "ids", "y", "d", "1", "2", "0.5", "true", "-1",
                        "mask_of(h)", "x.T", "x[:, 0]", "x[..., 1:]", "[1, 0, 1]"])
call_name = st.sampled_from(["Dense(4)", "Dense(d, activation = relu)", "LSTM(4)",
                             "Dropout(0.1)", "LayerNormalization()", "Embedding(10, 8)",
                             "Embedding(10, 8, mask_zero = true)", "Conv1D(4, 3)", "relu",
                             "softmax", "mean", "sum", "concat", "Flatten()",
                             "GlobalAveragePooling1D()", "MultiHeadAttention(2, 4)",
                             "Dense(8, kernel = e.embeddings.T)", "e", "Blk(8)"])
operator = st.sampled_from(["+", "-", "*", "/", "@", "**", "//", "%", "==", "<", "and"])


def expressions() -> st.SearchStrategy[str]:
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, operator, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(call_name, st.lists(inner, min_size=1, max_size=2)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"),
            st.tuples(inner, st.sampled_from(["axis = -1", "axis = 1", "where = mask_of(h)",
                                              "from_logits = true", "return_states = true"])
                      ).map(lambda t: f"mean({t[0]}, {t[1]})"),
            st.tuples(st.sampled_from(["2", "1", "0", "3 shared"]), inner).map(
                lambda t: f"(repeat {t[0]} Blk(8)({t[1]}))"),
        ),
        max_leaves=8,
    )


statement = st.one_of(
    st.tuples(st.sampled_from(["h", "z", "y", "x"]), expressions()).map(
        lambda t: f"{t[0]} = {t[1]}"),
    expressions().map(lambda e: f"inference output o = {e}"),
    expressions().map(lambda e: f"output {e}"),
    expressions().map(lambda e: f"loss {e}"),
    st.tuples(expressions(), expressions()).map(lambda t: f"loss 0.5 * {t[0]} + 2 * {t[1]}"),
    expressions().map(lambda e: f"metric m = {e}"),
    st.sampled_from(["layer e = Embedding(10, 8, mask_zero = true)", "layer d2 = Dense(8)",
                     "param w : float32[8, 8] = normal(0, 0.1)",
                     "param a, b : float32[] = zeros() frozen",
                     "input z : float32[B, T, d]", "target t : float32[B, 8]"]),
)

BLOCK = """block Blk(d: int) {
    input x : float32[B, T, d]
    output Dense(d)(x)
}
"""
train_lines = st.lists(st.sampled_from([
    "epochs = 2", "batch = 0", "lr = -1", "optimizer * = adam(lr = 1e-3)",
    "optimizer e.* = sgd(lr = 0.1)", "freeze e.*", "freeze nothing.*", "seed = 1.5",
    'restore e.* from "w.safetensors"', "schedule = cosine(warmup = 10)",
    'data = "missing.npz"', "precision = \"fp8\"", "clip_norm = 1.0"]), max_size=4)


# Minimal failures found by exploring with more examples;
# kept so they are checked on every run.
@example(["h = concat(d)"], [])                      # KeyError 'xs' in ops/shape.py
@example(["h = stack(2)", "inference output o = concat()"], [])
@example(["inference output o = Dense(4)(1)"], [])   # IndexError on a rank-0 input
@example(["inference output o = LSTM(4)(mean(x))"], [])
@settings(max_examples=300, **FUZZ)
@given(st.lists(statement, min_size=1, max_size=6), train_lines)
def test_generated_programs(statements: list[str], train: list[str]) -> None:
    body = "\n    ".join(statements)
    text = (BLOCK + "model M(d: int = 8) {\n    input x : float32[B, T, 8]\n"
            "    input ids : int32[B, T]\n    target y : int32[B, T]\n"
            "    h = Embedding(10, 8, mask_zero = true)(ids)\n"
            f"    {body}\n}}\n")
    if train:
        text += "train M {\n    " + "\n    ".join(train) + "\n}\n"
    check_outcome(text)


# --- mutations of the examples ---------------------------------------------------------


def example_tokens(path: Path) -> list[str]:
    return TOKEN_RE.findall(path.read_text(encoding="utf-8"))


@st.composite
def token_mutants(draw: st.DrawFn) -> tuple[Path, str]:
    path = draw(st.sampled_from(EXAMPLES))
    tokens = example_tokens(path)
    for _ in range(draw(st.integers(1, 4))):
        if not tokens:
            break
        i = draw(st.integers(0, len(tokens) - 1))
        j = draw(st.integers(0, len(tokens) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "insert"]))
        if action == "delete":
            del tokens[i]
        elif action == "duplicate":
            tokens.insert(i, tokens[j])
        elif action == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif action == "replace":
            tokens[i] = tokens[j]
        else:
            tokens.insert(i, draw(st.sampled_from(TOKENS)))
    return path, " ".join(token if not token.startswith("#") else token + "\n"
                          for token in tokens)


@st.composite
def line_mutants(draw: st.DrawFn) -> tuple[Path, str]:
    path = draw(st.sampled_from(EXAMPLES))
    lines = path.read_text(encoding="utf-8").split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap"]))
        if action == "delete" and len(lines) > 1:
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[j])
        else:
            lines[i], lines[j] = lines[j], lines[i]
    return path, "\n".join(lines)


def test_the_examples_are_there_to_mutate() -> None:
    assert len(EXAMPLES) >= 4
    for path in EXAMPLES:
        assert len(example_tokens(path)) > 20, path


@settings(max_examples=300, **FUZZ)
@given(token_mutants())
def test_token_mutations_of_the_examples(mutant: tuple[Path, str]) -> None:
    path, text = mutant
    check_outcome(text, file=str(path))


@settings(max_examples=200, **FUZZ)
@given(line_mutants())
def test_line_mutations_of_the_examples(mutant: tuple[Path, str]) -> None:
    path, text = mutant
    check_outcome(text, file=str(path))
