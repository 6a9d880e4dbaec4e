"""`graphdsl train --backend keras` under interruptions and faults: Ctrl-C in the middle
of a step with dropout, then `--resume`, ends bit-identical to an uninterrupted run (the
step's randomness is a function of (seed, step), saved with the training state); a NaN
gradient under a finite loss stops the run before the step is applied."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import graphdsl
from graphdsl.backends.keras.train import KerasEngine, train_model
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime import training
from graphdsl.runtime.errors import Interrupted, TrainError

from ..torch.test_run_control import NOISY, SQRT_AT_ZERO, same, sqrt_at_zero_data, write_data

pytestmark = pytest.mark.keras


def weights(path: Path) -> dict[str, np.ndarray]:
    return dict(ckpt.load_checkpoint(str(path)).tensors)


class InterruptingEngine(KerasEngine):
    """Sends itself SIGINT once step ``at`` has been applied, before the loop counts it."""

    at = 5

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.steps = 0

    def train_step(self, batch: Any, lr_factor: float) -> Any:
        result = super().train_step(batch, lr_factor)
        self.steps += 1
        if self.steps == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return result


@pytest.mark.parametrize("accumulate", [1, 2])
def test_ctrl_c_then_resume_is_bit_identical_with_dropout(tmp_path: Path,
                                                          accumulate: int) -> None:
    write_data(tmp_path / "data.npz")
    program = graphdsl.compile(NOISY, base_dir=str(tmp_path))
    model = program.model()
    common = {"device": "cpu", "checkpoint_every": 1, "accumulate": accumulate}
    train_model(program, model, common, out=str(tmp_path / "whole"), quiet=True)
    with pytest.raises(Interrupted):
        training.train_model(program, model, InterruptingEngine, common,
                             out=str(tmp_path / "cut"), quiet=True)
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    assert json.loads((cut / "latest.json").read_text())["step"] == 5
    same(weights(cut / "checkpoints" / "step-00000005.safetensors"),
         weights(whole / "checkpoints" / "step-00000005.safetensors"))
    train_model(program, model, common, out=str(cut), resume=True, quiet=True)
    same(weights(cut / "final.safetensors"), weights(whole / "final.safetensors"))
    # dropout did draw: a second run with another seed ends elsewhere
    train_model(program, model, {**common, "seed": 6}, out=str(tmp_path / "other"),
                quiet=True)
    other = weights(tmp_path / "other" / "final.safetensors")
    assert not np.array_equal(other["dense_1.kernel"], weights(whole / "final.safetensors")
                              ["dense_1.kernel"])


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_nan_gradient_under_a_finite_loss_stops_before_the_step(tmp_path: Path,
                                                                  accumulate: int) -> None:
    sqrt_at_zero_data(tmp_path / "data.npz")
    program = graphdsl.compile(SQRT_AT_ZERO, base_dir=str(tmp_path))
    with pytest.raises(TrainError) as err:
        train_model(program, program.model(), {"device": "cpu", "accumulate": accumulate},
                    out=str(tmp_path / "run"), quiet=True)
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.code == "non-finite-gradient"
    assert "`w`" in diagnostic.message
    # with 2 passes a step reads 8 rows: the zero comes a step earlier (step 2)
    bad_step = 3 if accumulate == 1 else 2
    assert f"step {bad_step}" in diagnostic.message
    run = tmp_path / "run"
    assert json.loads((run / "latest.json").read_text())["step"] == bad_step - 1
    assert not (run / "final.safetensors").exists()
    last = run / "checkpoints" / f"step-{bad_step - 1:08d}.safetensors"
    assert np.isfinite(weights(last)["w"]).all()
