"""Weight maps and `graphdsl convert` without a framework: the map format, every transform
against numpy written out by hand, reading safetensors (bfloat16 included) and Keras'
.weights.h5, and every problem reported at once with its position in the map."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import graphdsl
from graphdsl.cli.main import main
from graphdsl.diagnostics import DiagnosticSink, SourceMap
from graphdsl.runtime.checkpoint import CheckpointError, load_checkpoint
from graphdsl.runtime.convert import convert_arrays, convert_file, read_foreign, shipped_maps
from graphdsl.runtime.convert.mapfile import parse_map

NET = """\
model Net(width: int = 4) {
    input x : float32[B, T, 3]
    h = Dense(width, activation = relu)(x)
    layer attn = MultiHeadAttention(2, 2)
    inference output y = Dense(2)(h)
    inference output z = attn(x, x)
}
"""


def net(width: int = 4) -> graphdsl.Program:
    return graphdsl.compile(NET, args={"width": width}).model("Net")


def parsed(text: str) -> tuple[object, DiagnosticSink]:
    sink = DiagnosticSink()
    return parse_map(text, "m.map", sink), sink


def rng_arrays(**shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k.replace("__", "."): rng.standard_normal(s).astype(np.float32)
            for k, s in shapes.items()}


def test_shipped_maps_parse_cleanly() -> None:
    assert {"hf_gpt2", "hf_bert", "torchvision_resnet", "torchvision_resnext",
            "keras_mobilenet_v2"} <= set(shipped_maps())
    for name in shipped_maps():
        path = Path(graphdsl.__file__).parent / "maps" / f"{name}.map"
        _, sink = parsed(path.read_text())
        assert sink.items == [], (name, [d.message for d in sink.items])


def test_map_mistakes_are_all_reported_with_positions() -> None:
    _, sink = parsed(
        "prefix\n"                                            # 1: no name
        "copy a -> b\n"                                       # 2: the arrow makes it a rule
        "rename a.weight\n"                                   # 3: not a statement
        "h.{i}.w -> t.{j}.kernel | transpos\n"                # 4: capture, transform
        "a.w, b.w -> t.kernel | transpose\n"                  # 5: two sources, no concat
        "c.w -> t.q, t.k | reshape\n"                         # 6: two targets, no split
        "d.w -> t.bias | slice(0, 1)\n")                      # 7: slice takes 3
    found = sorted((d.span.line, d.span.column, d.code) for d in sink.items)
    assert all(code == "weight-map" for _, _, code in found)
    lines = [line for line, _, _ in found]
    assert lines == [1, 2, 3, 4, 4, 5, 6, 7]
    messages = " | ".join(d.message + " " + (d.help or "") for d in sink.items)
    assert "`{j}` is not captured by the first source `h.{i}.w`" in messages
    assert "unknown transform `transpos`" in messages and "did you mean `transpose`?" in messages
    assert "2 sources need `concat(axis)` or `add`" in messages
    assert "2 targets need one `split(axis)`" in messages
    assert "`slice` takes 3 arguments, got 2" in messages
    (unknown,) = [d for d in sink.items if d.span.line == 3]
    assert unknown.span.column == 1 and "`rename` is not a statement" in unknown.message


def test_transforms_match_numpy() -> None:
    model = net()
    foreign = rng_arrays(qkv=(3 * 4, 3), proj__w=(2, 3, 2), proj__b=(1, 3), b1=(2,), b2=(2,),
                         bias=(6,), out__w=(2, 4), out__b=(2,))
    wmap, sink = parsed(
        "qkv -> attn.query_kernel, attn.key_kernel, attn.value_kernel\n"
        "    | split(0, 4, 4, 4) | transpose | reshape\n"
        "proj.w -> attn.output_kernel | transpose(0, 2, 1) | scale(2)\n"
        "proj.b -> attn.output_bias | reshape(3) | cast(float16)\n"
        "b1, b2 -> attn.query_bias | concat(0) | reshape(2, 2)\n"
        "bias -> attn.key_bias | slice(0, 0, 4) | reshape\n"
        "bias -> attn.value_bias | slice(0, 2, 6) | reshape\n"  # a second use of `bias`
        "out.w -> dense_1.kernel | transpose\n"
        "out.b -> dense_1.bias\n"
        "ignore dense.*\n")
    assert sink.items == []
    foreign["dense.kernel"] = np.zeros((3, 4), np.float32)
    with pytest.raises(CheckpointError) as info:   # dense.kernel is ignored, so missing
        convert_arrays(dict(foreign), wmap, model)
    notes = [n.message for n in info.value.diagnostics[0].notes]
    assert notes == ["missing: `dense.bias` [4]: no rule makes it",
                     "missing: `dense.kernel` [3, 4]: no rule makes it"]
    wmap.ignores.clear()
    foreign["dense.bias"] = np.ones(4, np.float32)
    wmap.rules += parsed("dense.kernel -> dense.kernel\ndense.bias -> dense.bias\n")[0].rules
    out = convert_arrays(foreign, wmap, model)
    q, k, v = foreign["qkv"][:4], foreign["qkv"][4:8], foreign["qkv"][8:]
    np.testing.assert_array_equal(out["attn.query_kernel"], q.T.reshape(3, 2, 2))
    np.testing.assert_array_equal(out["attn.value_kernel"], v.T.reshape(3, 2, 2))
    np.testing.assert_array_equal(out["attn.key_kernel"], k.T.reshape(3, 2, 2))
    np.testing.assert_array_equal(out["attn.output_kernel"],
                                  2 * np.transpose(foreign["proj.w"], (0, 2, 1)))
    np.testing.assert_array_equal(out["attn.output_bias"],
                                  foreign["proj.b"][0].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(out["attn.query_bias"],
                                  np.concatenate([foreign["b1"], foreign["b2"]]).reshape(2, 2))
    np.testing.assert_array_equal(out["attn.value_bias"], foreign["bias"][2:].reshape(2, 2))
    np.testing.assert_array_equal(out["dense_1.kernel"], foreign["out.w"].T)
    assert all(a.dtype == np.float32 for a in out.values())


def test_every_problem_is_one_diagnostic_pointing_at_its_rule() -> None:
    model = net()
    wmap, _ = parsed(
        "prefix model.\n"
        "ignore *.num_batches_tracked\n"
        "fc1.weight -> dense.kernel | transpose\n"        # 3: shape [4, 5] vs [3, 4]
        "fc1.bias -> dense.bias\n"
        "fc2.{x} -> dense_2.{x}\n"                        # 5: no such layer
        "attn.{p} -> attn.{p}\n")                         # 6: attn.output_bias lacking
    foreign = rng_arrays(model__fc1__weight=(5, 4), model__fc1__bias=(4,),
                         model__fc2__kernel=(4, 2), extra__w=(7,),
                         fc1__num_batches_tracked=(1,))
    for name in ("query_kernel", "key_kernel", "value_kernel"):
        foreign[f"attn.{name}"] = np.zeros((3, 2, 2), np.float32)
    for name in ("query_bias", "key_bias", "value_bias"):
        foreign[f"attn.{name}"] = np.zeros((2, 2), np.float32)
    foreign["attn.output_kernel"] = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(CheckpointError) as info:
        convert_arrays(foreign, wmap, model, "`w.bin`")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "weight-conversion"
    assert "`w.bin` does not convert to model `Net`" in diagnostic.message
    by_text = {n.message: (n.span.line if n.span else None) for n in diagnostic.notes}
    assert by_text == {
        "shape: `fc1.weight` gives [4, 5] for `dense.kernel`, which is [3, 4] in model `Net`": 3,
        "`fc2.kernel` maps to `dense_2.kernel`, which model `Net` does not have; "
        "did you mean `dense_1.kernel`?": 5,
        "not mapped: `extra.w` [7] of `w.bin`: no rule or `ignore` takes it": None,
        "missing: `attn.output_bias` [3]: the file lacks `attn.output_bias`": 6,
        "missing: `dense_1.bias` [2]: no rule makes it": None,
        "missing: `dense_1.kernel` [4, 2]: no rule makes it": None,
    }


def test_a_tie_checks_the_copy_and_lets_it_stand_for_the_original() -> None:
    model = graphdsl.compile("""\
model Lm(vocab: int = 5) {
    input ids : int32[B, T]
    layer wte = Embedding(vocab, 3)
    inference output logits = Dense(vocab, use_bias = false, kernel = wte.embeddings.T)(
        wte(ids))
}
""").model()
    wmap, _ = parsed("tie head.weight = wte.weight\nwte.weight -> wte.embeddings\n")
    table = rng_arrays(t=(5, 3))["t"]
    for foreign in ({"wte.weight": table, "head.weight": table.copy()},
                    {"head.weight": table}, {"wte.weight": table}):
        out = convert_arrays(foreign, wmap, model)
        np.testing.assert_array_equal(out["wte.embeddings"], table)
    with pytest.raises(CheckpointError) as info:
        convert_arrays({"wte.weight": table, "head.weight": table + 1}, wmap, model)
    (note,) = info.value.diagnostics[0].notes
    assert "differ, but the map ties them" in note.message and note.span.line == 1


def _bf16_safetensors(path: Path, values: np.ndarray) -> None:
    bits = (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"w": {"dtype": "BF16", "shape": list(values.shape),
                               "data_offsets": [0, bits.nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())


def test_reading_bfloat16_safetensors_is_exact(tmp_path: Path) -> None:
    values = np.array([[1.0, -2.5, 0.15625], [262144.0, 0.0, -1.0]], np.float32)  # bf16-exact
    _bf16_safetensors(tmp_path / "w.safetensors", values)
    out = read_foreign(str(tmp_path / "w.safetensors"))
    assert out["w"].dtype == np.float32
    np.testing.assert_array_equal(out["w"], values)


def test_reading_keras_weights_h5(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")  # installed with Keras; only .h5 reading needs it
    kernel = np.arange(12, dtype=np.float32).reshape(3, 4)
    with h5py.File(tmp_path / "m.weights.h5", "w") as fh:
        fh.create_dataset("layers/dense/vars/0", data=kernel)
        fh.create_dataset("layers/dense/vars/1", data=np.ones(4, np.float32))
    out = read_foreign(str(tmp_path / "m.weights.h5"))
    assert set(out) == {"layers/dense/vars/0", "layers/dense/vars/1"}
    np.testing.assert_array_equal(out["layers/dense/vars/0"], kernel)


def test_convert_command_writes_a_checkpoint_with_the_arguments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "net.gdl").write_text(NET)
    rng = np.random.default_rng(4)
    foreign = {"l1.weight": rng.standard_normal((6, 3)).astype(np.float32),
               "l1.bias": np.zeros(6, np.float32),
               "l2.weight": rng.standard_normal((2, 6)).astype(np.float32),
               "l2.bias": np.ones(2, np.float32)}
    for name in ("query", "key", "value"):
        foreign[f"mha.{name}_w"] = np.zeros((3, 2, 2), np.float32)
        foreign[f"mha.{name}_b"] = np.zeros((2, 2), np.float32)
    foreign["mha.output_w"] = np.zeros((2, 2, 3), np.float32)
    foreign["mha.output_b"] = np.zeros(3, np.float32)
    save_file(foreign, str(tmp_path / "torch.safetensors"))
    (tmp_path / "my.map").write_text(
        "l1.weight -> dense.kernel | transpose\nl1.bias -> dense.bias\n"
        "l2.weight -> dense_1.kernel | transpose\nl2.bias -> dense_1.bias\n"
        "mha.{p}_w -> attn.{p}_kernel\nmha.{p}_b -> attn.{p}_bias\n")
    out = tmp_path / "net.safetensors"
    code = main(["convert", str(tmp_path / "net.gdl"), "--set", "width=6", "--from",
                 str(tmp_path / "torch.safetensors"), "--map", str(tmp_path / "my.map"),
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    checkpoint = load_checkpoint(str(out))
    np.testing.assert_array_equal(checkpoint.tensors["dense.kernel"], foreign["l1.weight"].T)
    assert json.loads(checkpoint.metadata["arguments"]) == {"width": 6}
    assert checkpoint.metadata["converted_from"] == "torch.safetensors"


def test_convert_command_reports_problems_with_map_positions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "net.gdl").write_text(NET)
    save_file({"l1.weight": np.zeros((4, 3), np.float32)}, str(tmp_path / "w.safetensors"))
    (tmp_path / "my.map").write_text("# one rule\nl1.weight -> dense.kernel\n")
    code = main(["convert", str(tmp_path / "net.gdl"), "--from", str(tmp_path / "w.safetensors"),
                 "--map", str(tmp_path / "my.map"), "--out", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 1
    assert "my.map:2:1: note: shape: `l1.weight` gives [4, 3] for `dense.kernel`" in err
    assert "    2 | l1.weight -> dense.kernel" in err
    assert "[weight-conversion]" in err
    assert not (tmp_path / "o.safetensors").exists()


def test_convert_command_names_the_shipped_maps(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    (tmp_path / "net.gdl").write_text(NET)
    save_file({"a": np.zeros(1, np.float32)}, str(tmp_path / "w.safetensors"))
    code = main(["convert", str(tmp_path / "net.gdl"), "--from", str(tmp_path / "w.safetensors"),
                 "--map", "hf_gtp2", "--out", str(tmp_path / "o.safetensors")])
    assert code == 1
    assert "did you mean `hf_gpt2`?" in capsys.readouterr().err


def test_a_pickle_is_not_read_as_safetensors(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError) as info:
        convert_file(net(), str(tmp_path / "w.safetensors"), "hf_gpt2", SourceMap())
    assert info.value.diagnostics[0].code == "bad-checkpoint"


def test_hf_bert_reads_the_legacy_gamma_and_beta_names() -> None:
    """Files converted from BERT's TensorFlow release name LayerNorm's tensors gamma/beta."""
    d, ff = 8, 16
    model = graphdsl.compile_file(
        str(Path(__file__).resolve().parents[2] / "examples" / "bert_base.gdl"),
        args={"vocab": 20, "context": 8, "d": d, "layers": 1, "heads": 2, "ff": ff}).model()
    rng = np.random.default_rng(5)
    shapes = {"embeddings.word_embeddings.weight": (20, d),
              "embeddings.position_embeddings.weight": (8, d),
              "embeddings.token_type_embeddings.weight": (2, d),
              "embeddings.LayerNorm.gamma": (d,), "embeddings.LayerNorm.beta": (d,),
              "encoder.layer.0.attention.output.dense.weight": (d, d),
              "encoder.layer.0.attention.output.dense.bias": (d,),
              "encoder.layer.0.attention.output.LayerNorm.gamma": (d,),
              "encoder.layer.0.attention.output.LayerNorm.beta": (d,),
              "encoder.layer.0.intermediate.dense.weight": (ff, d),
              "encoder.layer.0.intermediate.dense.bias": (ff,),
              "encoder.layer.0.output.dense.weight": (d, ff),
              "encoder.layer.0.output.dense.bias": (d,),
              "encoder.layer.0.output.LayerNorm.gamma": (d,),
              "encoder.layer.0.output.LayerNorm.beta": (d,),
              "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,),
              "cls.predictions.bias": (20,)}
    for p in ("query", "key", "value"):
        shapes[f"encoder.layer.0.attention.self.{p}.weight"] = (d, d)
        shapes[f"encoder.layer.0.attention.self.{p}.bias"] = (d,)
    foreign = {"bert." + k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    wmap_path = Path(graphdsl.__file__).parent / "maps" / "hf_bert.map"
    wmap, _ = parsed(wmap_path.read_text())
    out = convert_arrays(foreign, wmap, model)
    np.testing.assert_array_equal(out["bert_layer.0.layer_normalization_1.beta"],
                                  foreign["bert.encoder.layer.0.output.LayerNorm.beta"])
    np.testing.assert_array_equal(
        out["bert_layer.0.multi_head_attention.query_kernel"],
        foreign["bert.encoder.layer.0.attention.self.query.weight"].T.reshape(d, 2, 4))


def test_two_foreign_tensors_may_make_one_tied_tensor_when_equal() -> None:
    model = graphdsl.compile("""\
model Lm(vocab: int = 5) {
    input ids : int32[B, T]
    layer wte = Embedding(vocab, 3)
    inference output logits = Dense(vocab, use_bias = false, kernel = wte.embeddings.T)(
        wte(ids))
}
""").model()
    wmap, _ = parsed("embed.weight -> wte.embeddings\nhead.weight -> wte.embeddings\n")
    table = rng_arrays(t=(5, 3))["t"]
    out = convert_arrays({"embed.weight": table, "head.weight": table.copy()}, wmap, model)
    np.testing.assert_array_equal(out["wte.embeddings"], table)
    with pytest.raises(CheckpointError) as info:
        convert_arrays({"embed.weight": table, "head.weight": table * 2}, wmap, model)
    (note,) = info.value.diagnostics[0].notes
    assert note.span.line == 2
    assert note.message == ("`wte.embeddings` is made from `embed.weight` (line 1) and from "
                            "`head.weight`, which differ; the model has one tensor for both")
