"""`graphdsl compile FILE --check-parity`: both backends from the same random canonical
weights, the largest difference per output and loss term in a table, exit 0 when every
difference is within 1e-5 plus 1e-5 of the largest value.

The program is examples/lstm_lm.gdl shrunk (tests/torch/conftest.py), written to a
temporary file: two models (tied and untied), each with an output and a loss term. The
check runs the command line's ``main`` in the test process; the wrong program runs as a
real process (exit code, no traceback).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..keras.conftest import run_cli, run_in_process
from ..torch.conftest import example_source

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def test_check_parity_prints_every_output_and_term_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "lm.gdl").write_text(example_source("lstm_lm"), encoding="utf-8")
    code, out, err = run_in_process(["compile", str(tmp_path / "lm.gdl"), "--check-parity"])
    assert code == 0, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err
    for model in ("TiedLM", "UntiedLM"):
        assert f"parity: model {model}" in out
    rows = re.findall(r"(output logits|loss crossentropy)\s*[│|]\s*([0-9.e+-]+)\s*[│|]\s*"
                      r"([0-9.e+-]+)\s*[│|]\s*(\w+)", out)
    assert len(rows) == 4, out
    for _, difference, allowed, verdict in rows:
        assert float(difference) <= 1e-5 and verdict == "ok"
        assert 1e-5 <= float(allowed) < 1e-3  # 1e-5 absolute plus 1e-5 of the largest value
    assert "DIFFERS" not in out


def test_check_parity_on_a_wrong_program_reports_the_error_without_traceback(
        tmp_path: Path) -> None:
    (tmp_path / "bad.gdl").write_text(
        "model Bad {\n    input x : float32[B, 4]\n    output p = Dense(2)(xx)\n}\n",
        encoding="utf-8")
    done = run_cli(["compile", "bad.gdl", "--check-parity"], tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert "bad.gdl:3:" in done.stderr and "error" in done.stderr


def test_check_parity_takes_large_values_and_strided_images(tmp_path: Path) -> None:
    """Logits of 1e8 differ by more than 1e-5 in float32 yet agree relatively; four
    stride-2 convolutions need images larger than the default size of a symbolic axis."""
    (tmp_path / "big.gdl").write_text("""
model Big {
    input x : float32[B, H, W, 3]
    h = Conv2D(8, 3, strides = 2, padding = "same")(x)
    h = Conv2D(8, 3, strides = 2)(h)
    h = Conv2D(8, 3, strides = 2)(h)
    h = Conv2D(8, 3, strides = 2)(h)
    inference output y = 1e8 * Dense(4)(GlobalAveragePooling2D()(h))
}
""", encoding="utf-8")
    code, out, err = run_in_process(["compile", str(tmp_path / "big.gdl"), "--check-parity"])
    assert code == 0, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err
    assert "sizes: B = 2, H = 32, W = 32" in out
    (row,) = re.findall(r"output y\s*[│|]\s*([0-9.e+-]+)\s*[│|]\s*([0-9.e+-]+)\s*[│|]\s*(\w+)",
                        out)
    assert row[2] == "ok" and float(row[0]) <= float(row[1])
