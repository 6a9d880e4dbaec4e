"""Every shell command in README.md and docs/tutorial.md runs as written.

The commands are the `graphdsl ...` lines of the ```sh and ```console blocks (in a console
block, the lines after `$ `), run in order, in-process, in a scratch copy of the folder the
page runs them from (the repository root for the README, docs/examples/ for the tutorial),
so the runs they write land in tmp_path. Each must exit 0, or the code the page shows
it exits with. Two substitutions, both announced in the pages' source:
- a block under `<!-- docs test: `graphdsl train` commands below run with --steps 1
  appended -->` gets ` --steps 1` on its train commands (the README's main job would take
  minutes);
- the set-up commands (`make ...`, activating the environment) are not run here: they
  install, and `make test` is this suite.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from graphdsl.cli.main import main

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[2]
SET_UP = {"make demo", "make test", "make setup", ". .venv/bin/activate"}
SHORTEN = "<!-- docs test: `graphdsl train` commands below run with --steps 1 appended -->"
EXPECTED_EXIT = {"graphdsl compile tutorial_shape_error.gdl": 1}  # the page shows its error


def commands(page: Path) -> list[str]:
    found: list[str] = []
    shorten = False
    lines = iter(page.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if line.strip() == SHORTEN:
            shorten = True
            continue
        fence = re.match(r"^```(sh|console)\s*$", line)
        if not fence:
            if line.startswith("```"):
                shorten = False
            continue
        for body in lines:
            if body.startswith("```"):
                break
            if fence.group(1) == "console":
                if not body.startswith("$ "):
                    continue  # output
                body = body[2:]
            command = re.split(r"\s+#\s", body, maxsplit=1)[0].strip()
            if not command or command.startswith("#"):
                continue
            if shorten and command.startswith("graphdsl train"):
                command += " --steps 1"
            found.append(command)
        shorten = False
    return found


def scratch_copy(tmp_path: Path, page: str) -> Path:
    """A place to run the page's commands: examples/ linked, docs/examples/ copied."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    if page == "README.md":
        return tmp_path
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    return tmp_path / "docs" / "examples"


@pytest.mark.parametrize("page", ["README.md", "docs/tutorial.md"])
def test_every_shell_command_of_the_page_runs(page: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    found = commands(ROOT / page)
    assert any(c.startswith("graphdsl train") for c in found), "the parser found nothing"
    cwd = scratch_copy(tmp_path, page)
    monkeypatch.chdir(cwd)
    for command in found:
        if command in SET_UP:
            continue
        assert command.startswith("graphdsl "), f"{page}: a command this test cannot run: " \
                                                f"{command!r}"
        try:
            code = main(shlex.split(command)[1:])
        except SystemExit as exc:  # --version and --help exit through argparse
            code = int(exc.code or 0)
        err = capsys.readouterr().err
        assert code == EXPECTED_EXIT.get(command, 0), f"{page}: `{command}` exited {code}:\n{err}"
