"""`graphdsl train --backend keras` under faults, on the real command line: labels outside
the class count stop with the same diagnostic as in PyTorch (not a TensorFlow stack), and
TensorFlow's C++ start-up lines (oneDNN notices, a `cuInit` failure on a machine without a
GPU) do not reach the user unless GRAPHDSL_TF_LOGS=1 asks for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.keras

PROGRAM = """\
model Classifier {
    input  x     : float32[B, 4]
    target label : int32[B]
    output logits = Dense(3)(x)
    loss crossentropy(logits, label, from_logits = true)
}

train Classifier {
    data  = "data.npz"
    batch = 4
}
"""

TF_LINES = ("absl::InitializeLog", "I0000 ", "E0000 ", "cuInit", "oneDNN")


def test_labels_out_of_range_and_no_tensorflow_chatter(tmp_path: Path) -> None:
    (tmp_path / "p.gdl").write_text(PROGRAM)
    np.savez(tmp_path / "data.npz", x=np.zeros((10, 4), np.float32),
             label=np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 7], np.int32))
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRAPHDSL_TF_LOGS")}  # as a user runs it
    done = subprocess.run([sys.executable, "-m", "graphdsl", "train", "p.gdl", "--backend",
                           "keras", "--out", "run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "`label` holds 7 (2 values outside 0 .. 2): `crossentropy` has 3 classes" \
        in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    chatter = [line for line in done.stderr.splitlines() if any(t in line for t in TF_LINES)]
    assert chatter == []
