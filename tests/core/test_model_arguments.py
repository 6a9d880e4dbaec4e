"""Model arguments from outside: `--set NAME=VALUE` on the commands and ``args={...}`` in
Python override the selected model's formals, checked like a default; checkpoint metadata
records the values used. No framework is needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import graphdsl
from graphdsl.cli.main import main
from graphdsl.runtime import checkpoint as ckpt

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GPT2 = str(EXAMPLES / "gpt2_small.gdl")

SIZES = """\
model Mlp(features: int = 20, hidden: int = 4 * features, act: str = "relu",
          scale: float = 1.0, widths: ints = [3, 5]) {
    input x : float32[B, features]
    inference output y = Dense(hidden, activation = act)(x) * scale
}
"""

TWO = """\
model A(width: int = 3) {
    input x : float32[B, 2]
    inference output y = Dense(width)(x)
}
model B(width: int = 5, depth: int = 1) {
    input x : float32[B, 2]
    inference output y = Dense(width * depth)(x)
}
"""


def test_python_args_override_defaults_and_later_defaults_see_them() -> None:
    program = graphdsl.compile(SIZES, args={"features": 8, "act": "tanh", "scale": 2})
    model = program.model("Mlp")
    assert model.formals == {"features": 8, "hidden": 32, "act": "tanh", "scale": 2.0,
                             "widths": [3, 5]}
    assert model.arguments == {"features": 8, "act": "tanh", "scale": 2}
    # 8 inputs -> 32 units: the kernel and the bias
    assert model.parameter_count == 8 * 32 + 32


def test_compile_file_takes_args_for_the_selected_model_only() -> None:
    program = graphdsl.compile_file(GPT2, model="GPT2", args={"vocab": 64, "d": 16,
                                                             "layers": 1, "heads": 2})
    d, v, c = 16, 64, 1024
    block = 2 * 2 * d + 3 * (d * d + d) + d * d + d + d * 4 * d + 4 * d + 4 * d * d + d
    assert program.model().parameter_count == v * d + c * d + block + 2 * d


def test_without_a_selected_model_each_model_takes_the_names_it_declares() -> None:
    program = graphdsl.compile(TWO, args={"width": 7, "depth": 2})
    assert program.model("A").formals == {"width": 7}
    assert program.model("B").formals == {"width": 7, "depth": 2}
    selected = graphdsl.compile(TWO, model="A", args={"width": 9})
    assert selected.model("A").formals == {"width": 9}


@pytest.mark.parametrize(("args", "code", "text"), [
    ({"featurs": 3}, "unknown-argument", "did you mean `features`?"),
    ({"features": 2.5}, "argument-type", "parameter `features` is an int, got 2.5"),
    ({"act": 3}, "argument-type", "parameter `act` is a str, got 3"),
    ({"widths": [1.5]}, "argument-type", "parameter `widths` is"),
    ({"features": None}, "argument-type", "parameter `features` is an int"),
])
def test_bad_python_args_are_diagnostics_at_the_argument(args: dict, code: str,
                                                         text: str) -> None:
    with pytest.raises(graphdsl.GraphdslError) as info:
        graphdsl.compile(SIZES, args=args)
    # (the elaborator may add a follow-on error where the poisoned formal is used)
    diagnostic = info.value.diagnostics[0]
    assert diagnostic.code == code
    assert diagnostic.span is not None and diagnostic.span.file == "<arguments>"
    assert text in diagnostic.message + " " + (diagnostic.help or "")


def test_set_on_the_command_line_reports_every_bad_value_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "mlp.gdl"
    source.write_text(SIZES)
    code = main(["compile", str(source), "--set", "featurs=3", "--set", "scale=big",
                 "--set", "hidden=16"])
    err = capsys.readouterr().err
    assert code == 1
    assert "<arguments>:1:7: error: `Mlp` has no parameter `featurs`" in err
    assert "did you mean `features`?" in err
    assert "<arguments>:2:13: error: parameter `scale` is a float, got \"big\"" in err
    assert "2 errors" in err


def test_set_values_read_as_literals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "mlp.gdl"
    source.write_text(SIZES)
    code = main(["compile", str(source), "--json", "--set", "features=6", "--set", "act=gelu",
                 "--set", "scale=1e-1", "--set", "widths=[1, 2]"])
    assert code == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["parameters"] == 6 * 24 + 24


def test_set_without_equals_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", GPT2, "--set", "vocab"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval"])
def test_train_and_eval_take_set(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--weights", "none.safetensors"] if command == "eval" else []
    assert main([command, GPT2, "--set", "vocab=oops", *extra]) == 1
    assert "parameter `vocab` is an int" in capsys.readouterr().err


def test_checkpoint_metadata_records_the_values_used() -> None:
    program = graphdsl.compile(SIZES, args={"features": 8})
    meta = ckpt.model_metadata(program.model(), "mlp.gdl")
    assert json.loads(meta["formals"]) == program.model().formals
    assert json.loads(meta["arguments"]) == {"features": 8}
