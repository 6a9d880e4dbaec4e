"""Keras exports (`keras`, `savedmodel`, `keras-source`), `graphdsl predict --backend
keras`, the model as Keras sees it (`model.summary()`), and programs with imports
compiled from a string with `base_dir`.

The SavedModel and the keras-source folder run in a fresh interpreter where `import
graphdsl` fails; their outputs are compared with the model graphdsl builds.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import graphdsl
from graphdsl.cli.main import main
from graphdsl.runtime.checkpoint import model_metadata, save_checkpoint
from graphdsl.runtime.synthetic import synthetic_batch

from ..torch.conftest import ALL_EXAMPLES, example_program
from .conftest import EXAMPLES, example_keras, example_text

pytestmark = pytest.mark.keras

TIED = """
model Tied(vocab: int = 30, dim: int = 8) {
    input  ids : int32[B, T]
    target next : int32[B, T]
    layer embed = Embedding(vocab, dim)
    layer ln = LayerNormalization()
    h = ln(Dense(dim, activation = gelu_tanh)(embed(ids)))
    logits = Dense(vocab, kernel = embed.embeddings.T)(h)
    output logits
    inference output probs = softmax(logits)
    loss crossentropy(logits, next, from_logits = true)
}
"""


def _perturbed(model: keras.Model, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {k: v + 0.1 * rng.standard_normal(v.shape).astype(v.dtype)
              if v.dtype.kind == "f" and not k.endswith("_mask") else v
              for k, v in model.export_arrays().items()}
    model.load_arrays(arrays)
    return arrays


# Loads the SavedModel and the keras-source folder with graphdsl unimportable; prints
# each one's largest difference from the reference outputs and its variable count.
RUN_EXPORTED = """
import json, sys
sys.modules["graphdsl"] = None
import numpy as np, tensorflow as tf
saved, source, inputs, ref = sys.argv[1:5]
inputs = dict(np.load(inputs)); ref = dict(np.load(ref))
report = {}
loaded = tf.saved_model.load(saved)
serve = loaded.signatures["serving_default"]
report["signature"] = sorted(serve.structured_input_signature[1])
out = serve(**{k: tf.constant(v) for k, v in inputs.items()})
report["saved"] = {k: float(np.abs(out[k].numpy() - ref[k]).max()) for k in ref}
report["saved_variables"] = len(loaded.serve.concrete_functions[0].variables) \\
    if hasattr(loaded.serve, "concrete_functions") else len(serve.variables)
sys.path.insert(0, source)
import model
m = model.load()
out = m(inputs)
report["source"] = {k: float(np.abs(np.asarray(out[k]) - ref[k]).max()) for k in ref}
report["source_variables"] = len(m.weights)
print(json.dumps(report))
"""


@pytest.mark.parametrize("stem", ["gpt2_small", "s05_masked_conv"])
def test_savedmodel_and_keras_source_run_without_graphdsl(tmp_path: Path, stem: str) -> None:
    from graphdsl.backends.keras.export import export_savedmodel, export_source

    program = graphdsl.compile(example_text(stem), file=str(EXAMPLES / f"{stem}.gdl"),
                               base_dir=str(EXAMPLES))
    graph = program.model()
    model = example_keras(stem)
    weights = _perturbed(model)
    export_savedmodel(program, graph, weights, str(tmp_path / "saved"))
    export_source(program, graph, weights, str(tmp_path / "source"))
    batch = synthetic_batch(graph)
    inputs = {k: batch[k] for k in model.input_names}
    ref = {k: np.asarray(v) for k, v in model(inputs).items()}
    np.savez(tmp_path / "in.npz", **inputs)
    np.savez(tmp_path / "ref.npz", **ref)
    done = subprocess.run([sys.executable, "-c", RUN_EXPORTED, str(tmp_path / "saved"),
                           str(tmp_path / "source"), str(tmp_path / "in.npz"),
                           str(tmp_path / "ref.npz")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["signature"] == sorted(model.input_names)
    assert max(report["saved"].values()) < 1e-5, report
    assert max(report["source"].values()) < 1e-5, report
    # a tie is one variable: as many as graphdsl's canonical tensors, no more
    canonical = len([k for k in weights if not k.endswith("_mask")])
    assert report["source_variables"] == canonical
    source = (tmp_path / "source" / "model.py").read_text()
    imported = _imported(source)
    assert imported <= {"keras", "numpy", "safetensors", "math", "os", "typing",
                        "collections", "json", "__future__"}, imported
    if stem == "gpt2_small":
        assert "keras.layers.Dense(" in source and "keras.layers.Embedding(" in source
        assert "ops.copy(self.wte.embeddings)" in source.split("def call")[1]


# Runs every exported folder in one interpreter where graphdsl is unimportable; prints,
# per folder, the outputs' largest differences from the reference arrays.
RUN_ALL_SOURCES = """
import importlib.util, json, sys
sys.modules["graphdsl"] = None
import numpy as np
report = {}
for folder in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location("model_" + str(len(report)),
                                                  folder + "/model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as `import` does (a dataclass looks itself up)
    spec.loader.exec_module(module)
    inputs, ref = dict(np.load(folder + "/in.npz")), dict(np.load(folder + "/ref.npz"))
    out = module.load()(inputs)
    report[folder] = {k: float(np.abs(np.asarray(out[k], np.float64) - ref[k]).max())
                      for k in ref}
print(json.dumps(report))
"""


def test_every_example_exports_to_keras_source_that_runs_without_graphdsl(
        tmp_path: Path) -> None:
    from graphdsl.backends.keras.export import export_source

    folders, imports = [], {}
    for stem in ALL_EXAMPLES:
        program = example_program(stem)
        graph = program.model()
        model = example_keras(stem, graph.name)
        weights = _perturbed(model)
        folder = tmp_path / stem
        export_source(program, graph, weights, str(folder))
        inputs = {k: v for k, v in synthetic_batch(graph).items() if k in model.input_names}
        np.savez(folder / "in.npz", **inputs)
        np.savez(folder / "ref.npz", **{k: np.asarray(v, np.float64)
                                         for k, v in model(inputs).items()})
        folders.append(str(folder))
        imports[stem] = _imported((folder / "model.py").read_text())
    done = subprocess.run([sys.executable, "-c", RUN_ALL_SOURCES, *folders],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report) == len(ALL_EXAMPLES)
    worst = {folder: max(diffs.values()) for folder, diffs in report.items()}
    assert max(worst.values()) < 1e-5, worst
    # Keras alone: no example's model.py imports TensorFlow (or graphdsl)
    for stem, modules in imports.items():
        assert modules <= {"keras", "numpy", "safetensors", "math", "os", "json", "typing",
                           "collections", "dataclasses", "functools", "itertools",
                           "__future__"}, (stem, modules)


def _imported(source: str) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    return imported


def test_keras_file_export_loads_with_keras(tmp_path: Path) -> None:
    path = tmp_path / "tied.gdl"
    path.write_text(TIED)
    model = graphdsl.compile_file(str(path), backend="keras")
    weights = _perturbed(model)
    program = graphdsl.compile_file(str(path))
    save_checkpoint(str(tmp_path / "w.safetensors"), weights,
                    model_metadata(program.model(), str(path)))
    out = tmp_path / "m.keras"
    assert main(["export", str(path), "--weights", str(tmp_path / "w.safetensors"),
                 "--format", "keras", "--out", str(out)]) == 0
    loaded = keras.saving.load_model(str(out))
    ids = np.random.default_rng(1).integers(0, 30, (3, 5)).astype("int32")
    got, ref = loaded({"ids": ids}), model({"ids": ids})
    for name in ("logits", "probs"):
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(ref[name]), atol=1e-6)
    assert len(loaded.weights) == len(model.weights)


def test_predict_with_the_keras_backend(tmp_path: Path) -> None:
    path = tmp_path / "tied.gdl"
    path.write_text(TIED)
    model = graphdsl.compile_file(str(path), backend="keras")
    weights = _perturbed(model, seed=2)
    program = graphdsl.compile_file(str(path))
    save_checkpoint(str(tmp_path / "w.safetensors"), weights,
                    model_metadata(program.model(), str(path)))
    ids = np.random.default_rng(0).integers(0, 30, (5, 4)).astype("int32")
    np.savez(tmp_path / "in.npz", ids=ids)
    assert main(["predict", str(path), "--backend", "keras", "--weights",
                 str(tmp_path / "w.safetensors"), "--data", str(tmp_path / "in.npz"),
                 "--out", str(tmp_path / "out.npz"), "--batch", "2"]) == 0
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out.files) == ["logits", "probs"]
        ref = model({"ids": ids})
        np.testing.assert_allclose(out["logits"], np.asarray(ref["logits"]), atol=1e-5)
        np.testing.assert_allclose(out["probs"], np.asarray(ref["probs"]), atol=1e-6)


def summary_rows(model: keras.Model) -> dict[str, tuple[str, ...]]:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=80)
    rows = {}
    for line in "\n".join(lines).splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 3 and "(" in cells[0]:
            rows[cells[0]] = tuple(cells[1:])
    return rows


def test_summary_lists_the_program_layers_with_shapes_and_counts() -> None:
    model = graphdsl.compile(TIED, backend="keras")
    rows = summary_rows(model)
    assert rows["ids (InputLayer)"] == ("(None, None)", "0")
    assert rows["embed (Embedding)"] == ("(None, None, 8)", "240")
    assert rows["dense (Dense)"] == ("(None, None, 8)", "72")
    assert rows["ln (LayerNormalization)"] == ("(None, None, 8)", "16")
    # its kernel is embed's table: counted once, under embed
    assert rows["dense_1 (Dense)"] == ("(None, None, 30)", "30")
    text = "\n".join(" ".join(row) for row in rows.values())
    assert "?" not in text and "ParameterGroup" not in text
    assert [layer.name for layer in model.layers] == ["ids", "embed", "dense", "ln", "dense_1"]


BRANCHES = """
model Branches {
    input image : float32[B, 8]
    input extra : float32[B, 3]
    param scale : float32[4] = ones
    positions = Embedding(5, 4, name = "pos")(arange(5))
    left = Dense(4, name = "left")(image)
    right = Dense(4, name = "right")(concat([image, extra], axis = -1))
    inference output joined = left * scale + right + mean(positions, axis = 0)
    inference output right_only = right
}
"""


def test_plot_model_draws_each_layer_and_connection() -> None:
    """`keras.utils.plot_model` draws the program's layers and which feeds which, `param`
    groups and layers that read no data included."""
    model = graphdsl.compile(BRANCHES, backend="keras")
    dot = keras.utils.model_to_dot(model, show_shapes=True)
    names = {node.get_name(): node.get("label") for node in dot.get_nodes()}
    label_of = {}
    for key, label in names.items():
        for layer in model.layers:
            if label and f">{layer.name}<" in label.replace(" ", ""):
                label_of[key] = layer.name
    edges = {(label_of[e.get_source()], label_of[e.get_destination()])
             for e in dot.get_edges()}
    assert {layer.name for layer in model.layers} == \
        {"image", "extra", "left", "right", "params", "pos", "joined"}
    # top-level `param` statements are the group `params`
    assert edges == {("image", "left"), ("image", "right"), ("extra", "right"),
                     ("left", "params"), ("image", "pos"), ("params", "joined"),
                     ("right", "joined"), ("pos", "joined")}
    out = model({"image": np.ones((2, 8), np.float32), "extra": np.ones((2, 3), np.float32)})
    assert sorted(out) == ["joined", "right_only"]


IMPORTED = """
block Twice(d: int) {
    input x : float32[B, d]
    output Dense(d)(Dense(d)(x))
}
"""


def test_a_string_with_imports_compiles_with_base_dir(tmp_path: Path) -> None:
    (tmp_path / "parts.gdl").write_text(IMPORTED)
    source = """
import "parts.gdl"
model Uses {
    input x : float32[B, 3]
    output y = Twice(3)(x)
}
"""
    model = graphdsl.compile(source, base_dir=str(tmp_path), backend="keras")
    torch_like = graphdsl.compile(source, base_dir=str(tmp_path))
    assert set(model.canonical_variables()) == \
        {torch_like.model().node(p)["name"] for p in torch_like.model().params}
    x = np.ones((2, 3), "float32")
    clone = type(model).from_config(model.get_config())  # rebuilt from the saved texts
    clone.load_arrays(model.export_arrays())
    np.testing.assert_allclose(np.asarray(clone({"x": x})["y"]),
                               np.asarray(model({"x": x})["y"]), atol=1e-6)
