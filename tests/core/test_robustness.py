"""Hostile and degenerate input: `graphdsl compile` answers with diagnostics and exit code 1
or 2 (0 where the input is a valid program), never with a Python traceback or the
internal-error code 70; the Python API raises GraphdslError carrying diagnostics, never
anything else.

The CLI runs in a real subprocess, so a crash of the interpreter (a C-stack overflow, a
MemoryError) is seen as what it is, not swallowed by the test process.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import graphdsl
from graphdsl import GraphdslError
from graphdsl.compiler import Program

EXIT_INTERNAL = 70
VALID = """\
model M {
    input x : float32[B, 4]
    target y : float32[B, 2]
    output p = Dense(2)(x)
    loss mse(p, y)
}
"""
# Terminals of grammar/graphdsl.lark, plus names the checker knows.
TOKENS = ["model", "block", "train", "input", "target", "layer", "param", "output", "loss",
          "metric", "import", "from", "as", "repeat", "shared", "frozen", "constrain",
          "inference", "optimizer", "freeze", "restore", "and", "or", "not", "true", "false",
          "for", "in", "if", "else",
          "{", "}", "(", ")", "[", "]", ",", ":", "=", ".", "...", "+", "-", "*", "/", "//",
          "%", "**", "@", "==", "<", ">=", "x", "h", "B", "T", "Dense", "relu", "float32",
          "int32", "0", "3", "1.5", "2e-3", '"lib.gdl"', "# comment\n", "\n"]
BRACKETS = set("{}()[]")


def run_cli(cwd: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "graphdsl.cli", *argv], cwd=cwd,
                          capture_output=True, text=True, errors="replace", timeout=timeout)


def assert_handled(done: subprocess.CompletedProcess[str], allowed: set[int]) -> None:
    assert done.returncode != EXIT_INTERNAL, done.stderr[-2000:]
    assert done.returncode in allowed, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert "internal error" not in done.stderr
    if done.returncode == 1:
        assert " error: " in done.stderr or "error:" in done.stderr.splitlines()[0]


def assert_api_handled(path: Path) -> Program | GraphdslError:
    try:
        return graphdsl.compile_file(str(path))
    except GraphdslError as err:
        assert err.diagnostics, "GraphdslError without diagnostics"
        assert any(d.is_error for d in err.diagnostics)
        return err


def random_tokens(size: int, seed: int, brackets: bool) -> str:
    rng = random.Random(seed)
    pool = TOKENS if brackets else [t for t in TOKENS if t not in BRACKETS]
    parts: list[str] = []
    length = 0
    while length < size:
        token = rng.choice(pool) + rng.choice(" \n")
        parts.append(token)
        length += len(token)
    return "".join(parts)


def nested_blocks(depth: int) -> str:
    blocks = ["block B0(d: int) {\n    input x : float32[N, d]\n    output Dense(d)(x)\n}\n"]
    for i in range(1, depth):
        blocks.append(f"block B{i}(d: int) {{\n    input x : float32[N, d]\n"
                      f"    output B{i - 1}(d)(x)\n}}\n")
    blocks.append(f"model M {{\n    input x : float32[B, 4]\n"
                  f"    inference output y = B{depth - 1}(4)(x)\n}}\n")
    return "".join(blocks)


# name -> (bytes of the file, allowed exit codes)
CASES: dict[str, Callable[[], tuple[bytes, set[int]]]] = {
    "empty": lambda: (b"", {1}),
    "whitespace-only": lambda: (b"   \n\t\n\r\n  \f\n", {1}),
    "comments-only": lambda: (b"# nothing here\n# at all\n", {1}),
    "binary": lambda: (bytes(range(256)) * 64, {1}),
    "non-utf8": lambda: (VALID.encode().replace(b"Dense", b"D\xe9nse"), {1}),
    "latin1-comment": lambda: (b"# caf\xe9\n" + VALID.encode(), {1}),
    "nul-bytes": lambda: (VALID.encode().replace(b"Dense", b"Den\x00se"), {1}),
    "utf8-bom": lambda: (b"\xef\xbb\xbf" + VALID.encode(), {0}),
    "crlf-line-ends": lambda: (VALID.replace("\n", "\r\n").encode(), {0}),
    "random-tokens-2mb": lambda: (random_tokens(2_000_000, 0, brackets=True).encode(), {1}),
    "random-tokens-2mb-no-brackets": lambda: (
        random_tokens(2_000_000, 1, brackets=False).encode(), {1}),
    "nested-brackets-5000": lambda: (
        ("model M {\n    input x : float32[B, 4]\n    inference output y = "
         + "(" * 5000 + "x" + ")" * 5000 + "\n}\n").encode(), {1}),
    "unclosed-brackets-5000": lambda: (
        ("model M {\n    input x : float32[B, 4]\n    y = " + "(" * 5000 + "x\n").encode(),
        {1}),
    "sum-chain-20000": lambda: (
        ("model M {\n    input a : float32[B, 4]\n    inference output y = "
         + " + ".join(["a"] * 20_000) + "\n}\n").encode(), {0, 1}),
    "call-chain-3000": lambda: (
        ("model M {\n    input a : float32[B, 4]\n    inference output y = "
         + "relu(" * 3000 + "a" + ")" * 3000 + "\n}\n").encode(), {1}),
    "nested-blocks-300": lambda: (nested_blocks(300).encode(), {0, 1}),
    "nested-blocks-1000": lambda: (nested_blocks(1000).encode(), {0, 1}),
    "long-comment-line-1mb": lambda: (("# " + "x" * 1_000_000 + "\n" + VALID).encode(), {0}),
    "long-string-line-1mb": lambda: (
        (VALID + 'train M {\n    data = "' + "d" * 1_000_000 + '.npz"\n}\n').encode(), {0, 1}),
    "long-statement-line": lambda: (
        ("model M { input x : float32[B, 4] h0 = Dense(4)(x) "
         + " ".join(f"h{i} = relu(h{i - 1})" for i in range(1, 1000))
         + " inference output y = h999 }\n").encode(), {0}),
    "huge-file-17mb": lambda: (("# " + "x" * 17_000_000 + "\n" + VALID).encode(), {1}),
    "only-open-brace": lambda: (b"model M {", {1}),
    "stray-close-braces": lambda: (b"}" * 1000, {1}),
    "unterminated-string": lambda: (b'import "lib.gdl\nmodel M {}\n', {1}),
    "many-errors": lambda: ("\n".join(f"model M{i} {{ input x : float32[B] y = $ }}"
                                      for i in range(5000)).encode(), {1}),
}


HEAVY = {"random-tokens-2mb", "random-tokens-2mb-no-brackets", "sum-chain-20000",
         "nested-blocks-1000", "huge-file-17mb", "long-comment-line-1mb",
         "long-string-line-1mb", "many-errors"}


@pytest.mark.parametrize("case", [
    pytest.param(name, marks=[pytest.mark.slow] if name in HEAVY else [])
    for name in sorted(CASES)])
def test_hostile_input_is_handled(tmp_path: Path, case: str) -> None:
    data, allowed = CASES[case]()
    path = tmp_path / "input.gdl"
    path.write_bytes(data)
    started = time.monotonic()
    done = run_cli(tmp_path, "compile", "input.gdl")
    assert time.monotonic() - started < 90, "far too slow for this input"
    assert_handled(done, allowed)
    result = assert_api_handled(path)
    assert isinstance(result, Program) == (done.returncode == 0)


def test_an_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.gdl").write_bytes(b"")
    done = run_cli(tmp_path, "compile", "empty.gdl")
    assert done.returncode == 1
    assert "empty" in done.stderr
    assert "only blocks" not in done.stdout + done.stderr


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models.gdl").mkdir()
    done = run_cli(tmp_path, "compile", "models.gdl")
    assert_handled(done, {1, 2})
    assert "directory" in done.stderr


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "compile", "nowhere.gdl")
    assert_handled(done, {2})
    assert "nowhere.gdl" in done.stderr
    with pytest.raises(GraphdslError) as caught:
        graphdsl.compile_file(str(tmp_path / "nowhere.gdl"))
    assert caught.value.diagnostics[0].code == "bad-file"


def test_bad_utf8_is_located(tmp_path: Path) -> None:
    (tmp_path / "bad.gdl").write_bytes(VALID.encode().replace(b"Dense", b"D\xe9nse"))
    done = run_cli(tmp_path, "compile", "bad.gdl")
    assert_handled(done, {1})
    assert "bad.gdl:4:17:" in done.stderr
    assert "UTF-8" in done.stderr


def test_a_file_that_imports_itself(tmp_path: Path) -> None:
    (tmp_path / "me.gdl").write_text('import "me.gdl"\n' + VALID, encoding="utf-8")
    for argv in (["compile", "me.gdl"], ["compile", str(tmp_path / "me.gdl")]):
        done = run_cli(tmp_path, *argv)
        assert_handled(done, {1})
        assert "[import-error]" in done.stderr
        assert done.stderr.count("[import-error]") == 1
        assert "me.gdl -> me.gdl" in done.stderr
        assert "me.gdl -> me.gdl -> me.gdl" not in done.stderr


def test_two_files_that_import_each_other(tmp_path: Path) -> None:
    (tmp_path / "a.gdl").write_text('import "b.gdl"\n' + VALID, encoding="utf-8")
    (tmp_path / "b.gdl").write_text('import "a.gdl"\n', encoding="utf-8")
    done = run_cli(tmp_path, "compile", "a.gdl")
    assert_handled(done, {1})
    assert "cycle" in done.stderr


@pytest.mark.parametrize("target", ["folder", "binary.gdl", "latin1.gdl"])
def test_importing_an_unreadable_file_names_it_and_the_import(tmp_path: Path,
                                                              target: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "binary.gdl").write_bytes(b"\x00\x01\x02")
    (tmp_path / "latin1.gdl").write_bytes(b"block B { \xe9 }")
    (tmp_path / "main.gdl").write_text(f'import "{target}"\n' + VALID, encoding="utf-8")
    done = run_cli(tmp_path, "compile", "main.gdl")
    assert_handled(done, {1})
    assert target in done.stderr
    assert "main.gdl:1:8:" in done.stderr, "the error or a note must show which import"


@pytest.mark.slow
def test_a_very_long_line_is_quoted_in_part(tmp_path: Path) -> None:
    statements = " ".join(f"h{i} = relu(h{i - 1})" for i in range(1, 5_000))
    source = ("model M { input x : float32[B, 4] h0 = Dense(4)(x) " + statements
              + " inference output y = h4999 $ }\n")
    (tmp_path / "long.gdl").write_text(source, encoding="utf-8")
    done = run_cli(tmp_path, "compile", "long.gdl")
    assert_handled(done, {1})
    assert "unexpected character `$`" in done.stderr
    assert len(done.stderr) < 20_000, (
        f"{len(done.stderr):,} characters of diagnostics for one error in a "
        f"{len(source):,}-character line")
