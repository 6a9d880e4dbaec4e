"""Every shipped example trains as shipped: `graphdsl train examples/X.gdl --steps 2` from
the command line (in-process), with the example's own data file, exits 0 and trains every
model of the file for two steps. An example without a train block says why in its header,
and `graphdsl train` on it stops with a diagnostic before a model is built.

To keep this in seconds, text corpora are cut to their first 3,000 lines (streams._lines is
wrapped; the file is still opened, decompressed and tokenised as shipped): scoring the
validation tenth of the whole Shakespeare corpus would take most of a minute per model.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from graphdsl.cli.main import main
from graphdsl.runtime import streams

from .conftest import ALL_EXAMPLES, EXAMPLES

pytestmark = pytest.mark.torch

WITHOUT_TRAIN_BLOCK = {"bert_base": "no-loss", "gpt2_small": "bad-data", "lstm_lm": "bad-data",
                       "lstm_seq2seq": "no-loss", "mobilenet_v2": "bad-data",
                       "resnet18": "bad-data", "resnext50": "bad-data", "unet_pets": "bad-data"}


@pytest.fixture
def short_corpora(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = streams._lines
    monkeypatch.setattr(streams, "_lines", lambda path: itertools.islice(lines(path), 3000))


def test_the_list_of_examples_without_a_train_block_is_current() -> None:
    without = {stem for stem in ALL_EXAMPLES
               if not re.search(r"^train \w+ \{", (EXAMPLES / f"{stem}.gdl").read_text(),
                                flags=re.M)}
    assert without == set(WITHOUT_TRAIN_BLOCK)


@pytest.mark.parametrize("stem", [s for s in ALL_EXAMPLES if s not in WITHOUT_TRAIN_BLOCK])
def test_the_example_trains_as_shipped(stem: str, tmp_path: Path, short_corpora: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(EXAMPLES / f"{stem}.gdl"), "--steps", "2", "--batch", "16",
                 "--out", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    runs = json.loads(captured.out)["runs"]
    trained = set(re.findall(r"^train (\w+) \{", (EXAMPLES / f"{stem}.gdl").read_text(),
                             flags=re.M))
    assert {r["model"] for r in runs} == trained
    for run in runs:
        assert run["steps"] == 2 and run["valid"], run
        assert Path(run["weights"]).is_file()


@pytest.mark.parametrize("stem", sorted(WITHOUT_TRAIN_BLOCK))
def test_an_example_without_a_train_block_says_why(stem: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    text = (EXAMPLES / f"{stem}.gdl").read_text()
    header = text.split("\n\n")[0]
    assert "No train block:" in header
    assert main(["train", str(EXAMPLES / f"{stem}.gdl"), "--out", str(tmp_path)]) == 1
    assert f"[{WITHOUT_TRAIN_BLOCK[stem]}]" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "stopped before anything was built or written"
