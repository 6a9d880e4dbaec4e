"""The broken-program corpus: every case in ``cases/*.gdl`` states its diagnostics inline.

Format (see README.md): a trailing ``# E: <code>: <message substring>`` (or ``# W:`` for a
warning) on the line the diagnostic points at; ``# E@<line>: ...`` for another line of the
same file (``@0``: a diagnostic with no position); ``# E@<path>:<line>: ...`` for a line of
another file, the path relative to the case. Header directives: ``# memory-limit: 1MB``,
``# model: Name``. Each case's full rendered output must equal ``cases/<name>.out``;
``GRAPHDSL_UPDATE_GOLDEN=1`` rewrites the goldens instead of comparing.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphdsl.checks.resources import parse_bytes
from graphdsl.compiler import compile_path
from graphdsl.diagnostics import Diagnostic, GraphdslError, SourceMap, render_all
from graphdsl.errorcodes import CODES

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CASES_DIR = HERE / "cases"
GENERATED_GOLDEN_DIR = HERE / "generated"
CASES = sorted(CASES_DIR.glob("*.gdl"))
UPDATE_GOLDEN = os.environ.get("GRAPHDSL_UPDATE_GOLDEN") == "1"

SEVERITIES = {"E": "error", "W": "warning", "N": "note"}
# `# E: code: text`, `# W@12: code: text`, `# E@imports/lib.gdl:3: code: text`
MARKER = re.compile(
    r"#\s*(?P<sev>[EWN])(?:@(?P<where>[^\s:]+(?::\d+)?))?:\s*(?P<code>[a-z][a-z-]*):\s*"
)
DIRECTIVE = re.compile(r"^#\s*(?P<key>memory-limit|model):\s*(?P<value>\S+)\s*$")

# A diagnostic's place: (absolute file, line), or (None, 0) for one without a position.
Place = tuple[str | None, int]


@dataclass(frozen=True)
class Expectation:
    place: Place
    severity: str
    code: str
    text: str  # a substring of the message
    written_at: int  # the line of the comment, for failure messages

    @property
    def key(self) -> tuple[Place, str, str]:
        return (self.place, self.severity, self.code)


@dataclass(frozen=True)
class CaseSpec:
    expectations: tuple[Expectation, ...]
    memory_limit: int | None = None
    model: str | None = None


def parse_case(text: str, file: Path) -> CaseSpec:
    """Read the inline expectations and header directives of one case."""
    expectations: list[Expectation] = []
    options: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        directive = DIRECTIVE.match(line.strip())
        if directive:
            options[directive["key"]] = directive["value"]
            continue
        matches = list(MARKER.finditer(line))
        for m, following in itertools.zip_longest(matches, matches[1:]):
            end = following.start() if following else len(line)
            message = line[m.end():end].strip()
            if m["code"] not in CODES:
                raise ValueError(f"{file}:{number}: unknown diagnostic code {m['code']!r}")
            if not message:
                raise ValueError(f"{file}:{number}: an expectation needs a message substring")
            expectations.append(Expectation(_place(m["where"], number, file), SEVERITIES[m["sev"]],
                                            m["code"], message, number))
    limit = options.get("memory-limit")
    return CaseSpec(tuple(expectations), parse_bytes(limit) if limit else None,
                    options.get("model"))


def _place(where: str | None, number: int, file: Path) -> Place:
    if where is None:
        return (str(file.resolve()), number)
    if where.isdigit():
        line = int(where)
        return (None, 0) if line == 0 else (str(file.resolve()), line)
    path, _, line_text = where.rpartition(":")
    if not path or not line_text:
        raise ValueError(f"{file}:{number}: write `@<line>` or `@<path>:<line>`, got @{where}")
    return (str((file.parent / path).resolve()), int(line_text))


def place_of(diagnostic: Diagnostic) -> Place:
    if diagnostic.span is None:
        return (None, 0)
    return (str(Path(diagnostic.span.file).resolve()), diagnostic.span.line)


@dataclass
class Outcome:
    diagnostics: tuple[Diagnostic, ...]
    sources: SourceMap
    raised: bool


def compile_case(path: str, spec: CaseSpec) -> Outcome:
    """Compile through the public API; only GraphdslError may come out."""
    try:
        program = compile_path(path, model=spec.model, memory_limit=spec.memory_limit)
    except GraphdslError as err:
        return Outcome(err.diagnostics, err.sources, raised=True)
    return Outcome(tuple(program.diagnostics), program.sources, raised=False)


def describe(diagnostic: Diagnostic) -> str:
    return f"{diagnostic.span or '<no position>'}: {diagnostic.severity}: " \
        f"{diagnostic.message}  [{diagnostic.code}]"


def check_expectations(outcome: Outcome, spec: CaseSpec, relative_to: Path) -> None:
    """The (place, severity, code) multiset must equal the expected one, and each expected
    substring must appear in the message of a diagnostic with that key."""
    def show_place(place: Place) -> str:
        file, line = place
        if file is None:
            return "<no position>"
        return f"{os.path.relpath(file, relative_to)}:{line}"

    actual = Counter((place_of(d), d.severity, d.code) for d in outcome.diagnostics)
    expected = Counter(e.key for e in spec.expectations)
    problems = []
    for key in sorted(set(actual) | set(expected), key=repr):
        if actual[key] != expected[key]:
            place, severity, code = key
            problems.append(f"{show_place(place)}: {severity} [{code}]: expected "
                            f"{expected[key]}, got {actual[key]}")
    for key in expected:
        wanted = [e for e in spec.expectations if e.key == key]
        got = [d for d in outcome.diagnostics if (place_of(d), d.severity, d.code) == key]
        if len(got) == len(wanted) and not _assignable(wanted, got):
            written = ", ".join(str(e.written_at) for e in wanted)
            problems.append(
                f"{show_place(key[0])}: [{key[2]}]: messages {[d.message for d in got]} do "
                f"not contain {[e.text for e in wanted]} (expected on line {written})")
    if problems:
        listing = "\n".join(f"    {describe(d)}" for d in outcome.diagnostics) or "    (none)"
        pytest.fail("\n".join(problems) + "\n  diagnostics were:\n" + listing, pytrace=False)
    wants_error = any(e.severity == "error" for e in spec.expectations)
    assert outcome.raised == wants_error, (
        "expected GraphdslError" if wants_error else "expected a Program (warnings only)")


def _assignable(wanted: Sequence[Expectation], got: Sequence[Diagnostic]) -> bool:
    """Each expectation can be matched to its own diagnostic whose message contains it."""
    return any(all(e.text in d.message for e, d in zip(wanted, order, strict=True))
               for order in itertools.permutations(got))


def normalise_paths(text: str, roots: Sequence[Path]) -> str:
    for root in roots:
        text = text.replace(str(root) + os.sep, "")
    return text


def check_golden(rendered: str, golden: Path) -> None:
    if UPDATE_GOLDEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
        return
    if not golden.exists():
        pytest.fail(f"no golden {golden.relative_to(REPO)}; review the output and run with "
                    "GRAPHDSL_UPDATE_GOLDEN=1 to write it:\n" + rendered, pytrace=False)
    assert rendered == golden.read_text(encoding="utf-8")


# --- the corpus ------------------------------------------------------------------------


def relative(case: Path) -> str:
    return str(case.relative_to(REPO))


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases compile from the repository root with relative paths, so rendered paths do not
    depend on where the checkout lives."""
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_expectations(case: Path, in_repo: None) -> None:
    spec = parse_case(case.read_text(encoding="utf-8"), case)
    assert spec.expectations, f"{case.name} states no expected diagnostic"
    outcome = compile_case(relative(case), spec)
    check_expectations(outcome, spec, REPO)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden(case: Path, in_repo: None) -> None:
    spec = parse_case(case.read_text(encoding="utf-8"), case)
    outcome = compile_case(relative(case), spec)
    rendered = normalise_paths(render_all(outcome.diagnostics, outcome.sources, color=False),
                               [REPO])
    check_golden(rendered, case.with_suffix(".out"))


# --- cases whose bytes are made here (binary, not UTF-8, a directory, ...) -------------


@dataclass(frozen=True)
class GeneratedCase:
    """Files written to a fresh folder; ``main`` is compiled; expectations as in the
    corpus but written here, since the file itself may not be readable text."""

    files: dict[str, bytes | None]  # name -> content; None makes a directory
    main: str
    expectations: tuple[tuple[str, int, str, str, str], ...]  # (file, line, sev, code, text)


LATIN1_COMMENT = b"model M {\n    input x : float32[B, 4]   # caf\xe9 au lait\n" \
    b"    inference output y = Dense(2)(x)\n}\n"

GENERATED: dict[str, GeneratedCase] = {
    "bad-file_latin1": GeneratedCase(
        {"m.gdl": LATIN1_COMMENT}, "m.gdl",
        (("m.gdl", 2, "error", "bad-file", "not valid UTF-8: byte 0xe9 at line 2, column 36"),)),
    "bad-file_binary": GeneratedCase(
        {"m.gdl": b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256))}, "m.gdl",
        (("", 0, "error", "bad-file", "binary file"),)),
    "bad-file_utf16": GeneratedCase(
        {"m.gdl": "model M {\n    input x : float32[B, 4]\n}\n".encode("utf-16")}, "m.gdl",
        (("", 0, "error", "bad-file", "m.gdl"),)),
    "bad-file_directory": GeneratedCase(
        {"m.gdl": None}, "m.gdl",
        (("", 0, "error", "bad-file", "is a directory"),)),
    "bad-file_missing": GeneratedCase(
        {}, "nowhere.gdl",
        (("", 0, "error", "bad-file", "no such file: nowhere.gdl"),)),
    "bad-file_imported_latin1": GeneratedCase(
        {"lib.gdl": b"block Lib {\n    input x : float32[B, 4]   # na\xefve\n    output x\n}\n",
         "m.gdl": b'import "lib.gdl"\n'
                  b"model M {\n    input x : float32[B, 4]\n    inference output y = Lib()(x)\n}\n"},
        "m.gdl",
        (("lib.gdl", 2, "error", "bad-file", "lib.gdl is not valid UTF-8: byte 0xef at line 2"),)),
    # A byte-order mark is fine, and does not shift the columns of what follows (the golden
    # has the caret under the `$`, column 35).
    "syntax_after_bom": GeneratedCase(
        {"m.gdl": b"\xef\xbb\xbfmodel M { input x : float32[B, 4] $ }\n"}, "m.gdl",
        (("m.gdl", 1, "error", "syntax", "unexpected character `$`"),)),
}


def materialise(case: GeneratedCase, folder: Path) -> None:
    for name, content in case.files.items():
        path = folder / name
        if content is None:
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = GENERATED[name]
    materialise(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    spec = CaseSpec(tuple(
        Expectation((str((tmp_path / f).resolve()), line) if f else (None, 0),
                    severity, code, text, 0)
        for f, line, severity, code, text in case.expectations))
    outcome = compile_case(case.main, spec)
    check_expectations(outcome, spec, tmp_path)
    rendered = normalise_paths(render_all(outcome.diagnostics, outcome.sources, color=False),
                               [tmp_path.resolve(), tmp_path])
    check_golden(rendered, GENERATED_GOLDEN_DIR / f"{name}.out")


# --- codes found when loading data or weights (graphdsl/runtime/data.py, graphdsl/runtime/checkpoint.py) --

RUNTIME_PROGRAM = """
model Net {
    input x : float32[B, 4]
    target y : int32[B]
    layer hidden = Dense(8, activation = relu)
    output logits = Dense(3)(hidden(x))
    loss crossentropy(logits, y, from_logits = true)
}
"""


def runtime_model(tmp_path: Path):  # type: ignore[no-untyped-def]
    from graphdsl.compiler import compile_text

    return compile_text(RUNTIME_PROGRAM, "net.gdl", base_dir=str(tmp_path)).model("Net")


def run_runtime_case(name: str, tmp_path: Path) -> tuple[Diagnostic, ...]:
    """Make the problem with the loaders of graphdsl itself; return the diagnostics carried by
    the exception they raise."""
    import numpy as np

    from graphdsl.runtime.checkpoint import (
        CheckpointError,
        load_checkpoint,
        model_metadata,
        save_checkpoint,
        select,
    )
    from graphdsl.runtime.data import DataError, load_npz
    from graphdsl.runtime.errors import TrainError
    from graphdsl.runtime.loop import finite_or_error
    from graphdsl.runtime.run_folder import check_folder

    model = runtime_model(tmp_path)
    try:
        if name == "bad-data_missing_and_mistyped":
            np.savez(tmp_path / "d.npz", x=np.zeros((5, 4), dtype="U1"))
            load_npz(str(tmp_path / "d.npz"), model)
        elif name == "bad-data_unreadable":
            (tmp_path / "d.npz").write_bytes(b"this is not a zip archive")
            load_npz(str(tmp_path / "d.npz"), model)
        elif name == "bad-checkpoint_not_safetensors":
            (tmp_path / "w.safetensors").write_text("model Net { }\n")
            load_checkpoint(str(tmp_path / "w.safetensors"))
        elif name == "bad-checkpoint_missing":
            load_checkpoint(str(tmp_path / "nowhere.safetensors"))
        elif name == "checkpoint-mismatch_shapes_and_names":
            tensors = {"hidden.kernel": np.zeros((5, 8), "float32"),  # [4, 8] in the model
                       "hidden.bias": np.zeros((8,), "float32"),
                       "head.kernel": np.zeros((8, 3), "float32")}  # no such layer
            save_checkpoint(str(tmp_path / "w.safetensors"), tensors,
                            model_metadata(model, "net.gdl"))
            select(model, load_checkpoint(str(tmp_path / "w.safetensors")))
        elif name == "weight-map_unknown_transform":
            from graphdsl.diagnostics import SourceMap
            from graphdsl.runtime.convert import load_map

            (tmp_path / "my.map").write_text("fc.weight -> hidden.kernel | transpos\n")
            load_map(str(tmp_path / "my.map"), SourceMap())
        elif name == "weight-conversion_unmapped_missing_misshaped":
            from safetensors.numpy import save_file

            from graphdsl.runtime.convert import convert_file

            save_file({"fc.weight": np.zeros((8, 4), "float32"),   # not transposed
                       "fc.bias": np.zeros((8,), "float32"),
                       "extra": np.zeros((2,), "float32")},       # taken by no rule
                      str(tmp_path / "w.safetensors"))
            (tmp_path / "my.map").write_text("fc.weight -> hidden.kernel\n"
                                             "fc.bias -> hidden.bias\n")
            convert_file(model, str(tmp_path / "w.safetensors"), str(tmp_path / "my.map"))
        elif name == "checkpoint-mismatch_dtype":
            tensors = {"dense.kernel": np.zeros((8, 3), "float32"),
                       "dense.bias": np.full((3,), 2 ** 40 + 1, "int64")}
            save_checkpoint(str(tmp_path / "w.safetensors"), tensors,
                            model_metadata(model, "net.gdl"))
            select(model, load_checkpoint(str(tmp_path / "w.safetensors")), "dense.*")
        elif name == "non-finite-checkpoint_nan":
            finite_or_error({"dense.kernel": np.full((4, 8), np.nan, "float32"),
                             "dense.bias": np.zeros((8,), "float32")}, "w.safetensors")
        elif name == "run-folder_holds_a_run":
            (tmp_path / "run").mkdir()
            (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
            check_folder(str(tmp_path / "run"), resume=False, force=False)
        else:
            raise KeyError(name)
    except (DataError, CheckpointError, TrainError) as err:
        return tuple(err.diagnostics)
    pytest.fail(f"{name}: no error was raised")


# name -> (code, message substring, substrings of the notes)
RUNTIME_CASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "bad-data_missing_and_mistyped": (
        "bad-data", "does not fit model `Net`",
        ("no array `y` for target `y`", "`x` is <U1, expected float32")),
    "bad-data_unreadable": ("bad-data", "cannot read", ()),
    "bad-checkpoint_not_safetensors": ("bad-checkpoint", "not a safetensors file", ()),
    "bad-checkpoint_missing": ("bad-checkpoint", "no such checkpoint file", ()),
    "checkpoint-mismatch_shapes_and_names": (
        "checkpoint-mismatch", "does not fit model `Net`",
        ("shape: `hidden.kernel` is [5, 8]", "missing: `dense.kernel`",
         "unexpected: `head.kernel`")),
    "weight-map_unknown_transform": ("weight-map", "unknown transform `transpos`", ()),
    "weight-conversion_unmapped_missing_misshaped": (
        "weight-conversion", "does not convert to model `Net`",
        ("shape: `fc.weight` gives [8, 4] for `hidden.kernel`", "not mapped: `extra`",
         "missing: `dense.kernel` [8, 3]: no rule makes it")),
    "checkpoint-mismatch_dtype": (
        "checkpoint-mismatch", "dtypes that do not convert",
        ("`dense.bias` is int64 and its values do not convert exactly to float32",)),
    "non-finite-checkpoint_nan": ("non-finite-checkpoint", "`dense.kernel`", ()),
    "run-folder_holds_a_run": ("run-folder", "already holds files (metrics.jsonl)", ()),
}


@pytest.mark.parametrize("name", sorted(RUNTIME_CASES))
def test_runtime(name: str, tmp_path: Path) -> None:
    code, text, note_texts = RUNTIME_CASES[name]
    diagnostics = run_runtime_case(name, tmp_path)
    assert [d.code for d in diagnostics] == [code]
    (diagnostic,) = diagnostics
    assert diagnostic.severity == "error"
    assert text in diagnostic.message, diagnostic.message
    notes = [n.message for n in diagnostic.notes]
    for wanted in note_texts:
        assert any(wanted in n for n in notes), f"no note contains {wanted!r}: {notes}"
    rendered = normalise_paths(render_all(diagnostics, SourceMap(), color=False),
                               [tmp_path.resolve(), tmp_path])
    check_golden(rendered, GENERATED_GOLDEN_DIR / f"runtime_{name}.out")


# Codes that only a framework backend raises, so tests/diagnostics (run with the frameworks
# blocked) cannot produce them: a test outside tests/core and tests/diagnostics must.
FRAMEWORK_CODES = {"non-finite-loss": "backends/torch/train.py",
                   "non-finite-gradient": "backends/torch/train.py"}


# --- coverage of the codes -------------------------------------------------------------


def corpus_codes() -> Counter[str]:
    codes: Counter[str] = Counter()
    for case in CASES:
        for e in parse_case(case.read_text(encoding="utf-8"), case).expectations:
            codes[e.code] += 1
    for generated in GENERATED.values():
        codes.update(code for _, _, _, code, _ in generated.expectations)
    codes.update(code for code, _, _ in RUNTIME_CASES.values())
    return codes


def cases_for(code: str) -> list[Path]:
    return [c for c in CASES if any(e.code == code for e in
                                    parse_case(c.read_text(encoding="utf-8"), c).expectations)]


def framework_tests_mentioning(code: str) -> list[Path]:
    """Test files outside tests/core and tests/diagnostics that check for ``code``: as a
    string (`d.code == "bad-data"`) or as rendered output (`"[non-finite-loss]" in stderr`)."""
    tests = REPO / "tests"
    found = []
    for path in sorted(tests.rglob("*.py")):
        if path.is_relative_to(tests / "core") or path.is_relative_to(tests / "diagnostics"):
            continue
        text = path.read_text(encoding="utf-8")
        if path.name.startswith("test_") and (f'"{code}"' in text or f'"[{code}]"' in text):
            found.append(path)
    return found


def test_every_code_is_covered() -> None:
    missing = sorted(set(CODES) - set(corpus_codes()) - set(FRAMEWORK_CODES))
    assert not missing, f"no corpus case, generated case or runtime case expects {missing}"


@pytest.mark.parametrize("code", sorted(FRAMEWORK_CODES))
def test_framework_code_is_tested_elsewhere(code: str) -> None:
    assert code in CODES, f"{code} is no longer a code: drop it from FRAMEWORK_CODES"
    assert framework_tests_mentioning(code), (
        f"[{code}] comes from {FRAMEWORK_CODES[code]} only; no test outside tests/core and "
        f"tests/diagnostics checks for \"{code}\"")


@pytest.mark.parametrize(("code", "at_least"), [("disconnected", 5), ("shape-mismatch", 5),
                                                ("dtype-mismatch", 2), ("syntax", 3),
                                                ("import-error", 3)])
def test_code_has_several_cases(code: str, at_least: int) -> None:
    assert len(cases_for(code)) >= at_least, f"fewer than {at_least} cases expect [{code}]"


def test_corpus_size() -> None:
    assert len(CASES) >= 60


def test_every_case_has_a_golden() -> None:
    missing = [c.name for c in CASES if not c.with_suffix(".out").exists()]
    assert not missing or UPDATE_GOLDEN, f"cases without a golden .out: {missing}"


def test_harness_reads_expectations() -> None:
    """The expectation reader itself: several markers on a line, @line and @path:line."""
    file = CASES_DIR / "x.gdl"
    spec = parse_case(
        "# memory-limit: 2MB\n"
        "h = f(x)  # a comment # E: shape-mismatch: got [3] # W: mask-ignored: drops\n"
        "# E@7: syntax: unexpected end\n"
        "# E@imports/lib.gdl:3: syntax: `}`\n"
        "# E@0: unknown-model: no model\n", file)
    here = str(file.resolve())
    assert spec.memory_limit == 2 * 10**6
    assert [(e.place, e.severity, e.code, e.text) for e in spec.expectations] == [
        ((here, 2), "error", "shape-mismatch", "got [3]"),
        ((here, 2), "warning", "mask-ignored", "drops"),
        ((here, 7), "error", "syntax", "unexpected end"),
        ((str((CASES_DIR / "imports/lib.gdl").resolve()), 3), "error", "syntax", "`}`"),
        ((None, 0), "error", "unknown-model", "no model"),
    ]
    with pytest.raises(ValueError, match="unknown diagnostic code"):
        parse_case("x = 1  # E: no-such-code: text\n", file)
    with pytest.raises(ValueError, match="message substring"):
        parse_case("x = 1  # E: syntax:\n", file)


def test_harness_rejects_a_wrong_expectation(in_repo: None) -> None:
    """The comparison can fail: a case whose expectation names the wrong line fails."""
    case = CASES_DIR / "shape-mismatch_matmul_inner.gdl"
    spec = parse_case(case.read_text(encoding="utf-8"), case)
    moved = CaseSpec(tuple(Expectation((e.place[0], e.place[1] + 1), e.severity, e.code,
                                       e.text, e.written_at) for e in spec.expectations),
                     spec.memory_limit, spec.model)
    outcome = compile_case(relative(case), spec)
    with pytest.raises(pytest.fail.Exception):
        check_expectations(outcome, moved, REPO)
    renamed = CaseSpec(tuple(Expectation(e.place, e.severity, e.code, "no such words anywhere",
                                         e.written_at) for e in spec.expectations),
                       spec.memory_limit, spec.model)
    with pytest.raises(pytest.fail.Exception):
        check_expectations(outcome, renamed, REPO)


# --- the real command line -------------------------------------------------------------

CLI_CASES = ["syntax_several_recovered", "shape-mismatch_matmul_inner", "disconnected_gan_discriminator",
             "optimizer-coverage_forgot_encoder", "import-error_missing_file",
             "memory-limit_large_embedding"]


def run_cli(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "graphdsl.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def cli_args(case: Path, spec: CaseSpec) -> list[str]:
    args = ["compile", relative(case)]
    if spec.memory_limit is not None:
        args += ["--memory-limit", str(spec.memory_limit)]
    if spec.model is not None:
        args += ["--model", spec.model]
    return args


def cli_case(name: str) -> tuple[Path, CaseSpec]:
    case = CASES_DIR / f"{name}.gdl"
    assert case.exists(), f"CLI_CASES names a missing case {name}"
    return case, parse_case(case.read_text(encoding="utf-8"), case)


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_reports_errors(name: str) -> None:
    case, spec = cli_case(name)
    result = run_cli(cli_args(case, spec))
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1, result.stderr
    location = re.escape(relative(case)) + r":\d+:\d+: error: "
    assert re.search("^" + location, result.stderr, re.MULTILINE), result.stderr
    assert re.search(r"^\s+\|\s*\^~*\s*$", result.stderr, re.MULTILINE), result.stderr
    golden = case.with_suffix(".out")
    if golden.exists():  # the CLI prints exactly what the API renders, then a summary line
        expected = golden.read_text(encoding="utf-8")
        assert normalise_paths(result.stderr, [REPO]).startswith(expected)


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_json(name: str) -> None:
    case, spec = cli_case(name)
    result = run_cli([*cli_args(case, spec), "--json"])
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is False
    got = Counter((d["span"]["line"] if d["span"] else 0, d["severity"], d["code"])
                  for d in data["diagnostics"])
    want = Counter((e.place[1], e.severity, e.code) for e in spec.expectations)
    assert got == want


def test_cli_never_shows_a_traceback() -> None:
    """Every case through the real command: exit 1 (errors) or 0 (warnings only), never an
    internal error. One process for the whole corpus keeps this fast."""
    script = (
        "import sys, io, contextlib\n"
        "from graphdsl.cli.main import main\n"
        "codes = {}\n"
        "for arg in sys.argv[1:]:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        code = main(arg.split('\\x1f'))\n"
        "    print(code, 'Traceback' in err.getvalue() or 'internal error' in err.getvalue())\n"
    )
    specs = [(c, parse_case(c.read_text(encoding="utf-8"), c)) for c in CASES]
    argv = ["\x1f".join(cli_args(c, s)) for c, s in specs]
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")[:len(specs)]
    bad = []
    for (case, spec), line in zip(specs, lines, strict=True):
        code, crashed = line.split()
        wants = 1 if any(e.severity == "error" for e in spec.expectations) else 0
        if crashed == "True" or int(code) != wants:
            bad.append(f"{case.name}: exit {code}, expected {wants}"
                       + (" (internal error)" if crashed == "True" else ""))
    assert not bad, "\n".join(bad)

