"""`graphdsl train` / `eval` under user and environment faults, in-process: each ends in a
diagnostic and exit 1, never "internal error" (exit 70). And `eval` scores every sample
of `--data`, with the model the checkpoint names.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from graphdsl.cli.main import main

pytestmark = pytest.mark.torch

PROGRAM = """\
model Classifier {
    input  x     : float32[B, 4]
    target label : int32[B]
    output logits = Dense(3)(x)
    loss crossentropy(logits, label, from_logits = true)
}

model Other {
    input  x : float32[B, 4]
    target y : float32[B, 2]
    output p = Dense(2)(x)
    loss mse(p, y)
}

train Classifier {
    data  = "data.npz"
    batch = 8
}
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((50, 4)).astype(np.float32),
             label=rng.integers(0, 3, 50).astype(np.int32))
    path = tmp_path / "p.gdl"
    path.write_text(PROGRAM)
    return path


def train(program: Path, out: Path, *extra: str) -> int:
    return main(["train", str(program), "--model", "Classifier", "--out", str(out),
                 "--steps", "2", "--json", *extra])


def test_labels_out_of_range_stop_before_a_step(program: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 4), np.float32),
             label=np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 7], np.int32))
    assert train(program, tmp_path / "run", "--data", str(tmp_path / "bad.npz")) == 1
    err = capsys.readouterr().err
    assert "`label` holds 7 (2 values outside 0 .. 2): `crossentropy` has 3 classes" in err
    assert "[bad-data]" in err and "internal error" not in err


def test_a_full_disk_is_an_error_not_a_crash(program: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from graphdsl.runtime import checkpoint

    def full(path: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full)
    assert train(program, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "internal error" not in err


@pytest.mark.parametrize("pointer", ["{", '{"weights": "x"}', "[]"])
def test_resume_from_a_malformed_latest_json_is_an_error(
        program: Path, tmp_path: Path, pointer: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "latest.json").write_text(pointer)
    assert train(program, out, "--resume") == 1
    err = capsys.readouterr().err
    assert "[bad-checkpoint]" in err and "internal error" not in err


def test_resume_from_a_malformed_state_file_is_an_error(
        program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert train(program, out, "--steps", "1") == 0
    pointer = json.loads((out / "latest.json").read_text())
    (out / pointer["state"]).write_bytes(b"\x08\0\0\0\0\0\0\0{}      ")
    capsys.readouterr()
    assert train(program, out, "--resume") == 1
    assert "[bad-checkpoint]" in capsys.readouterr().err


def test_eval_scores_every_sample_of_the_data_file(program: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert train(program, out) == 0
    capsys.readouterr()
    weights = str(out / "final.safetensors")
    # no --model: the checkpoint names Classifier (the program also defines Other)
    assert main(["eval", str(program), "--weights", weights, "--data",
                 str(tmp_path / "data.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "Classifier" and result["samples"] == 50
    assert main(["eval", str(program), "--weights", weights, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 5  # the held-out tenth
    assert main(["eval", str(program), "--weights", weights]) == 0
    assert "5 samples (the validation share of data.npz)" in capsys.readouterr().out


def test_eval_of_weights_of_a_model_the_program_lacks(program: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    out = tmp_path / "run"
    assert train(program, out) == 0
    other = tmp_path / "other.gdl"
    other.write_text(PROGRAM.split("model Other")[0].replace("Classifier", "Renamed"))
    capsys.readouterr()
    assert main(["eval", str(other), "--weights", str(out / "final.safetensors")]) == 1
    assert "holds weights of model `Classifier`" in capsys.readouterr().err


def test_fast_dev_run_needs_no_data_and_keeps_nothing(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    path = tmp_path / "nodata.gdl"
    path.write_text(PROGRAM.replace('    data  = "data.npz"\n', ""))
    assert main(["train", str(path), "--model", "Classifier", "--json"]) == 1
    assert "--fast-dev-run" in capsys.readouterr().err  # the help names the way out
    assert main(["train", str(path), "--model", "Classifier", "--fast-dev-run", "3",
                 "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["steps"] == 3 and run["valid"]["loss"] > 0
    assert not Path(run["weights"]).exists()
    assert not (tmp_path / "runs").exists()
