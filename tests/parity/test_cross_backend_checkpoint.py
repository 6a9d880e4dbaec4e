"""One checkpoint for both backends, on the real command line.

The tied LSTM language model of tests/keras/conftest.py (TINY_LM: two loss terms and a
metric) trains a few steps with `graphdsl train --backend torch` in a process of its own;
`graphdsl eval --backend keras --weights .../final.safetensors --json` then reports the same
loss, terms and metric as `graphdsl eval --backend torch` (within 1e-5), and the same as the
run's own last validation. Then the other way round: trained by Keras, evaluated by both.
The two evaluations run the command line's ``main`` in the test process (each backend's
framework is imported once for the whole session instead of once per command).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphdsl.runtime import checkpoint as ckpt

from ..keras.conftest import run_cli, run_in_process, write_tiny_lm

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def evaluate(folder: Path, backend: str, weights: Path) -> dict[str, Any]:
    code, out, err = run_in_process(["eval", str(folder / "tiny_lm.gdl"), "--backend", backend,
                                     "--weights", str(weights), "--json", "--device", "cpu"])
    assert code == 0, err[-3000:]
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("trained_by", ["torch", "keras"])
def test_trained_in_one_backend_evaluates_to_the_same_loss_in_both(tmp_path: Path,
                                                                   trained_by: str) -> None:
    write_tiny_lm(tmp_path)
    done = run_cli(["train", "tiny_lm.gdl", "--backend", trained_by, "--steps", "4",
                    "--out", "run", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)["runs"][0]
    assert report["steps"] == 4
    weights = tmp_path / "run" / "final.safetensors"  # one model trains: --out is its folder
    assert (tmp_path / report["weights"]).resolve() == weights.resolve()
    saved = ckpt.load_checkpoint(str(weights))
    assert sorted(saved.tensors) == ["dense.bias", "embed.embeddings", "lstm.bias",
                                     "lstm.kernel", "lstm.recurrent_kernel"]
    results = {backend: evaluate(tmp_path, backend, weights) for backend in ("torch", "keras")}
    torch_result, keras_result = results["torch"], results["keras"]
    assert torch_result["ok"] and keras_result["ok"]
    assert torch_result["samples"] == keras_result["samples"] == 8
    keys = {"loss", "task", "decay", "accuracy"}
    assert keys <= set(torch_result) and set(torch_result) == set(keras_result)
    for key in keys:
        assert keras_result[key] == pytest.approx(torch_result[key], abs=1e-5), key
    # ... and both are the validation the training run reported at its end
    for key in keys:
        assert results[trained_by][key] == pytest.approx(report["valid"][key], abs=1e-5), key
