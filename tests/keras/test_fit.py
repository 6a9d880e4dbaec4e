"""Training a graphdsl model with Keras' own ``model.compile()`` + ``model.fit()``.

* A two-head model with a loss mixture (a `where` mask on one term, term weights, sample
  weights, class weights, an activity penalty) trains in ONE ``fit`` call; the History has
  ``loss``, each named term and the metric; each reported value equals its formula
  (docs/ops.md) computed by hand from the model's outputs; ``loss`` is the sum of the
  terms; the step is SGD on the gradient of that sum.
* Per-group optimizers (S16) from the train block with ``model.compile()`` and no
  optimizer; each group's first Adam step has its own size.
* S14 (a GAN): each optimizer steps on the gradient of its own loss only (checked against
  ``torch.optim.Adam``, the canonical update, applied to the own-loss gradients;
  ``Dropout(0.3)`` is replaced by ``Dropout(0.0)`` so the step is reproducible).
* S11: sampling is deterministic in inference (z = mean), random in training.
* S10: after every step the projected constraints hold, and the step is exactly the
  projection of the plain SGD step (which alone breaks them).
* S3: a frozen table is not trainable and stays bit-identical; S5: masked kernel taps
  neither move nor matter.
Examples are shrunk as in tests/torch/conftest.py.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from .conftest import EXAMPLES, example_keras, keras_model, snapshot

pytestmark = pytest.mark.keras

MIXTURE = """
model Mixture(features: int = 6, classes: int = 3) {
    input  x      : float32[B, features]
    target label  : int32[B]                # -1: unlabelled
    target value  : float32[B, 2]
    target weight : float32[B]              # per-sample weight of the regression

    h = Dense(8, activation = tanh)(x)
    output logits = Dense(classes)(h)
    output regression = Dense(2)(h)
    inference output hidden = h

    labelled = label >= 0
    loss classification = 0.7 * crossentropy(logits, label, from_logits = true,
                                              where = labelled, class_weight = [1.0, 2.0, 4.0])
    loss fit_values = 0.3 * mse(regression, value, sample_weight = weight)
    loss activity = 0.01 * mean(square(h))
    metric accuracy(logits, label, where = labelled)
}
"""

TERMS = ("classification", "fit_values", "activity")
CLASS_WEIGHT = np.array([1.0, 2.0, 4.0])


def mixture_data(n: int = 8) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    label = rng.integers(0, 3, n).astype("int32")
    label[[1, 4]] = -1
    return ({"x": rng.standard_normal((n, 6)).astype("float32")},
            {"label": label, "value": rng.standard_normal((n, 2)).astype("float32"),
             "weight": rng.random(n).astype("float32")})


def by_hand(outputs: dict[str, Any], y: dict[str, np.ndarray]) -> dict[str, float]:
    """docs/ops.md: sum(l * w * m) / sum(w * m), then the statement's weight."""
    logits = np.asarray(outputs["logits"], np.float64)
    labelled = y["label"] >= 0
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ids = np.where(labelled, y["label"], 0)
    nll = -log_p[np.arange(len(ids)), ids]
    cw = CLASS_WEIGHT[ids] * labelled
    squared = ((np.asarray(outputs["regression"], np.float64) - y["value"]) ** 2).mean(-1)
    w = y["weight"].astype(np.float64)
    hidden = np.asarray(outputs["hidden"], np.float64)
    correct = (logits.argmax(-1) == y["label"]) & labelled
    return {"classification": 0.7 * (nll * cw).sum() / cw.sum(),
            "fit_values": 0.3 * (squared * w).sum() / w.sum(),
            "activity": 0.01 * (hidden ** 2).mean(),
            "accuracy": correct.sum() / labelled.sum()}


def test_loss_mixture_trains_in_one_fit_call_and_reports_every_term() -> None:
    model = keras_model(MIXTURE, seed=2)
    x, y = mixture_data()
    expected = by_hand(model(x), y)
    before = snapshot(model)
    with tf.GradientTape() as tape:
        _, terms, _ = model.compute_losses(x, y, training=True)
        total = sum(terms.values())
    grads = dict(zip(model.canonical_variables(),
                     tape.gradient(total, list(model.canonical_variables().values())),
                     strict=True))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    assert set(history) == {"loss", *TERMS, "accuracy"}
    for name, value in expected.items():
        assert history[name][0] == pytest.approx(value, rel=1e-5), name
    assert history["loss"][0] == pytest.approx(sum(expected[t] for t in TERMS), rel=1e-5)
    # the step is SGD on the gradient of the sum of every term, both heads included
    after = snapshot(model)
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value - 0.1 * grads[name].numpy(), atol=1e-6)
        assert not np.array_equal(after[name], value), f"{name} did not move"


def test_loss_mixture_history_over_epochs_and_batches() -> None:
    model = keras_model(MIXTURE, seed=2)
    x, y = mixture_data(16)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0).history
    assert set(history) == {"loss", *TERMS, "accuracy"}
    for name, values in history.items():
        assert len(values) == 3 and all(np.isfinite(values)), name
    for epoch in range(3):
        assert history["loss"][epoch] == pytest.approx(
            sum(history[t][epoch] for t in TERMS), rel=1e-5)
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    expected = by_hand(model(x), y)
    assert set(result) == set(history)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-5), name
    assert result["loss"] == pytest.approx(sum(expected[t] for t in TERMS), rel=1e-5)


def test_unlabelled_samples_change_no_classification_gradient() -> None:
    model = keras_model(MIXTURE, seed=2)
    x, y = mixture_data()
    changed = {**x, "x": x["x"].copy()}
    changed["x"][[1, 4]] += 5.0                       # the unlabelled samples' inputs
    variables = list(model.canonical_variables().values())

    def classification_grads(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with tf.GradientTape() as tape:
            _, terms, _ = model.compute_losses(inputs, y)
        return [g.numpy() for g in tape.gradient(terms["classification"], variables)
                if g is not None]

    for a, b in zip(classification_grads(x), classification_grads(changed), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-7)


# ---- S16: one optimizer per parameter group -----------------------------------------------


def test_s16_compile_uses_the_train_blocks_groups_and_each_steps_at_its_rate() -> None:
    model = example_keras("s16_finetune_groups", seed=1, formals={"layers": 1})
    model.compile()
    (spec1, opt1, names1), (spec2, opt2, names2) = model.groups
    trainable = {v.path.replace("/", ".") for v in model.trainable_variables}
    assert set(names1) | set(names2) == set(model.canonical_variables()) == trainable
    assert not set(names1) & set(names2)
    assert set(names1) == {n for n in trainable if n.startswith("encoder.")}
    assert set(names2) == {"head.kernel", "head.bias"}
    # graphdsl's Adam and AdamW: Keras' classes with PyTorch's (canonical) epsilon placement
    assert isinstance(opt1, keras.optimizers.AdamW)
    assert isinstance(opt2, keras.optimizers.Adam) and not isinstance(opt2,
                                                                       keras.optimizers.AdamW)
    assert float(opt1.learning_rate) == pytest.approx(2e-5)
    assert opt1.weight_decay == pytest.approx(0.01)
    assert float(opt2.learning_rate) == pytest.approx(1e-3)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (4, 6)).astype("int32")
    ids[1:, 4:] = 0
    before = snapshot(model)
    model.fit({"ids": ids}, {"label": rng.integers(0, 2, 4).astype("int32")}, batch_size=4,
              epochs=1, verbose=0)
    after = snapshot(model)
    # a first Adam step moves each element by at most lr (AdamW: plus lr * decay * |w|),
    # give or take the float32 rounding of the weights themselves
    for name in names1:
        delta, w = np.abs(after[name] - before[name]), np.abs(before[name])
        assert not np.array_equal(after[name], before[name]), f"{name} did not move"
        assert (delta <= 2e-5 * (1 + 0.01 * w) + 2 * np.spacing(w)).all(), name
    delta = np.concatenate([np.abs(after[n] - before[n]).ravel() for n in names2])
    w = np.concatenate([np.abs(before[n]).ravel() for n in names2])
    assert (delta <= 1e-3 + 2 * np.spacing(w)).all() and np.median(delta) > 0.9e-3


# ---- S14: each optimizer steps on its own loss ---------------------------------------------


@pytest.mark.torch
def test_s14_each_group_steps_on_the_gradient_of_its_own_loss() -> None:
    model = example_keras("s14_gan", "GAN", seed=3, replace=[("Dropout(0.3)", "Dropout(0.0)")])
    rng = np.random.default_rng(1)
    x = {"noise": rng.standard_normal((8, 8)).astype("float32"),
         "real": rng.random((8, 16)).astype("float32")}
    names = list(model.canonical_variables())
    variables = list(model.canonical_variables().values())
    before = snapshot(model)
    with tf.GradientTape(persistent=True) as tape:
        _, terms, _ = model.compute_losses(x, {}, training=True)
        own = {"discriminator.": sum(v for k, v in terms.items()
                                     if k.split(".")[0] == "discriminator_loss"),
               "generator.": sum(v for k, v in terms.items()
                                 if k.split(".")[0] == "generator_loss")}
        total = sum(terms.values())
    assert set(terms) >= {"generator_loss"} and len(terms) == 3

    def adam_step(loss: Any) -> dict[str, np.ndarray]:
        grads = dict(zip(names, tape.gradient(loss, variables), strict=True))
        out = {}
        for prefix in own:
            group = [n for n in names if n.startswith(prefix)]
            # the reference step: torch.optim.Adam, whose update is the canonical one
            copies = [torch.nn.Parameter(torch.from_numpy(before[n].copy())) for n in group]
            for c, n in zip(copies, group, strict=True):
                c.grad = torch.from_numpy(np.array(grads[n]))
            opt = torch.optim.Adam(copies, lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
            opt.step()
            out.update({n: c.detach().numpy() for n, c in zip(group, copies, strict=True)})
        return out

    expected = {}
    for prefix, loss in own.items():
        expected.update({n: v for n, v in adam_step(loss).items() if n.startswith(prefix)})
    on_total = adam_step(total)
    model.compile()
    model.fit(x, None, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after = snapshot(model)
    assert set(expected) == set(after)
    for name in names:
        np.testing.assert_allclose(after[name], expected[name], atol=1e-7, err_msg=name)
    # the check can fail: the step on the total loss is a different step
    assert max(np.abs(on_total[n] - expected[n]).max() for n in names) > 1e-5


# ---- S11: sampling ---------------------------------------------------------------------


def test_s11_sampling_is_deterministic_in_inference_and_random_in_training() -> None:
    model = example_keras("s11_vae", seed=1)
    x = {"x": np.random.default_rng(2).random((8, 16)).astype("float32")}
    first, second = model(x), model(x, training=False)
    np.testing.assert_array_equal(first["reconstruction"], second["reconstruction"])
    predicted = model.predict(x, verbose=0)
    np.testing.assert_allclose(predicted["reconstruction"], first["reconstruction"], atol=1e-6)
    # in inference z is the mean: the decoder by hand on the `mean` output
    w = snapshot(model)
    h = np.maximum(np.asarray(first["mean"]) @ w["dense_1.kernel"] + w["dense_1.bias"], 0)
    decoded = 1 / (1 + np.exp(-(h @ w["dense_2.kernel"] + w["dense_2.bias"])))
    np.testing.assert_allclose(first["reconstruction"], decoded, atol=1e-5)
    a, b = model(x, training=True), model(x, training=True)
    assert not np.allclose(a["reconstruction"], b["reconstruction"])
    model.compile()
    e1 = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    e2 = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    assert e1 == e2


# ---- S10: constraints ------------------------------------------------------------------


def simplex_projection(v: np.ndarray, axis: int) -> np.ndarray:
    """Euclidean projection of each slice along ``axis`` onto the probability simplex."""
    moved = np.moveaxis(v, axis, -1)
    u = -np.sort(-moved, axis=-1)
    cumulative = np.cumsum(u, axis=-1) - 1.0
    index = np.arange(1, u.shape[-1] + 1)
    rho = (u - cumulative / index > 0).sum(-1, keepdims=True)
    theta = np.take_along_axis(cumulative, rho - 1, -1) / rho
    return np.moveaxis(np.maximum(moved - theta, 0.0), -1, axis)


def test_s10_fit_steps_are_projected_back_onto_the_constraints() -> None:
    model = example_keras("s10_constrained_params", "NoisyLabels", seed=1)
    rng = np.random.default_rng(3)
    x = {"x": rng.standard_normal((16, 32)).astype("float32")}
    y = {"noisy": rng.integers(0, 10, 16).astype("int32")}
    before = snapshot(model)
    variables = model.canonical_variables()
    with tf.GradientTape() as tape:
        _, terms, _ = model.compute_losses(x, y, training=True)
        total = sum(terms.values())
    grads = dict(zip(variables, tape.gradient(total, list(variables.values())), strict=True))
    lr = 5.0
    raw = {n: before[n] - lr * grads[n].numpy() for n in before}
    # the plain step alone breaks every constraint ...
    assert raw["dense.kernel"].min() < 0
    assert np.abs(raw["Q"].sum(axis=0) - 1).max() > 1e-3 or raw["Q"].min() < 0
    assert np.abs(np.linalg.norm(raw["dense_1.kernel"], axis=0) - 1).max() > 1e-3
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    after = snapshot(model)
    # ... and fit applied exactly its projection
    np.testing.assert_allclose(after["dense.kernel"], np.maximum(raw["dense.kernel"], 0),
                               atol=1e-5)
    np.testing.assert_allclose(after["Q"], simplex_projection(raw["Q"], 0), atol=1e-5)
    unit = raw["dense_1.kernel"] / np.linalg.norm(raw["dense_1.kernel"], axis=0, keepdims=True)
    np.testing.assert_allclose(after["dense_1.kernel"], unit, atol=1e-5)
    # more steps: the constraints hold after each
    for _ in range(3):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        w = snapshot(model)
        assert w["dense.kernel"].min() >= 0
        assert w["Q"].min() >= 0 and np.abs(w["Q"].sum(axis=0) - 1).max() < 1e-5
        assert np.abs(np.linalg.norm(w["dense_1.kernel"], axis=0) - 1).max() < 1e-5


# ---- S3 frozen tables and S5 kernel masks ---------------------------------------------------


def test_s3_frozen_table_is_not_trainable_and_stays_bit_identical() -> None:
    model = example_keras("s03_pretrained_vectors", "FrozenVectors", seed=1)
    table = model.canonical_variables()["vectors.embeddings"]
    assert not table.trainable
    assert all(v is not table for v in model.trainable_variables)
    np.testing.assert_array_equal(table.numpy(), np.load(EXAMPLES / "data" / "vectors.npy")
                                  .astype("float32"))
    rng = np.random.default_rng(4)
    ids = rng.integers(1, 200, (16, 6)).astype("int32")
    before = snapshot(model)
    model.compile()
    model.fit({"ids": ids}, {"label": rng.integers(0, 4, 16).astype("int32")}, batch_size=8,
              epochs=2, verbose=0)
    after = snapshot(model)
    np.testing.assert_array_equal(after["vectors.embeddings"], before["vectors.embeddings"])
    assert not np.array_equal(after["dense.kernel"], before["dense.kernel"])


def full_rank(mask: np.ndarray, rank: int) -> np.ndarray:
    """A `<p>_mask` as broadcastable to its kernel: rank 1 is the first axis, rank 2 the
    first and last axes, else the full shape."""
    if mask.ndim == 1:
        return mask.reshape(mask.shape + (1,) * (rank - 1))
    if mask.ndim == 2 and rank > 2:
        return mask.reshape(mask.shape[:1] + (1,) * (rank - 2) + mask.shape[1:])
    return mask


def test_s5_masked_kernel_taps_neither_move_nor_matter() -> None:
    model = example_keras("s05_masked_conv", seed=1)
    masks = {n[:-len("_mask")]: m for n, m in model.export_arrays().items()
             if n.endswith("_mask")}
    assert set(masks) == {"conv1d.kernel", "conv1d_1.kernel"}
    rng = np.random.default_rng(6)
    x = {"image": rng.random((16, 8, 8, 1)).astype("float32")}
    y = {"label": rng.integers(0, 10, 16).astype("int32")}
    before = snapshot(model)
    model.compile()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    after = snapshot(model)
    variables = model.canonical_variables()
    reference = model(x)["probs"]
    for name, mask in masks.items():
        off = np.broadcast_to(full_rank(mask, after[name].ndim), after[name].shape) == 0
        assert off.any() and (~off).any()
        np.testing.assert_array_equal(after[name][off], before[name][off])
        assert not np.array_equal(after[name][~off], before[name][~off])
        # whatever the stored value at a masked tap, the outputs are the same
        variables[name].assign(np.where(off, 100.0, after[name]).astype("float32"))
    np.testing.assert_allclose(model(x)["probs"], reference, atol=1e-6)
