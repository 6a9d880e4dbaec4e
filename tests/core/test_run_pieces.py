"""Pieces of a training run that need no framework: checkpoint dtypes converted exactly
(or refused), the monitor of early stopping and best checkpoints, the progress display at
80 columns, and the run folder's refusal to mix two runs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import graphdsl
from graphdsl.runtime import checkpoint as ckpt

SMALL = """
model Small {
    input  x : float32[B, 3]
    target y : float32[B, 2]
    output p = Dense(2)(x)
    loss fit = mse(p, y)
    loss reg = 0.5 * mean(square(p))
}
"""


def small_checkpoint(kernel: np.ndarray, bias: np.ndarray) -> tuple[Any, ckpt.Checkpoint]:
    model = graphdsl.compile(SMALL).model()
    return model, ckpt.Checkpoint({"dense.kernel": kernel, "dense.bias": bias},
                                  ckpt.model_metadata(model, "small.gdl"))


def test_float16_and_small_int64_tensors_convert_exactly_and_say_so() -> None:
    kernel = np.arange(6, dtype=np.float16).reshape(3, 2) / 4
    model, checkpoint = small_checkpoint(kernel, np.array([1, -3], np.int64))
    notes: list[str] = []
    arrays = ckpt.select(model, checkpoint, conversions=notes)
    assert arrays["dense.kernel"].dtype == np.float32
    assert arrays["dense.bias"].dtype == np.float32
    np.testing.assert_array_equal(arrays["dense.kernel"], kernel.astype(np.float64))
    np.testing.assert_array_equal(arrays["dense.bias"], [1.0, -3.0])
    assert any("`dense.kernel` is float16, converted exactly to float32" in n for n in notes)
    assert any("`dense.bias` is int64, converted exactly to float32" in n for n in notes)


def test_an_int64_beyond_float32_is_refused_not_wrapped_or_rounded() -> None:
    model, checkpoint = small_checkpoint(np.zeros((3, 2), np.float32),
                                         np.array([2 ** 24 + 1, 0], np.int64))
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.select(model, checkpoint)
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.code == "checkpoint-mismatch"
    assert "`dense.bias` is int64 and its values do not convert exactly to float32" in \
        str(diagnostic.notes[0].message)


def test_float64_is_rounded_with_a_note_and_an_overflow_is_refused() -> None:
    model, checkpoint = small_checkpoint(np.full((3, 2), 0.1, np.float64),
                                         np.zeros(2, np.float32))
    notes: list[str] = []
    arrays = ckpt.select(model, checkpoint, conversions=notes)
    assert arrays["dense.kernel"].dtype == np.float32
    assert any("rounded to float32" in n for n in notes)
    model, checkpoint = small_checkpoint(np.full((3, 2), 1e300, np.float64),
                                         np.zeros(2, np.float32))
    with pytest.raises(ckpt.CheckpointError):
        ckpt.select(model, checkpoint)


def test_monitor_modes() -> None:
    from graphdsl.runtime.callbacks import EpochSummary
    from graphdsl.runtime.callbacks.monitor import Monitor

    summary = EpochSummary(1, 3, {"loss": 2.0, "accuracy": 0.5}, {"loss": 1.0, "fit": 0.7,
                                                                  "accuracy": 0.6})
    assert Monitor("loss", "auto", ["fit"]).mode == "min"
    assert Monitor("fit", "auto", ["fit"]).mode == "min"
    assert Monitor("accuracy", "auto", ["fit"]).mode == "max"
    assert Monitor("loss", "auto", []).value(summary) == 1.0  # validation first
    assert Monitor("loss", "auto", []).value(EpochSummary(1, 3, {"loss": 2.0}, {})) == 2.0
    low = Monitor("loss", "min", [], min_delta=0.1)
    assert low.better(0.85, 1.0) and not low.better(0.95, 1.0) and low.better(5.0, None)
    assert Monitor("accuracy", "max", []).better(0.7, 0.6)


def test_live_progress_fits_80_columns_and_ends_on_the_final_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from graphdsl.runtime.callbacks import StepRecord, progress

    screen = io.StringIO()
    console = Console(file=screen, width=80, force_terminal=True, color_system=None,
                      highlight=False)
    monkeypatch.setattr(progress, "console", lambda: console)

    class Loop:
        total, step, epoch = 40, 0, 0
        term_weights = {"fit": 1.0, "a_rather_long_regularisation_term_name": 0.01}
        last_record: Any = None

    loop = Loop()
    bar = progress.LiveProgress("AModelWithAVeryLongNameIndeed")
    bar.on_train_begin(loop)  # type: ignore[arg-type]
    for step in range(1, 41):
        values = {"loss": 1.0 / step, "fit": 0.5 / step,
                  "a_rather_long_regularisation_term_name": 0.5 / step, "accuracy": step / 40}
        raw = {"fit": 0.5 / step, "a_rather_long_regularisation_term_name": 50.0 / step}
        loop.last_record = StepRecord(step, 1, values, raw, {"*": 1e-3}, 8, 800.0, step * 0.01)
        bar.on_step_end(loop, loop.last_record)  # type: ignore[arg-type]
    bar.on_train_end(loop, "finished")  # type: ignore[arg-type]
    text = screen.getvalue()
    final = text[text.rfind("40/40"):]
    assert "40/40" in text and "loss 0.025" in final and "accuracy 1" in final
    assert "a_rather_long_regularisation_term_name 1.25 (x0.01 = 0.0125)" in final
    plain = [line for chunk in text.split("\r") for line in chunk.split("\n")]
    stripped = [line.replace("\x1b[2K", "").replace("\x1b[1A", "").replace("\x1b[?25l", "")
                .replace("\x1b[?25h", "") for line in plain]
    assert max(len(line) for line in stripped) <= 80


def test_an_out_folder_with_files_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    from graphdsl.runtime.errors import TrainError
    from graphdsl.runtime.run_folder import LOCK_NAME, check_folder

    check_folder(str(tmp_path / "new"), resume=False, force=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / LOCK_NAME).write_text("")
    check_folder(str(tmp_path / "empty"), resume=False, force=False)  # only a lock: fine
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(TrainError) as err:
        check_folder(str(tmp_path / "used"), resume=False, force=False)
    assert err.value.diagnostics[0].code == "run-folder"
    check_folder(str(tmp_path / "used"), resume=True, force=False)
    check_folder(str(tmp_path / "used"), resume=False, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainError):
        check_folder(str(tmp_path / "file"), resume=False, force=False)


def test_monitor_must_name_a_logged_value_at_compile_time() -> None:
    def source(name: str) -> str:
        return SMALL + f'train Small {{ monitor = "{name}"  patience = 2 }}'

    with pytest.raises(graphdsl.GraphdslError) as err:
        graphdsl.compile(source("fitt"))
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.code == "train-setting" and "`fitt`" in diagnostic.message
    assert "`fit`" in str(diagnostic.help)
    for name in ("loss", "fit", "reg"):
        graphdsl.compile(source(name))


def test_weights_with_nan_are_never_written_nor_pointed_at(tmp_path: Path) -> None:
    import json

    from graphdsl.runtime.errors import TrainError
    from graphdsl.runtime.run_folder import RunFolder

    model = graphdsl.compile(SMALL).model()
    folder = RunFolder(str(tmp_path), model, "small.gdl")
    good = {"dense.kernel": np.ones((3, 2), np.float32), "dense.bias": np.zeros(2, np.float32)}
    folder.write("checkpoints/step-00000001.safetensors", good, None, step=1, epoch=0)
    bad = {**good, "dense.bias": np.array([0.0, np.inf], np.float32)}
    with pytest.raises(TrainError) as err:
        folder.write("checkpoints/step-00000002.safetensors", bad, None, step=2, epoch=0)
    assert "`dense.bias`" in err.value.diagnostics[0].message
    assert not (tmp_path / "checkpoints" / "step-00000002.safetensors").exists()
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 1
