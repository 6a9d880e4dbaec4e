"""backends/source_copy.py: the functions an export copies, with what they read, run the
same outside graphdsl — helpers of the same name from two modules included."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from graphdsl.backends.source_copy import copy_functions

FIRST = '''
SCALE = 3


def _normalise(x):
    return x * SCALE


def first(x):
    return _normalise(x) + 1
'''

SECOND = '''
from graphdsl_copy_test_tables import OFFSETS


def _normalise(x, y):
    return x - y + OFFSETS[0]


def second(x, y):
    return _normalise(x, y) * 2
'''

TABLES = '''
OFFSETS = (10, 20)
'''


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    for name, text in (("graphdsl_copy_test_tables", TABLES), ("graphdsl_copy_test_a", FIRST),
                       ("graphdsl_copy_test_b", SECOND)):
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield (importlib.import_module("graphdsl_copy_test_a"),
           importlib.import_module("graphdsl_copy_test_b"))
    for name in ("graphdsl_copy_test_tables", "graphdsl_copy_test_a", "graphdsl_copy_test_b"):
        sys.modules.pop(name, None)


def test_same_named_helpers_and_imported_tables_are_copied_apart(modules: tuple) -> None:
    first, second = modules
    imports, source = copy_functions([("op_first", first.first), ("op_second", second.second),
                                      ("op_again", first.first)])
    assert imports == []
    namespace: dict = {}
    exec(compile(source, "<copy>", "exec"), namespace)
    assert namespace["op_first"](2) == first.first(2) == 7
    assert namespace["op_second"](5, 1) == second.second(5, 1) == 28
    assert namespace["op_again"] is namespace["op_first"]
    assert "def _normalise_graphdsl_copy_test_b(x, y):" in source
    assert "OFFSETS = (10, 20)" in source
