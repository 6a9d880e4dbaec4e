"""`graphdsl train` / `eval` options, checked before any framework is imported: values the
train block rejects are rejected here too (exit 2, the same words), `--out` that cannot
be written is refused before anything is built, every option says what it does, errors
exit 1 even when stderr's reader has gone, and shell completion lists what exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphdsl.cli.main import build_parser, main

PROGRAM = """\
model Tiny {
    input x : float32[B, 4]
    target y : float32[B, 2]
    output p = Dense(2)(x)
    loss mse(p, y)
}

train Tiny {
    epochs = 1
}
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gdl"
    path.write_text(PROGRAM)
    return path


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--batch", "0", "must be at least 1, got 0"),
    ("--batch", "-5", "must be at least 1, got -5"),
    ("--epochs", "0", "must be at least 1, got 0"),
    ("--steps", "-1", "must be at least 1, got -1"),
    ("--steps", "0", "must be at least 1, got 0"),
    ("--lr", "nan", "must be a positive number, got nan"),
    ("--lr", "-1", "must be a positive number, got -1.0"),
    ("--lr", "inf", "must be a positive number, got inf"),
    ("--seed", "-3", "must be in 0 .. 4,294,967,295, got -3"),
    ("--seed", "1e20", "'1e20' is not an integer"),
    ("--seed", "100000000000000000000", "must be in 0 .. 4,294,967,295"),
    ("--fast-dev-run", "0", "must be at least 1, got 0"),
])
def test_a_value_the_train_block_rejects_is_a_usage_error(
        program: Path, option: str, value: str, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(program), option, value]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {message}" in err


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("lr", "-1.0", "must be a positive number"), ("seed", "-3", "must be in 0 .."),
    ("steps", "0", "must be at least 1"),
])
def test_the_train_block_says_the_same(tmp_path: Path, setting: str, value: str,
                                       message: str, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    path = tmp_path / "p.gdl"
    path.write_text(PROGRAM.replace("epochs = 1", f"{setting} = {value}"))
    assert main(["compile", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_eval_rejects_bad_values_too(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(program), "--weights", "w.safetensors", "--batch", "0"]) == 2


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_an_out_folder_that_cannot_exist_is_refused_before_training(
        program: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if where == "file" else blocker / "run"
    assert main(["train", str(program), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: {blocker} is a file" in err
    assert blocker.read_text() == "a file"


def test_a_read_only_out_folder_is_refused(program: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """chmod does not stop root, so the refusal the file system gives is simulated."""
    import tempfile

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    assert main(["train", str(program), "--out", str(tmp_path / "run")]) == 2
    assert "cannot write in" in capsys.readouterr().err


def test_missing_data_is_found_before_a_framework_is_needed(
        program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(program), "--data", str(tmp_path / "none.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_missing_data_file_in_the_train_block_is_found_at_compile_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.gdl"
    path.write_text(PROGRAM.replace("epochs = 1", 'data = "gone.npz"'))
    assert main(["compile", str(path)]) == 0  # a warning: --data may still supply it
    err = capsys.readouterr().err
    assert 'p.gdl:9:12: warning: `data`: no file "gone.npz"' in err


def test_every_train_and_eval_option_has_a_description() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("train", "eval"):
        undocumented = [a.dest for a in commands[name]._actions if not a.help]
        assert undocumented == [], f"{name}: {undocumented}"


def test_bash_completion_lists_the_commands_and_their_options(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -o filenames -F _graphdsl graphdsl" in script
    assert "compile train eval convert predict export completion" in script
    assert "--fast-dev-run" in script and "--weights" in script
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_errors_exit_1_when_the_reader_of_stderr_has_gone(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gdl"
    broken.write_text("model M {\n    input x : float32[B, 4]\n    output Dense(2)(xx)\n}\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read what graphdsl writes to stderr
    try:
        result = subprocess.run([sys.executable, "-m", "graphdsl", "compile", str(broken)],
                                stderr=write_end, stdout=subprocess.DEVNULL, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 1
