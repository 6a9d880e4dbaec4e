"""The wheel is the package a user gets: three folders mapped into one ``graphdsl``.

graphdsl/ -> graphdsl, backends/ -> graphdsl.backends, grammar/ -> graphdsl.grammar
(pyproject.toml's ``[tool.setuptools.package-dir]``, package list from setup.py).
These tests build the real wheel, install it into a bare folder and import it from
a folder that is not the checkout, so nothing can come from the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# source folder -> where its files go inside the wheel
MAPPED = {"graphdsl": "graphdsl", "backends": "graphdsl/backends", "grammar": "graphdsl/grammar"}
# never copied into the build folder (ignored by .gitignore anyway)
NOT_SOURCE = {".git", ".venv", "build", "dist", "runs", ".hypothesis", ".whl", ".gl"}


def _run(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    return proc


def _source_files() -> list[Path]:
    """The checkout's files as git would commit them (tracked + untracked, not ignored)."""
    if (REPO / ".git").exists() and shutil.which("git"):
        out = _run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO
        ).stdout
        return [Path(p) for p in out.split("\0") if p and (REPO / p).is_file()]
    return [
        p.relative_to(REPO)
        for p in REPO.rglob("*")
        if p.is_file()
        and p.relative_to(REPO).parts[0] not in NOT_SOURCE
        and "__pycache__" not in p.parts
        and not any(part.endswith(".egg-info") for part in p.parts)
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("packaging")
    # Build from a clean copy of the sources, not in the checkout: setuptools keeps
    # build/lib between runs and would ship a module that no longer exists.
    src = tmp / "src"
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=src,
    )
    wheels = sorted(dist.glob("graphdsl-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index"]
    _run([*pip, "--target", str(site), str(wheels[0])])
    return {"wheel": wheels[0], "site": site, "tmp": tmp}


def test_wheel_holds_every_source_file_at_its_mapped_path(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as zf:
        names = set(zf.namelist())
    expected = set()
    for rel in _source_files():
        if rel.parts[0] in MAPPED and rel.suffix in {".py", ".lark", ".map"}:
            expected.add("/".join((MAPPED[rel.parts[0]], *rel.parts[1:])))
    assert "graphdsl/__init__.py" in expected
    assert "graphdsl/grammar/graphdsl.lark" in expected
    assert "graphdsl/maps/hf_gpt2.map" in expected   # weight maps are package data
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (a folder without __init__.py?): {missing}"
    stray = sorted(n for n in names if n.split("/")[0] in {"backends", "grammar", "tests"})
    assert not stray, f"installed outside the graphdsl package: {stray}"


def test_wheel_declares_the_console_script(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as zf:
        entry_points = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = zf.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert "graphdsl = graphdsl.cli.main:run" in text


def test_installed_wheel_imports_from_a_foreign_folder(built: dict[str, Path]) -> None:
    site = built["site"]
    elsewhere = built["tmp"] / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys, graphdsl, graphdsl.backends, importlib.resources as r\n"
        "assert r.files('graphdsl.grammar').joinpath('graphdsl.lark').is_file()\n"
        # An editable install of the checkout may sit in site-packages: make sure that
        # no graphdsl module was found through it instead of through the wheel.
        "for name, mod in sorted(sys.modules.items()):\n"
        "    if name == 'graphdsl' or name.startswith('graphdsl.'):\n"
        "        print(name, getattr(mod, '__file__', None))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PYTHONPATH"] = str(site)
    out = _run([sys.executable, "-c", code], cwd=elsewhere, env=env).stdout
    modules = dict(line.split(" ", 1) for line in out.splitlines())
    assert {"graphdsl", "graphdsl.backends", "graphdsl.grammar"} <= modules.keys(), out
    for name, file in modules.items():
        assert file != "None", f"{name} has no __file__ (a namespace package?)"
        path = Path(file).resolve()
        assert path.is_relative_to(site.resolve()), f"{name} imported from {path}, not the wheel"
        assert not path.is_relative_to(REPO), f"{name} imported from the checkout: {path}"


def test_running_package_maps_the_three_folders() -> None:
    """The installation under test (editable in `make test`) joins the folders too."""
    import importlib.resources

    import graphdsl
    import graphdsl.backends
    import graphdsl.grammar

    assert graphdsl.backends.__file__ is not None
    assert graphdsl.grammar.__file__ is not None
    assert importlib.resources.files("graphdsl.grammar").joinpath("graphdsl.lark").is_file()
    assert Path(graphdsl.backends.__file__).parent.name == "backends"
    assert Path(graphdsl.grammar.__file__).parent.name == "grammar"
    assert Path(graphdsl.__file__).parent.name == "graphdsl"
