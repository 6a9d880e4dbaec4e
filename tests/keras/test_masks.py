"""Padding masks reach every layer and loss term that uses them, on Keras.

Keras drops masks silently on some paths: through nested models and sub-layers
(keras-team/keras#18416) and through plain tensor operations in functional models
(tensorflow/tensorflow#47069: arithmetic, ``tf.concat``, slicing...). ``MaskPaths`` puts a
padded sequence (two ``Embedding(mask_zero = true)`` merged by ``+``) through exactly those
paths: arithmetic and activation functions, a Dense and a Dropout, an LSTM, a block (an
LSTM and self-attention inside), a model used as a layer, ``concat``, slicing, attention,
Keras' global pooling layers, ``mean(where = ...)``, a masked ``softmax``, a final-state
LSTM, and into a per-token loss and metric, where the mask applies by itself. Every path is
an output of its own, so a failure names the path.

"Padding changes nothing" is checked three ways, each of which changes what a dropped mask
would read: (1) the padding rows (row 0) of the tables are replaced by large random
vectors; (2) the targets at padded positions are changed; (3) the same rows are padded to
a longer length. Per-step outputs are compared at real steps, everything else everywhere,
losses and metrics exactly as reported. The same checks run on every example with a
padding mask (shrunk as in tests/torch/conftest.py), and a control shows the checks do see
padding when there is no mask.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import Sym

from ..torch.conftest import ALL_EXAMPLES, example_program, synthetic_arrays
from .conftest import example_keras, keras_model, snapshot

pytestmark = pytest.mark.keras

MASK_PATHS = """
block Mixer(d: int) {
    input x : float32[B, T, d]

    h = LSTM(d, return_sequences = true)(x)
    a = MultiHeadAttention(2, d / 2)(h, h)
    output LayerNormalization()(h + a)
}

model Inner(d: int = 8) {
    input x : float32[B, T, d]
    inference output pooled = GlobalMaxPooling1D()(LSTM(d, return_sequences = true)(x))
}

model MaskPaths(vocab: int = 30, tags: int = 5, d: int = 8, classes: int = 3) {
    input  ids   : int32[B, T]       # 0 is padding
    input  tag   : int32[B, T]       # 0 is padding, aligned with ids
    target label : int32[B]
    target next  : int32[B, T]

    layer embed = Embedding(vocab, d, mask_zero = true)
    layer inner = Inner(d)

    merged = embed(ids) + Embedding(tags, d, mask_zero = true)(tag)     # a merge
    h = tanh(merged * 2.0 + 1.0)                                         # plain operations
    h = Dropout(0.0)(Dense(d, activation = relu)(h))
    inference output seq = LSTM(d, return_sequences = true)(h)
    inference output mixed = Mixer(d)(seq)                               # a block
    both = concat([seq, mixed], axis = -1)                               # concat
    inference output attended = MultiHeadAttention(2, 4)(both, both)     # attention
    inference output average = GlobalAveragePooling1D()(attended)        # Keras pooling
    inference output maximum = GlobalMaxPooling1D()(both[:, :, 0:4])     # through a slice
    inference output by_hand = mean(seq, axis = 1, where = expand_dims(mask_of(seq), -1))
    weights = softmax(squeeze(Dense(1)(seq), -1), axis = -1, where = mask_of(seq))
    inference output attention_pool = sum(seq * expand_dims(weights, -1), axis = 1)
    inference output sub_model = inner(mixed)                            # a model as a layer
    inference output last = LSTM(d)(mixed)                               # final state
    output logits = Dense(classes)(concat([average, maximum, by_hand, attention_pool,
                                           sub_model, last], axis = -1))
    output step_logits = Dense(vocab)(attended)
    loss sentence = crossentropy(logits, label, from_logits = true)
    loss tagging = 0.5 * crossentropy(step_logits, next, from_logits = true)   # masked
    metric tag_accuracy = accuracy(step_logits, next)                          # masked
}
"""

PER_STEP = ("seq", "mixed", "attended", "step_logits")
LENGTHS = np.array([6, 4, 2, 5])


def mask_paths_batch(steps: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of the lengths in LENGTHS padded (id 0) to ``steps``."""
    rng = np.random.default_rng(seed)
    real = np.arange(steps)[None, :] < LENGTHS[:, None]
    return {"ids": np.where(real, rng.integers(1, 30, (4, steps)), 0).astype("int32"),
            "tag": np.where(real, rng.integers(1, 5, (4, steps)), 0).astype("int32"),
            "label": rng.integers(0, 3, 4).astype("int32"),
            "next": rng.integers(0, 30, (4, steps)).astype("int32")}


def run(model: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output, loss term and metric (sum and count), as numpy."""
    x = {k: batch[k] for k in model.input_names}
    y = {k: batch[k] for k in model.target_names}
    outputs, terms, metrics = model.compute_losses(x, y)
    out = {k: np.asarray(v) for k, v in outputs.items()}
    out.update({f"loss {k}": np.asarray(v) for k, v in terms.items()})
    for k, (total, count) in metrics.items():
        out[f"metric {k}"] = np.array([float(total), float(count)])
    return out


def lookup_only_padding_tables(model: ModelGraph) -> list[str]:
    """The `mask_zero` tables read only by lookups: their row 0 is the padding vector."""
    tables = []
    for node in model.ops():
        data = model.node(node)
        if data["op"] != "Embedding" or not data["args"].get("mask_zero"):
            continue
        for src, edge in model.in_edges(node):
            if edge["port"] != "embeddings":
                continue
            readers = [model.node(c) for _, c in model.graph.out_edges(src)]
            if all(r["kind"] == "op" and r["op"] == "Embedding" for r in readers):
                tables.append(model.node(src)["name"])
    return sorted(set(tables))


def perturb_padding_rows(model: Any, tables: list[str]) -> None:
    rng = np.random.default_rng(99)
    for name in tables:
        variable = model.canonical_variables()[name]
        value = np.array(variable.numpy())
        value[0] = 10.0 * rng.standard_normal(value.shape[1:])
        variable.assign(value)


def step_axis_names(model: ModelGraph) -> dict[str, str | None]:
    """Each output's step axis (the symbolic size of its axis 1), None when it has none."""
    out: dict[str, str | None] = {}
    for node in model.outputs:
        data = model.node(node)
        shape = data["type"].shape
        out[data["name"]] = str(shape[1]) if len(shape) >= 3 and isinstance(shape[1], Sym) \
            else None
    return out


def real_steps(model: ModelGraph, batch: dict[str, np.ndarray], axis: str,
               steps: int) -> np.ndarray:
    """[B, steps]: True where every id or bool input along ``axis`` is real (not padding)."""
    real = np.ones((len(next(iter(batch.values()))), steps), dtype=bool)
    for node in model.inputs:
        data = model.node(node)
        t = data["type"]
        if len(t.shape) >= 2 and str(t.shape[1]) == axis and not t.is_float:
            real &= np.asarray(batch[data["name"]])[:, :steps] != 0
    return real


def assert_same(model: ModelGraph, a: dict[str, np.ndarray], b: dict[str, np.ndarray],
                batch: dict[str, np.ndarray], steps: int) -> None:
    """``b`` (possibly longer) equals ``a`` at every real step and in every loss and metric."""
    axes = step_axis_names(model)
    assert set(a) == set(b)
    failures = []
    for name, expected in a.items():
        actual = b[name]
        axis = axes.get(name)
        if axis is not None:
            real = real_steps(model, batch, axis, steps)
            expected, actual = expected[:, :steps][real], actual[:, :steps][real]
        if not np.allclose(actual, expected, rtol=1e-5, atol=1e-6):
            failures.append(f"{name}: max |difference| "
                            f"{np.max(np.abs(np.asarray(actual, float) - expected)):.3g}")
    assert not failures, "padding changed: " + "; ".join(failures)


def longer(model: ModelGraph, batch: dict[str, np.ndarray], extra: int) -> dict[str, np.ndarray]:
    """The same rows with ``extra`` more padded steps on every symbolic step axis."""
    out = {}
    for node in model.inputs + model.targets:
        data = model.node(node)
        t, value = data["type"], batch[data["name"]]
        if len(t.shape) >= 2 and isinstance(t.shape[1], Sym):
            if data["kind"] == "input":
                tail = np.zeros((value.shape[0], extra) + value.shape[2:], value.dtype)
            else:  # a target at a padded step: any valid value
                tail = value[:, :extra]
            value = np.concatenate([value, tail], axis=1)
        out[data["name"]] = value
    return out


# ---- MaskPaths ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mask_paths() -> Any:
    return keras_model(MASK_PATHS, "MaskPaths", seed=1)


def test_mask_paths_padding_rows_change_nothing(mask_paths: Any) -> None:
    model = mask_paths
    batch = mask_paths_batch()
    tables = lookup_only_padding_tables(model.ir)
    assert tables == ["embed.embeddings", "embedding.embeddings"]
    saved = snapshot(model)
    before = run(model, batch)
    try:
        perturb_padding_rows(model, tables)
        assert_same(model.ir, before, run(model, batch), batch, 6)
    finally:
        model.load_arrays(saved)


def test_mask_paths_targets_at_padded_steps_change_no_loss(mask_paths: Any) -> None:
    model = mask_paths
    batch = mask_paths_batch()
    changed = dict(batch)
    padded = batch["ids"] == 0
    changed["next"] = np.where(padded, (batch["next"] + 7) % 30, batch["next"]).astype("int32")
    assert (changed["next"] != batch["next"]).sum() == padded.sum() > 0
    assert_same(model.ir, run(model, batch), run(model, changed), batch, 6)


def test_mask_paths_longer_padding_changes_nothing(mask_paths: Any) -> None:
    model = mask_paths
    batch = mask_paths_batch()
    assert_same(model.ir, run(model, batch), run(model, longer(model.ir, batch, 3)), batch, 6)


def test_mask_paths_per_token_loss_and_metric_count_real_tokens_only(mask_paths: Any) -> None:
    model = mask_paths
    batch = mask_paths_batch()
    result = run(model, batch)
    real = batch["ids"] != 0
    logits = result["step_logits"].astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, batch["next"][..., None].astype(int), -1)[..., 0]
    np.testing.assert_allclose(result["loss tagging"], 0.5 * -picked[real].mean(), rtol=1e-5)
    correct = (logits.argmax(-1) == batch["next"])[real].sum()
    np.testing.assert_allclose(result["metric tag_accuracy"], [correct, real.sum()])


def test_mask_paths_training_gives_padding_rows_no_gradient() -> None:
    """One fit step (SGD): the padding rows are read by no real computation, so no gradient
    reaches them; every other table row that occurs does move."""
    model = keras_model(MASK_PATHS, "MaskPaths", seed=1)
    batch = mask_paths_batch()
    before = snapshot(model)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    model.fit({k: batch[k] for k in model.input_names},
              {k: batch[k] for k in model.target_names}, batch_size=4, epochs=1,
              shuffle=False, verbose=0)
    after = snapshot(model)
    for name, ids in (("embed.embeddings", batch["ids"]), ("embedding.embeddings",
                                                         batch["tag"])):
        np.testing.assert_array_equal(after[name][0], before[name][0])
        used = np.unique(ids[ids != 0])
        assert (np.abs(after[name][used] - before[name][used]).max(axis=1) > 0).all()


def test_without_the_mask_padding_does_change_the_outputs() -> None:
    """The control: the same checks see padding when nothing masks it."""
    source = MASK_PATHS.replace("mask_zero = true", "mask_zero = false")
    source = source.replace("mean(seq, axis = 1, where = expand_dims(mask_of(seq), -1))",
                            "mean(seq, axis = 1)")
    source = source.replace(", where = mask_of(seq))", ")")
    model = keras_model(source, "MaskPaths", seed=1)
    batch = mask_paths_batch()
    before = run(model, batch)
    perturb_padding_rows(model, ["embed.embeddings", "embedding.embeddings"])
    after = run(model, batch)
    for name in ("average", "maximum", "by_hand", "attention_pool", "sub_model", "last",
                 "loss sentence", "loss tagging"):
        assert not np.allclose(after[name], before[name], rtol=1e-5, atol=1e-6), name


# ---- every example with a padding mask --------------------------------------------------


def masked_example_models() -> list[tuple[str, str]]:
    cases = []
    for stem in ALL_EXAMPLES:
        program = example_program(stem)
        for name, model in program.models.items():
            if any(model.node(n)["op"] == "Embedding" and model.node(n)["args"].get("mask_zero")
                   for n in model.ops()):
                cases.append((stem, name))
    return cases


MASKED_EXAMPLES = masked_example_models()


def test_the_examples_with_masks_are_found() -> None:
    stems = {stem for stem, _ in MASKED_EXAMPLES}
    # (bert_base masks attention keys from its `attention_mask` input, as Hugging Face's
    # BERT does, not from `mask_zero`: tests/parity/test_convert_weights.py covers it)
    assert {"s02_embedding_lookup", "s12_masked_pooling", "s16_finetune_groups"} <= stems


@pytest.mark.parametrize(("stem", "name"), MASKED_EXAMPLES,
                         ids=[f"{s}-{n}" for s, n in MASKED_EXAMPLES])
def test_example_padding_changes_nothing(stem: str, name: str) -> None:
    model = example_keras(stem, name, seed=1)
    ir = model.ir
    batch = synthetic_arrays(ir, batch=4, steps=6, seed=2)
    before = run(model, batch)
    # (3) longer padding
    assert_same(ir, before, run(model, longer(ir, batch, 3)), batch, 6)
    # (1) padding rows of the tables read only by lookups
    tables = lookup_only_padding_tables(ir)
    if tables:
        perturb_padding_rows(model, tables)
        assert_same(ir, before, run(model, batch), batch, 6)
