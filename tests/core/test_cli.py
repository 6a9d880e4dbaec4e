"""`graphdsl compile`: exit codes, JSON, Graphviz output, colour, and leaving the disk alone
when the program is wrong. Most tests call ``graphdsl.cli.main`` in-process; the exit
codes and the terminal behaviour are also checked on a real process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from graphdsl.cli.main import main

CLEAN = """\
model Tiny {
    input x : float32[B, 4]
    target y : float32[B, 2]
    output p = Dense(2)(x)
    loss mse(p, y)
}
"""

# One warning (mask-ignored), no error.
WARNS = """\
model Pool {
    input ids : int32[B, T]
    e = Embedding(100, 8, mask_zero = true)(ids)
    inference output pooled = mean(e, axis = 1)
}
"""

BROKEN = """\
model Broken {
    input x : float32[B, 4]
    output p = Dense(2)(xx)
    loss mean(square(p))
}
"""

# A tie, a shared layer, a padding mask and a two-term loss: everything --dot styles.
PICTURE = """\
model Pic(vocab: int = 50) {
    input ids : int32[B, T]
    target y : int32[B, T]
    layer embed = Embedding(vocab, 8, mask_zero = true)
    layer proj = Dense(8)
    h = LSTM(8, return_sequences = true)(proj(proj(embed(ids))))
    logits = Dense(vocab, use_bias = false, kernel = embed.embeddings.T)(h)
    output logits
    loss 1.0 * crossentropy(logits, y, from_logits = true) + 0.01 * mean(square(h))
}
"""

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colour_codes(text: str) -> list[str]:
    """SGR sequences that set a colour (30-37, 38, 40-47, 48, 90-97, 100-107)."""
    found = []
    for match in SGR.finditer(text):
        params = [int(p) for p in match.group(1).split(";") if p]
        if any(30 <= p <= 38 or 40 <= p <= 48 or 90 <= p <= 97 or 100 <= p <= 107
               for p in params):
            found.append(match.group(0))
    return found


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    for name, text in (("clean.gdl", CLEAN), ("warns.gdl", WARNS), ("broken.gdl", BROKEN),
                       ("picture.gdl", PICTURE)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- exit codes ------------------------------------------------------------------------


def test_a_clean_program_exits_0_and_summarises_the_model(workdir, capsys) -> None:
    code, out, err = run_main(capsys, "compile", "clean.gdl")
    assert code == 0
    assert err == ""
    assert "model Tiny" in out
    assert "parameters: 10" in out


def test_warnings_still_exit_0(workdir, capsys) -> None:
    code, out, err = run_main(capsys, "compile", "warns.gdl")
    assert code == 0
    assert "warns.gdl:4:31: warning:" in err
    assert "[mask-ignored]" in err
    assert err.rstrip().endswith("1 warning")
    assert "model Pool" in out


def test_errors_exit_1_with_positions_and_a_count(workdir, capsys) -> None:
    code, out, err = run_main(capsys, "compile", "broken.gdl")
    assert code == 1
    assert out == ""
    assert "broken.gdl:3:25: error: `xx` is not defined  [unknown-name]" in err
    assert err.rstrip().endswith("1 error")
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["compile", "missing.gdl"],
    ["compile", "clean.gdl", "--no-such-option"],
    ["compile"],
    [],
    ["frobnicate", "clean.gdl"],
    ["compile", "clean.gdl", "--memory-limit", "lots"],
], ids=["missing-file", "unknown-option", "no-file", "no-command", "unknown-command",
        "bad-memory-limit"])
def test_usage_errors_exit_2(workdir, capsys, argv: list[str]) -> None:
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert "Traceback" not in out + err
    assert "error" in (err or out).lower() or "usage" in (err or out).lower()


def test_a_missing_file_is_named(workdir, capsys) -> None:
    code, _, err = run_main(capsys, "compile", "missing.gdl")
    assert code == 2
    assert "missing.gdl" in err


def test_an_unknown_model_is_an_error_that_lists_the_models(workdir, capsys) -> None:
    code, out, err = run_main(capsys, "compile", "clean.gdl", "--model", "Tinny")
    assert code == 1
    assert "[unknown-model]" in err
    assert "`Tiny`" in err


def test_model_option_selects_one_model(workdir, capsys) -> None:
    (workdir / "two.gdl").write_text(CLEAN + CLEAN.replace("Tiny", "Other"), encoding="utf-8")
    code, out, _ = run_main(capsys, "compile", "two.gdl", "--model", "Other", "--json")
    assert code == 0
    assert [m["name"] for m in json.loads(out)["models"]] == ["Other"]


@pytest.mark.parametrize(("file", "expected"), [("clean.gdl", 0), ("warns.gdl", 0),
                                                ("broken.gdl", 1), ("missing.gdl", 2)])
def test_exit_codes_of_a_real_process(workdir, file: str, expected: int) -> None:
    done = subprocess.run([sys.executable, "-m", "graphdsl.cli", "compile", file],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == expected, done.stderr
    assert "Traceback" not in done.stderr


# --- JSON ------------------------------------------------------------------------------

MODEL_KEYS = {"name", "parameters", "trainable_parameters", "inputs", "outputs", "losses",
              "ties"}
DIAGNOSTIC_KEYS = {"severity", "code", "message", "span", "notes", "help"}
SPAN_KEYS = {"file", "line", "column", "end_line", "end_column"}


def test_json_describes_the_models(workdir, capsys) -> None:
    code, out, err = run_main(capsys, "compile", "picture.gdl", "--json")
    assert code == 0
    assert err == ""
    report = json.loads(out)
    assert set(report) >= {"ok", "diagnostics", "models"}
    assert report["ok"] is True
    (model,) = report["models"]
    assert set(model) >= MODEL_KEYS
    assert model["name"] == "Pic"
    embed, proj, lstm = 50 * 8, 8 * 8 + 8, 4 * (8 * 8 + 8 * 8 + 8)
    assert model["parameters"] == embed + proj + lstm
    assert model["trainable_parameters"] == model["parameters"]
    assert model["inputs"] == [{"name": "ids", "dtype": "int32", "shape": ["B", "T"],
                                "masked": False}]
    (output,) = model["outputs"]
    assert (output["name"], output["shape"], output["masked"]) == ("logits", ["B", "T", 50],
                                                                    True)
    assert [(t["name"], t["weight"]) for t in model["losses"]] == [("crossentropy", 1.0),
                                                                    ("mean", 0.01)]
    assert model["ties"] == [{"parameter": "embed.embeddings", "used_by": ["dense", "embed"]}]


def test_json_carries_warnings_with_positions(workdir, capsys) -> None:
    code, out, err = run_main(capsys, "compile", "warns.gdl", "--json")
    assert code == 0
    assert err == ""
    report = json.loads(out)
    assert report["ok"] is True
    (warning,) = report["diagnostics"]
    assert set(warning) == DIAGNOSTIC_KEYS
    assert (warning["severity"], warning["code"]) == ("warning", "mask-ignored")
    assert set(warning["span"]) == SPAN_KEYS
    assert (warning["span"]["line"], warning["span"]["column"]) == (4, 31)
    assert all(set(n) == {"message", "span"} for n in warning["notes"])


def test_json_of_a_broken_program_is_still_json(workdir, capsys) -> None:
    code, out, err = run_main(capsys, "compile", "broken.gdl", "--json")
    assert code == 1
    assert err == ""
    report = json.loads(out)
    assert report["ok"] is False
    assert report["models"] == []
    (error,) = report["diagnostics"]
    assert (error["severity"], error["code"]) == ("error", "unknown-name")
    assert (error["span"]["line"], error["span"]["column"]) == (3, 25)


# --- Graphviz --------------------------------------------------------------------------


def _dot_graph(path: Path) -> Any:
    """The written picture, read back by pydot (Graphviz's own grammar): nodes by label."""
    import pydot

    (graph,) = pydot.graph_from_dot_data(path.read_text())
    return graph


def _all_nodes(graph: Any) -> list[Any]:
    nodes = list(graph.get_nodes())
    for sub in graph.get_subgraphs():
        nodes += _all_nodes(sub)
    return nodes


def _all_edges(graph: Any) -> list[Any]:
    edges = list(graph.get_edges())
    for sub in graph.get_subgraphs():
        edges += _all_edges(sub)
    return edges


def _label(item: Any) -> str:
    return (item.get("label") or "").strip('"')


def test_dot_marks_ties_shared_layers_masks_and_losses(workdir, capsys) -> None:
    code, _, _ = run_main(capsys, "compile", "picture.gdl", "--dot", "out.dot")
    assert code == 0
    graph = _dot_graph(workdir / "out.dot")
    nodes = {n.get_name(): n for n in _all_nodes(graph) if not n.get_name().startswith("legend")}

    def named(label_start: str) -> list[Any]:
        return [n for n in nodes.values() if _label(n).startswith(label_start)]

    (table,) = named("param embed.embeddings")
    assert table.get("color") == "red"
    edges = [e for e in _all_edges(graph) if not e.get_source().startswith("legend")]
    tie_edges = [e for e in edges if e.get("style") == "dashed" and e.get("color") == "red"]
    assert {e.get_source() for e in tie_edges} == {table.get_name()}
    assert len(tie_edges) == 2, "the table feeds the lookup and the transposed kernel"
    proj_calls = named("proj: Dense")
    assert len(proj_calls) == 2 and all(n.get("penwidth") == "3" for n in proj_calls)
    assert named("lstm: LSTM")[0].get("penwidth") is None
    mask_edges = [e for e in edges if _label(e) == "mask"]
    assert mask_edges and all(e.get("style") == "dotted" for e in mask_edges)
    assert named("loss crossentropy\\nx 1")[0].get("shape") == "diamond"
    assert named("loss mean\\nx 0.01")[0].get("shape") == "diamond"
    legend = [s for s in graph.get_subgraphs() if s.get_name() == "cluster_legend"]
    assert legend, "a legend explains the styles"
    legend_text = " ".join(_label(n) for n in legend[0].get_nodes())
    for words in ("tied", "shared", "mask", "loss"):
        assert words in legend_text


REPEATED = """\
block Res(d: int) {
    input x : float32[B, d]
    output x + Dense(d)(x)
}
model Deep {
    input x : float32[B, 4]
    target y : float32[B, 4]
    h = repeat 5 Res(4)(x)
    output h
    loss mse(h, y)
}
"""


def test_dot_collapses_a_repeat_to_one_copy_with_its_count(workdir, capsys) -> None:
    (workdir / "deep.gdl").write_text(REPEATED)
    assert run_main(capsys, "compile", "deep.gdl", "--dot", "short.dot")[0] == 0
    assert run_main(capsys, "compile", "deep.gdl", "--dot", "long.dot", "--expand")[0] == 0
    short, long = _dot_graph(workdir / "short.dot"), _dot_graph(workdir / "long.dot")
    dense = [n for n in _all_nodes(short) if "Dense" in _label(n)]
    assert len(dense) == 1
    (repeat,) = [s for s in short.get_subgraphs() if "x 5" in _label(s)]
    (copy,) = repeat.get_subgraphs()
    assert _label(copy) == "res.0" and len(copy.get_nodes()) == 2  # the Dense and the add
    (repeat,) = [s for s in long.get_subgraphs() if "repeat x 5" in _label(s)]
    assert sorted(_label(c) for c in repeat.get_subgraphs()) == [f"res.{i}" for i in range(5)]
    assert len([n for n in _all_nodes(long) if "Dense" in _label(n)]) == 5
    # the output still hangs off the (one drawn) copy
    output = next(n for n in _all_nodes(short) if _label(n) == "output h")
    assert any(e.get_destination() == output.get_name() for e in _all_edges(short))


def test_gpt2_small_is_drawn_on_one_screen(workdir, capsys) -> None:
    root = Path(__file__).resolve().parents[2]
    assert run_main(capsys, "compile", str(root / "examples" / "gpt2_small.gdl"), "--dot",
                    "gpt2.dot")[0] == 0
    graph = _dot_graph(workdir / "gpt2.dot")
    drawn = [n for n in _all_nodes(graph) if not n.get_name().startswith("legend")
             and n.get_name() not in ("node", "edge", "graph")]
    # 12 blocks of 13 ops drawn as one copy: about 30 boxes, not 400
    assert 20 < len(drawn) < 40, len(drawn)
    assert graph.get("size") == '"20,11"'  # Graphviz scales a larger drawing down to fit


def test_dot_quotes_any_name(workdir, capsys) -> None:
    from graphdsl.compiler import compile_path
    from graphdsl.ir.summary import to_dot

    model = compile_path(str(workdir / "picture.gdl")).model()
    layer = next(n for n, d in model.graph.nodes(data=True) if d.get("layer") == "proj")
    model.graph.nodes[layer]["layer"] = 'pro"j {x} \\'  # a name no grammar would allow
    (graph,) = __import__("pydot").graph_from_dot_data(to_dot(model))
    assert any('pro\\"j {x}' in _label(n) for n in _all_nodes(graph))


def test_json_carries_the_table_rows(workdir, capsys) -> None:
    code, out, _ = run_main(capsys, "compile", "picture.gdl", "--json")
    assert code == 0
    (model,) = json.loads(out)["models"]
    rows = {r["layer"]: r for r in model["rows"]}
    assert rows["embed"] == {"layer": "embed", "op": "Embedding", "output": "float32[B, T, 8]",
                             "parameters": 50 * 8, "flags": ["tied"]}
    assert rows["proj"]["flags"] == ["shared x2"] and rows["proj"]["parameters"] == 8 * 8 + 8
    assert rows["dense"]["parameters"] == 0 and "tied" in rows["dense"]["flags"]
    assert len(model["rows"]) == model["layers"]


def test_a_broken_program_writes_no_picture(workdir, capsys) -> None:
    code, _, _ = run_main(capsys, "compile", "broken.gdl", "--dot", "out.dot")
    assert code == 1
    assert not (workdir / "out.dot").exists()


def test_a_broken_program_leaves_an_old_picture_and_the_folder_untouched(workdir,
                                                                         capsys) -> None:
    old = workdir / "out.dot"
    old.write_text("digraph old {}\n")
    before = sorted(p.name for p in workdir.iterdir())
    code, _, _ = run_main(capsys, "compile", "broken.gdl", "--dot", "out.dot")
    assert code == 1
    assert old.read_text() == "digraph old {}\n"
    assert sorted(p.name for p in workdir.iterdir()) == before


def test_writing_a_picture_leaves_no_temporary_files(workdir, capsys) -> None:
    before = {p.name for p in workdir.iterdir()}
    code, _, _ = run_main(capsys, "compile", "clean.gdl", "--dot", "out.dot")
    assert code == 0
    assert {p.name for p in workdir.iterdir()} - before == {"out.dot"}


def test_svg_without_graphviz_is_a_usage_error_and_writes_nothing(workdir, capsys,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(workdir / "no-tools-here"))
    code, _, err = run_main(capsys, "compile", "clean.gdl", "--svg", "out.svg")
    assert code == 2
    assert "dot" in err
    assert not (workdir / "out.svg").exists()


# --- colour ----------------------------------------------------------------------------


def test_no_colour_when_output_is_not_a_terminal(workdir, capsys) -> None:
    _, out, err = run_main(capsys, "compile", "broken.gdl")
    assert "\x1b[" not in out + err
    _, out, err = run_main(capsys, "compile", "warns.gdl")
    assert "\x1b[" not in out + err


def test_force_color_colours_the_diagnostics(workdir, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    _, _, err = run_main(capsys, "compile", "broken.gdl")
    assert colour_codes(err)
    plain = SGR.sub("", err)
    assert "broken.gdl:3:25: error: `xx` is not defined  [unknown-name]" in plain


def test_no_color_wins_over_force_color(workdir, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    _, out, err = run_main(capsys, "compile", "broken.gdl")
    assert colour_codes(out + err) == []
    _, out, err = run_main(capsys, "compile", "warns.gdl")
    assert colour_codes(out + err) == []


_PTY_RUNNER = textwrap.dedent("""
    import os, pty, subprocess, sys
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "graphdsl.cli", *sys.argv[1:]],
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    sys.stdout.buffer.write(b"".join(chunks))
    sys.exit(proc.wait())
    """)


def run_on_a_terminal(workdir: Path, env_changes: dict[str, str | None],
                      *argv: str) -> tuple[int, str]:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = subprocess.run([sys.executable, "-c", _PTY_RUNNER, *argv], cwd=workdir, env=env,
                          capture_output=True, timeout=120)
    return done.returncode, done.stdout.decode("utf-8", "replace")


def test_a_terminal_gets_colour(workdir) -> None:
    code, text = run_on_a_terminal(workdir, {"NO_COLOR": None, "FORCE_COLOR": None,
                                             "TERM": "xterm-256color"},
                                   "compile", "broken.gdl")
    assert code == 1
    assert colour_codes(text)
    assert "error: `xx` is not defined" in SGR.sub("", text)


@pytest.mark.parametrize("file", ["broken.gdl", "warns.gdl"])
def test_no_color_on_a_terminal_means_no_colour(workdir, file: str) -> None:
    code, text = run_on_a_terminal(workdir, {"NO_COLOR": "1", "FORCE_COLOR": None,
                                             "TERM": "xterm-256color"}, "compile", file)
    assert code in (0, 1)
    assert "internal error" not in text
    assert colour_codes(text) == []
