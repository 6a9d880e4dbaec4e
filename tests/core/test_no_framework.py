"""The core never imports a deep-learning framework.

A fresh interpreter (``python -I``: no PYTHONPATH, no sitecustomize, nothing imported
yet) installs a meta-path finder that records every attempt to import torch, tensorflow,
keras or jax and refuses it, then compiles every example through the API and through
`graphdsl compile` (plain, and with --json --dot). It reports which framework imports were
attempted and which framework modules ended up in sys.modules: both must be empty, and
every example must compile exactly as it does with the frameworks importable (so nothing
in the core quietly falls back when an import fails).

tests/block_frameworks.py (``pytest --block-frameworks``) hides the frameworks from the
whole test run; this file checks the stronger property that nothing even tries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.gdl"))
pytestmark = pytest.mark.slow  # two fresh interpreters compile every example

FRAMEWORKS = ("torch", "torchvision", "torchaudio", "tensorflow", "tf_keras", "keras", "jax",
              "jaxlib")

_PROBE = r"""
import contextlib, importlib.abc, io, json, os, sys, tempfile

FRAMEWORKS = set(sys.argv[2].split(","))
attempts = []


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in FRAMEWORKS:
            attempts.append(fullname)
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


if sys.argv[1] == "block":
    sys.meta_path.insert(0, Refuse())

import graphdsl
from graphdsl import GraphdslError
from graphdsl.cli.main import main

results = {}
folder = tempfile.mkdtemp()
for path in sys.argv[3:]:
    name = os.path.basename(path)
    try:
        program = graphdsl.compile_file(path)
        api = {m: (g.parameter_count, g.graph_hash()) for m, g in program.models.items()}
    except GraphdslError as err:
        api = sorted(d.code for d in err.diagnostics if d.is_error)
    codes = []
    for extra in ([], ["--json", "--dot", os.path.join(folder, name + ".dot")]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            codes.append(main(["compile", path, *extra]))
    results[name] = {"api": api, "cli": codes}

loaded = sorted(n for n, m in sys.modules.items()
                if m is not None and n.partition(".")[0] in FRAMEWORKS)
print(json.dumps({"attempts": sorted(set(attempts)), "loaded": loaded, "results": results}))
"""


def probe(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, mode, ",".join(FRAMEWORKS),
         *map(str, EXAMPLES)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def blocked() -> dict:
    return probe("block")


def test_there_are_examples_to_compile() -> None:
    assert len(EXAMPLES) >= 4
    assert {"gpt2_small.gdl", "bert_base.gdl", "resnet18.gdl", "lstm_lm.gdl"} <= \
        {p.name for p in EXAMPLES}


def test_compiling_attempts_no_framework_import(blocked: dict) -> None:
    assert blocked["attempts"] == []


def test_compiling_leaves_no_framework_in_sys_modules(blocked: dict) -> None:
    assert blocked["loaded"] == []


def test_the_published_architectures_compile_without_frameworks(blocked: dict) -> None:
    for name in ("gpt2_small.gdl", "bert_base.gdl", "resnet18.gdl", "lstm_lm.gdl"):
        result = blocked["results"][name]
        assert isinstance(result["api"], dict) and result["api"], (name, result)
        assert result["cli"] == [0, 0], (name, result)


def test_no_example_compiles_differently_without_frameworks(blocked: dict) -> None:
    free = probe("free")
    assert free["loaded"] == [], "the core imported a framework that was importable"
    assert blocked["results"] == free["results"]
    for name, result in blocked["results"].items():
        assert 70 not in result["cli"], f"{name}: internal error"
