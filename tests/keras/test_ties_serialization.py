"""Ties survive every way Keras rebuilds a model (keras-team/keras#10485).

Three different ties:

* ``tied_lm``: examples/lstm_lm.gdl's TiedLM (Press & Wolf), shrunk (vocab 50, dim 16,
  dropout p 0.0 so a training step can be computed by hand): the softmax kernel IS the
  embedding table, transposed.
* ``circulant``: examples/s04_structured_weights.gdl, a Dense kernel built from three
  scalar parameters, each used three times.
* ``tied_autoencoder``: a decoder Dense whose kernel is the encoder Dense's kernel,
  transposed.

For each, after ``model.save`` + ``keras.saving.load_model`` (in a fresh process that only
imports graphdsl and keras), ``keras.models.clone_model``, ``from_config(get_config())``
and ``to_json`` + ``keras.models.model_from_json``: the model has exactly one variable per
canonical tensor (the tied one once); predictions equal the original's (after
``set_weights`` where the API carries no weights); and one SGD step through
``model.compile`` + ``model.fit`` equals a hand-written reference step in which the ONE
tensor is read at both uses, so the gradient of both uses lands on it, and the predictions
afterwards read the updated tensor in both places.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from .conftest import example_keras, keras_model, snapshot

pytestmark = pytest.mark.keras

LR = 0.5

AUTOENCODER = """
model TiedAutoencoder(features: int = 6, code: int = 3) {
    input x : float32[B, features]

    layer encoder = Dense(code, activation = tanh)
    z = encoder(x)
    output reconstruction = Dense(features, kernel = encoder.kernel.T)(z)   # tied
    loss mse(reconstruction, x)
}
"""

# ---- hand-written references: every use of a tied tensor reads the same argument --------

Tensors = dict[str, Any]


def lstm_by_hand(x: Any, kernel: Any, recurrent: Any, bias: Any) -> Any:
    """Keras' LSTM (gates i, f, c, o; sigmoid and tanh), all steps returned."""
    units = recurrent.shape[0]
    h = tf.zeros((x.shape[0], units))
    c = tf.zeros((x.shape[0], units))
    steps = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        steps.append(h)
    return tf.stack(steps, axis=1)


def tied_lm_reference(w: Tensors, batch: dict[str, np.ndarray]) -> tuple[Tensors, Any]:
    table = w["embed.embeddings"]
    h = tf.gather(table, batch["tokens"])                                   # use 1
    h = lstm_by_hand(h, w["lstm.kernel"], w["lstm.recurrent_kernel"], w["lstm.bias"])
    h = lstm_by_hand(h, w["lstm_1.kernel"], w["lstm_1.recurrent_kernel"], w["lstm_1.bias"])
    logits = h @ tf.transpose(table) + w["dense.bias"]                      # use 2
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=batch["next"].astype("int64"), logits=logits))
    return {"logits": logits}, loss


def circulant_reference(w: Tensors, batch: dict[str, np.ndarray]) -> tuple[Tensors, Any]:
    a, b, c = w["a"], w["b"], w["c"]
    kernel = tf.stack([tf.stack([a, b, c]), tf.stack([c, a, b]), tf.stack([b, c, a])])
    prediction = batch["x"] @ kernel
    return {"prediction": prediction}, tf.reduce_mean(tf.square(prediction - batch["y"]))


def autoencoder_reference(w: Tensors, batch: dict[str, np.ndarray]) -> tuple[Tensors, Any]:
    kernel = w["encoder.kernel"]
    z = tf.tanh(batch["x"] @ kernel + w["encoder.bias"])                    # use 1
    reconstruction = z @ tf.transpose(kernel) + w["dense.bias"]             # use 2
    return {"reconstruction": reconstruction}, tf.reduce_mean(tf.square(reconstruction
                                                                         - batch["x"]))


@dataclass(frozen=True)
class Tie:
    build: Callable[[int], Any]           # seed -> GraphModel
    tied: str                             # the tied tensor's canonical name
    parameters: int                       # numbers in the model, the tie counted once
    reference: Callable[[Tensors, dict[str, np.ndarray]], tuple[Tensors, Any]]
    batch: Callable[[], dict[str, np.ndarray]]
    layer_tie: bool = True                # ModelGraph.ties() lists it (two layers read it)


def lm_batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    tokens = rng.integers(1, 20, size=(4, 5)).astype("int32")   # ids 20..49 never appear
    return {"tokens": tokens, "next": rng.integers(0, 50, size=(4, 5)).astype("int32")}


def float_batch(**shapes: tuple[int, ...]) -> Callable[[], dict[str, np.ndarray]]:
    def make() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(4)
        return {k: rng.standard_normal(s).astype("float32") for k, s in shapes.items()}
    return make


LSTM_16 = 16 * 64 + 16 * 64 + 64
TIES = {
    "tied_lm": Tie(lambda seed: example_keras("lstm_lm", "TiedLM", seed, formals={"p": 0.0}),
                   "embed.embeddings", 50 * 16 + 2 * LSTM_16 + 50, tied_lm_reference, lm_batch),
    "circulant": Tie(lambda seed: example_keras("s04_structured_weights", seed=seed),
                     "a", 3, circulant_reference, float_batch(x=(8, 3), y=(8, 3)),
                     layer_tie=False),
    "tied_autoencoder": Tie(lambda seed: keras_model(AUTOENCODER, seed=seed),
                            "encoder.kernel", 6 * 3 + 3 + 6, autoencoder_reference,
                            float_batch(x=(8, 6))),
}


def split(model: Any, batch: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({k: batch[k] for k in model.input_names}, {k: batch[k] for k in model.target_names})


def reference_step(tie: Tie, weights: dict[str, np.ndarray],
                   batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """Weights after one SGD step on the reference, and the loss before it."""
    variables = {k: tf.Variable(v) for k, v in weights.items()}
    with tf.GradientTape() as tape:
        _, loss = tie.reference(variables, batch)
    grads = tape.gradient(loss, variables)
    after = {k: weights[k] - LR * grads[k].numpy() for k in weights}
    return after, float(loss)


def fit_one_step(model: Any, batch: dict[str, np.ndarray]) -> dict[str, list[float]]:
    x, y = split(model, batch)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR))
    size = len(next(iter(batch.values())))
    history = model.fit(x, y or None, batch_size=size, epochs=1, shuffle=False, verbose=0)
    return history.history  # type: ignore[no-any-return]


def close(actual: Any, expected: Any, tol: float = 1e-6) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def assert_one_variable_per_tensor(model: Any, tie: Tie) -> None:
    ir = model.ir
    assert (tie.tied in ir.ties()) == tie.layer_tie, ir.ties()
    variables = model.weights
    assert len({id(v) for v in variables}) == len(variables) == len(ir.params)
    assert sum(int(np.prod(v.shape)) for v in variables) == ir.parameter_count == tie.parameters
    tied = model.canonical_variables()[tie.tied]
    assert sum(v is tied for v in variables) == 1
    # no layer that reads the tie holds a copy of it
    for user in ir.ties().get(tie.tied, []):
        copies = [v for v in variables if v.path.split("/")[0] == user and v is not tied
                  and int(np.prod(v.shape)) == int(np.prod(tied.shape))]
        assert copies == [], f"layer `{user}` holds its own copy: {copies}"


def assert_step_moves_the_one_tensor(tie: Tie, before: dict[str, np.ndarray],
                                     after: dict[str, np.ndarray], loss: float,
                                     batch: dict[str, np.ndarray]) -> None:
    expected, expected_loss = reference_step(tie, before, batch)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert set(after) == set(expected)
    for name in expected:
        close(after[name], expected[name], 1e-5)
    assert not np.array_equal(after[tie.tied], before[tie.tied]), "the tied tensor did not move"


def assert_predictions_read_the_one_tensor(model: Any, tie: Tie,
                                           batch: dict[str, np.ndarray]) -> None:
    outputs = model(split(model, batch)[0])
    reference, _ = tie.reference({k: tf.constant(v) for k, v in snapshot(model).items()}, batch)
    for name, value in reference.items():
        close(outputs[name], value, 1e-5)


class Trained:
    """Each tie's model after one SGD step (so its weights differ from any fresh build),
    built on first use, so one tie's failure does not stop the others' tests."""

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.models:
            model = TIES[name].build(0)
            fit_one_step(model, TIES[name].batch())
            self.models[name] = model
        return self.models[name]


@pytest.fixture(scope="module")
def trained() -> Trained:
    return Trained()


# ---- before any round trip ---------------------------------------------------------------


@pytest.mark.parametrize("tie_name", list(TIES))
def test_built_model_has_one_variable_per_tensor_and_steps_like_the_reference(
        tie_name: str) -> None:
    tie = TIES[tie_name]
    model = tie.build(0)
    batch = tie.batch()
    assert_one_variable_per_tensor(model, tie)
    assert_predictions_read_the_one_tensor(model, tie, batch)
    before = snapshot(model)
    history = fit_one_step(model, batch)
    assert_step_moves_the_one_tensor(tie, before, snapshot(model), history["loss"][0], batch)
    assert_predictions_read_the_one_tensor(model, tie, batch)


def test_tied_lm_projection_gradient_reaches_the_embedding_table() -> None:
    """Ids 20..49 never occur in the batch: their rows move only through the softmax use."""
    tie = TIES["tied_lm"]
    model = tie.build(0)
    before = snapshot(model)["embed.embeddings"]
    fit_one_step(model, tie.batch())
    moved = np.abs(snapshot(model)["embed.embeddings"] - before).max(axis=1)
    assert (moved[20:] > 0).all()


def test_s04_kernel_keeps_the_circulant_pattern_after_the_step(trained: Trained) -> None:
    w = snapshot(trained["circulant"])
    assert sorted(w) == ["a", "b", "c"]
    model = trained["circulant"]
    eye = np.eye(3, dtype="float32")
    kernel = np.asarray(model({"x": eye})["prediction"])   # rows of I @ K are K's rows
    a, b, c = (float(w[n]) for n in "abc")
    close(kernel, [[a, b, c], [c, a, b], [b, c, a]])


# ---- in-process round trips: clone_model, from_config, to_json ---------------------------


ROUTES: dict[str, Callable[[Any], Any]] = {
    "clone_model": lambda m: keras.models.clone_model(m),
    "from_config": lambda m: type(m).from_config(m.get_config()),
    "to_json": lambda m: keras.models.model_from_json(m.to_json()),
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("tie_name", list(TIES))
def test_round_trip_keeps_the_tie(trained: Trained, tie_name: str, route: str) -> None:
    tie, original = TIES[tie_name], trained[tie_name]
    batch = tie.batch()
    rebuilt = ROUTES[route](original)
    assert type(rebuilt) is type(original)
    assert_one_variable_per_tensor(rebuilt, tie)
    # these APIs carry the architecture only: load the weights the Keras way
    assert [v.path for v in rebuilt.weights] == [v.path for v in original.weights]
    rebuilt.set_weights(original.get_weights())
    x = split(original, batch)[0]
    expected, actual = original(x), rebuilt(x)
    assert set(actual) == set(expected)
    for name in expected:
        close(actual[name], expected[name])
    before = snapshot(rebuilt)
    history = fit_one_step(rebuilt, batch)
    assert_one_variable_per_tensor(rebuilt, tie)
    assert_step_moves_the_one_tensor(tie, before, snapshot(rebuilt), history["loss"][0], batch)
    assert_predictions_read_the_one_tensor(rebuilt, tie, batch)


# ---- .keras save + load in a fresh process that imports only graphdsl and keras ----------

LOADER = r"""
import json, sys, traceback, warnings
import numpy as np
if sys.argv[1] == "graphdsl-first":
    import graphdsl
    keras_imported_by_graphdsl = "keras" in sys.modules
    import keras
else:
    import keras
    import graphdsl
    keras_imported_by_graphdsl = None
folder, lr, names = sys.argv[2], float(sys.argv[3]), sys.argv[4:]
report = {"keras_imported_by_graphdsl": keras_imported_by_graphdsl}


def check(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(f"{folder}/{name}.keras")
    batch = dict(np.load(f"{folder}/{name}.npz"))
    x = {k: batch[k] for k in model.input_names}
    y = {k: batch[k] for k in model.target_names}
    arrays = {"out." + k: np.asarray(v) for k, v in model(x).items()}
    arrays.update({"before." + k: np.asarray(v) for k, v in model.canonical_variables().items()})
    variables = [[v.path, list(v.shape)] for v in model.weights]
    distinct = len({id(v) for v in model.weights})
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr))
    history = model.fit(x, y or None, batch_size=len(next(iter(batch.values()))), epochs=1,
                        shuffle=False, verbose=0).history
    arrays.update({"after." + k: np.asarray(v) for k, v in model.canonical_variables().items()})
    arrays.update({"after_out." + k: np.asarray(v) for k, v in model(x).items()})
    np.savez(f"{folder}/{name}.result.npz", **arrays)
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}",
            "load_warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
            "variables": variables, "distinct": distinct, "loss": float(history["loss"][0])}


for name in names:
    try:
        report[name] = check(name)
    except Exception:
        report[name] = {"error": traceback.format_exc()}
print("REPORT " + json.dumps(report))
"""


def load_in_fresh_process(folder: Path, names: list[str], order: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", LOADER, order, str(folder), str(LR), *names],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("REPORT ")]
    return json.loads(line[len("REPORT "):])  # type: ignore[no-any-return]


class Saved:
    """`name.keras` (and the batch, `name.npz`) for each tie, saved on first use."""

    def __init__(self, folder: Path, trained: Trained):
        self.folder = folder
        self.trained = trained

    def __call__(self, name: str) -> Path:
        path = self.folder / f"{name}.keras"
        if not path.exists():
            self.trained[name].save(str(path))
            np.savez(self.folder / f"{name}.npz", **TIES[name].batch())
        return path


@pytest.fixture(scope="module")
def saved(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Saved:
    return Saved(tmp_path_factory.mktemp("keras_files"), trained)


@pytest.fixture(scope="module")
def loaded(saved: Saved) -> dict[str, Any]:
    """One fresh process loads every tie's file that could be saved."""
    names = []
    for name in TIES:
        try:
            saved(name)
        except Exception:  # noqa: BLE001 - that tie's own test reports it
            continue
        names.append(name)
    return load_in_fresh_process(saved.folder, names, "graphdsl-first")


@pytest.mark.parametrize("tie_name", list(TIES))
def test_keras_file_stores_the_tied_tensor_once(saved: Saved, trained: Trained,
                                                tie_name: str) -> None:
    tie, model = TIES[tie_name], trained[tie_name]
    with zipfile.ZipFile(saved(tie_name)) as archive, \
            archive.open("model.weights.h5") as raw, h5py.File(raw, "r") as h5:
        shapes: list[tuple[int, ...]] = []
        h5["layers"].visititems(lambda _, obj: shapes.append(obj.shape)
                                if isinstance(obj, h5py.Dataset) else None)
    assert len(shapes) == len(model.weights)
    assert sum(int(np.prod(s)) for s in shapes) == tie.parameters


@pytest.mark.parametrize("tie_name", list(TIES))
def test_keras_file_loads_in_a_fresh_process_with_the_tie(trained: Trained,
                                                          loaded: dict[str, Any], saved: Saved,
                                                          tie_name: str) -> None:
    tie, original = TIES[tie_name], trained[tie_name]
    saved(tie_name)
    assert loaded["keras_imported_by_graphdsl"] is False
    report = loaded[tie_name]
    assert "error" not in report, report.get("error")
    assert report["class"] == f"{type(original).__module__}.{type(original).__qualname__}"
    assert report["load_warnings"] == []
    # one variable per canonical tensor, the tie once
    assert report["variables"] == [[v.path, list(v.shape)] for v in original.weights]
    assert report["distinct"] == len(original.ir.params)
    result = dict(np.load(saved.folder / f"{tie_name}.result.npz"))
    batch = tie.batch()
    # the loaded weights and predictions are the original's
    before = {k[len("before."):]: v for k, v in result.items() if k.startswith("before.")}
    for name, value in snapshot(original).items():
        np.testing.assert_array_equal(before[name], value)
    expected = original(split(original, batch)[0])
    for name in expected:
        close(result[f"out.{name}"], expected[name])
    # one SGD step after loading moves the single shared tensor, and both uses read it
    after = {k[len("after."):]: v for k, v in result.items() if k.startswith("after.")}
    assert_step_moves_the_one_tensor(tie, before, after, report["loss"], batch)
    reference, _ = tie.reference({k: tf.constant(v) for k, v in after.items()}, batch)
    for name, value in reference.items():
        close(result[f"after_out.{name}"], value, 1e-5)


def test_keras_file_loads_when_keras_is_imported_before_graphdsl(saved: Saved,
                                                                  trained: Trained) -> None:
    saved("tied_autoencoder")
    report = load_in_fresh_process(saved.folder, ["tied_autoencoder"], "keras-first")
    assert "error" not in report["tied_autoencoder"], report["tied_autoencoder"].get("error")
    assert report["tied_autoencoder"]["load_warnings"] == []
    result = dict(np.load(saved.folder / "tied_autoencoder.result.npz"))
    original = trained["tied_autoencoder"]
    batch = TIES["tied_autoencoder"].batch()
    close(result["out.reconstruction"], original(batch)["reconstruction"])
