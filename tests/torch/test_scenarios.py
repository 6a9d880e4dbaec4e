"""S1-S20 (docs: /work/shared/design/scenarios.md): what must hold, on the PyTorch backend,
with real numbers from the example programs (shrunk: see conftest.py).

Training here goes through the backend's own ``TorchEngine.train_step`` (optimizer step,
then constraint projections), so the invariants are those of the real training loop. Numbers
are compared with closed forms or hand computations from the module's own weights.
S15 (partial restore) is in test_checkpoint.py; S19's compile-time shape errors are
front-end tests (tests/diagnostics); here S19 is the typed inputs running and the mask.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdsl
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.weights import initial_values

from .conftest import (
    EXAMPLES,
    example_module,
    example_program,
    example_source,
    make_engine,
    synthetic_arrays,
    synthetic_batch,
    to_tensors,
)
from .test_parity_reference import embedding, lstm

pytestmark = pytest.mark.torch


def close(actual: Any, expected: Any, tol: float = 1e-5) -> None:
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().numpy()
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def snapshot(module: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.canonical_tensors().items()}


def train_steps(engine: Any, arrays: dict[str, np.ndarray], steps: int) -> None:
    for _ in range(steps):
        engine.train_step(arrays, 1.0)


def inputs_of(module: Any, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return to_tensors(arrays, module.input_names)


def targets_of(module: Any, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return to_tensors(arrays, module.target_names)


# ---- S1: tied input/output embedding --------------------------------------------------


def tied_logits_by_hand(module: Any) -> Any:
    """s01's eval forward written out, reading the ONE matrix E for lookup and projection."""
    arrays = {k: v.astype(np.float64) for k, v in module.export_arrays().items()}
    emb = embedding(arrays, "embed.embeddings")
    rnn = lstm(arrays, "lstm")

    def run(tokens: torch.Tensor) -> torch.Tensor:
        h, _ = rnn(emb(tokens.long()))
        return h @ emb.weight.T

    return run


def test_s01_tie_is_one_tensor_after_training_and_after_save_load(tmp_path: Path) -> None:
    program = example_program("s01_tied_embeddings")
    engine = make_engine(program, lr=1e-2)
    module = engine.module
    table = module.embed.embeddings
    vocab_dim = tuple(table.shape)
    # one tensor in memory, counted once
    params = list(module.parameters())
    assert [p for p in params if tuple(p.shape) == vocab_dim] == [table]
    assert sum(p.numel() for p in params) == program.model().parameter_count
    assert [k for k, v in module.state_dict().items() if tuple(v.shape) == vocab_dim] == \
        ["embed.embeddings"]
    assert program.model().ties()["embed.embeddings"] == ["embed", "head"]

    arrays = synthetic_arrays(module.ir, batch=4, steps=5)
    before = table.detach().clone()
    train_steps(engine, arrays, 3)
    assert module.embed.embeddings is table
    assert not torch.equal(table, before), "training did not move the tied matrix"
    # both uses still read the same (updated) tensor
    module.eval()
    tokens = inputs_of(module, arrays)["tokens"]
    logits = module(tokens=tokens)["logits"]
    close(logits, tied_logits_by_hand(module)(tokens))

    # save -> load into a differently initialised module: stored once, tie and predictions kept
    path = tmp_path / "tied.safetensors"
    ckpt.save_checkpoint(str(path), module.export_arrays(),
                         ckpt.model_metadata(module.ir, "s01.gdl"))
    loaded = ckpt.load_checkpoint(str(path))
    assert [k for k, v in loaded.tensors.items() if tuple(v.shape) == vocab_dim] == \
        ["embed.embeddings"]
    fresh = example_module("s01_tied_embeddings", seed=7).eval()
    assert not torch.equal(fresh.embed.embeddings, table)
    fresh.load_arrays(ckpt.select(fresh.ir, loaded))
    assert torch.equal(fresh(tokens=tokens)["logits"], logits)
    close(fresh(tokens=tokens)["logits"], tied_logits_by_hand(fresh)(tokens))
    assert [p for p in fresh.parameters() if tuple(p.shape) == vocab_dim] == \
        [fresh.embed.embeddings]


# ---- S2: embedding lookup with a padding mask ---------------------------------------------


def test_s02_padding_mask_reaches_every_consumer() -> None:
    module = example_module("s02_embedding_lookup").eval()
    rng = np.random.default_rng(1)
    real = rng.integers(1, 50, size=(3, 4)).astype(np.int32)
    padded = np.concatenate([real, np.zeros((3, 3), np.int32)], axis=1)
    short, long_ = module(ids=torch.from_numpy(real)), module(ids=torch.from_numpy(padded))
    # the LSTM skips padded steps and the pooling averages real tokens only
    close(long_["class_logits"], short["class_logits"], 1e-6)
    close(long_["tag_logits"][:, :4], short["tag_logits"], 1e-6)
    # the per-token loss ignores padded positions, whatever their targets say
    tag = rng.integers(0, 12, size=(3, 7)).astype(np.int32)
    label = rng.integers(0, 3, size=3).astype(np.int32)
    targets = {"tag": torch.from_numpy(tag), "label": torch.from_numpy(label)}
    padded_loss = module.compute_losses({"ids": torch.from_numpy(padded)}, targets)
    tag[:, 4:] = (tag[:, 4:] + 5) % 12
    changed = module.compute_losses({"ids": torch.from_numpy(padded)}, targets)
    short_loss = module.compute_losses({"ids": torch.from_numpy(real)},
                                       {"tag": torch.from_numpy(tag[:, :4].copy()),
                                        "label": torch.from_numpy(label)})
    for name in ("tagging", "classification"):
        close(changed.terms[name], padded_loss.terms[name], 1e-6)
        close(short_loss.terms[name], padded_loss.terms[name], 1e-6)
    total, count = padded_loss.metrics["tag_accuracy"]
    assert float(count) == 12  # real tokens only
    # an integer id input is required: floats are a compile-time error
    bad = example_source("s02_embedding_lookup").replace("int32[B, T]     # 0 is padding",
                                                         "float32[B, T]")
    with pytest.raises(graphdsl.GraphdslError) as err:
        graphdsl.compile(bad)
    assert "dtype-mismatch" in {d.code for d in err.value.diagnostics}


# ---- S3: pretrained vectors, frozen ---------------------------------------------------------


@pytest.mark.parametrize("model", ["FrozenVectors", "AdaptedVectors", "FrozenPlusFrequent"])
def test_s03_frozen_table_bit_identical_after_training(model: str) -> None:
    program = example_program("s03_pretrained_vectors")
    engine = make_engine(program, model, lr=1e-2)
    module = engine.module
    vectors = np.load(EXAMPLES / "data" / "vectors.npy")
    table = module.vectors.embeddings
    assert not table.requires_grad
    np.testing.assert_array_equal(table.detach().numpy(), vectors)
    before = snapshot(module)
    train_steps(engine, synthetic_arrays(module.ir, batch=8, steps=5), 3)
    after = snapshot(module)
    assert torch.equal(after["vectors.embeddings"], before["vectors.embeddings"])
    trainable = [n for n, t in module.canonical_tensors().items() if t.requires_grad]
    assert trainable and "vectors.embeddings" not in trainable
    for name in trainable:
        assert not torch.equal(after[name], before[name]), f"{name} did not change"


def test_s03_out_of_range_ids_use_row_zero_of_the_small_table() -> None:
    module = example_module("s03_pretrained_vectors", "FrozenPlusFrequent").eval()
    frequent = 20
    ids = torch.tensor([[3, 25, 150, 0]], dtype=torch.int32)
    same_row = torch.tensor([[3, 30, 199, 0]], dtype=torch.int32)  # 25, 150 -> 30, 199
    # the frozen part sees other rows; replace those with the originals' to isolate the tuned
    with torch.no_grad():
        module.vectors.embeddings[30] = module.vectors.embeddings[25]
        module.vectors.embeddings[199] = module.vectors.embeddings[150]
        module.tuned.embeddings[0] += 1.0  # row 0 must matter
    assert torch.equal(module(ids=ids)["logits"], module(ids=same_row)["logits"])
    assert module.tuned.embeddings.shape[0] == frequent


# ---- S4: structured weights from three scalars ---------------------------------------------


def test_s04_pattern_holds_exactly_with_three_trainable_scalars() -> None:
    program = example_program("s04_structured_weights")
    engine = make_engine(program, lr=5e-2)
    module = engine.module
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == 3
    before = snapshot(module)
    train_steps(engine, synthetic_arrays(module.ir, batch=16), 4)
    module.eval()
    a, b, c = (module.canonical_tensors()[n].detach() for n in "abc")
    assert not torch.equal(a, before["a"])
    # Dense: y = x @ kernel, so feeding the identity reads the kernel out
    kernel = module(x=torch.eye(3))["prediction"].detach()
    expected = torch.stack([torch.stack(row) for row in
                            ([a, b, c], [c, a, b], [b, c, a])])
    assert torch.equal(kernel, expected)


# ---- S5: masked convolution kernels -------------------------------------------------------


def test_s05_masked_taps_are_zero_in_the_effective_kernel_and_stay_so() -> None:
    program = example_program("s05_masked_conv")
    engine = make_engine(program, lr=1e-2)
    module = engine.module
    tensors = module.canonical_tensors()
    skip = np.array([1, 0, 1, 1], np.float32)
    per_channel = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]],
                           np.float32)
    np.testing.assert_array_equal(tensors["conv1d.kernel_mask"].numpy(),
                                  np.broadcast_to(skip[:, None, None], (4, 8, 16)))
    np.testing.assert_array_equal(tensors["conv1d_1.kernel_mask"].numpy(),
                                  np.broadcast_to(per_channel[:, None, :], (4, 8, 4)))
    arrays = synthetic_arrays(module.ir, batch=8)
    before = snapshot(module)
    train_steps(engine, arrays, 3)
    after = snapshot(module)
    for name in ("conv1d.kernel", "conv1d_1.kernel"):
        hidden = after[name + "_mask"] == 0
        # no gradient ever reaches a masked tap: its stored value never moves
        assert torch.equal(after[name][hidden], before[name][hidden])
        assert not torch.equal(after[name][~hidden], before[name][~hidden])
    # the stored values at masked taps do not matter: the effective kernel is zero there
    module.eval()
    image = inputs_of(module, arrays)
    reference = module(**image)["probs"].detach()
    with torch.no_grad():
        for name in ("conv1d.kernel", "conv1d_1.kernel"):
            stored = module.canonical_tensors()[name]
            hidden = module.canonical_tensors()[name + "_mask"] == 0
            stored[hidden] = 100.0
    assert torch.equal(module(**image)["probs"], reference)
    with torch.no_grad():
        module.conv1d.kernel[0] += 1.0  # an unmasked tap does matter
    assert not torch.equal(module(**image)["probs"], reference)
    # the saved weights record the masks
    assert set(module.export_arrays()) >= {"conv1d.kernel_mask", "conv1d_1.kernel_mask"}


# ---- S6: two heads, missing labels ------------------------------------------------------


def test_s06_unlabelled_samples_change_no_classifier_gradient() -> None:
    module = example_module("s06_two_heads_missing_labels")
    arrays = synthetic_arrays(module.ir, batch=8)
    arrays["label"][[1, 4, 6]] = -1
    labelled = arrays["label"] >= 0
    head = [module.dense.kernel, module.dense.bias]
    encoder = [module.encoder.dense.kernel]

    def grads(a: dict[str, np.ndarray], params: list[torch.Tensor]) -> list[torch.Tensor]:
        result = module.compute_losses(inputs_of(module, a), targets_of(module, a))
        return list(torch.autograd.grad(result.total, params))

    full = grads(arrays, head)
    only_labelled = grads({k: v[labelled] for k, v in arrays.items()}, head)
    for g, h in zip(full, only_labelled, strict=True):
        close(g, h, 1e-6)
    changed = {k: v.copy() for k, v in arrays.items()}
    changed["image"][~labelled] = 1.0 - changed["image"][~labelled]
    for g, h in zip(full, grads(changed, head), strict=True):
        close(g, h, 1e-6)
    # ... while they do train the trunk through the reconstruction
    assert not torch.allclose(grads(arrays, encoder)[0], grads(changed, encoder)[0])
    # the metric counts labelled samples only
    result = module.compute_losses(inputs_of(module, arrays), targets_of(module, arrays))
    correct, count = result.metrics["accuracy"]
    predicted = result.outputs["logits"].argmax(-1).numpy()
    assert float(count) == labelled.sum()
    assert float(correct) == (predicted == arrays["label"])[labelled].sum()


# ---- S7: penalties summed into the loss, each term logged -------------------------------


def test_s07_loss_is_the_sum_of_named_terms_and_each_is_logged(tmp_path: Path) -> None:
    from graphdsl.backends.torch.train import train_model

    program = example_program("s07_activity_penalty")
    module = example_module("s07_activity_penalty")
    arrays = synthetic_arrays(module.ir, batch=8)
    result = module.compute_losses(inputs_of(module, arrays), targets_of(module, arrays))
    assert set(result.terms) == {"task", "sparsity", "dense.kernel.l2"}
    close(result.total, sum(result.terms.values()), 1e-6)
    hidden = result.outputs["hidden_code"]
    close(result.terms["sparsity"], 0.001 * hidden.abs().mean())
    close(result.terms["dense.kernel.l2"], 0.01 * (module.dense.kernel ** 2).sum())
    close(result.terms["task"], F.cross_entropy(result.outputs["logits"],
                                                torch.from_numpy(arrays["y"]).long()))
    # the training log has every term, and the loss is their sum, step by step
    data = tmp_path / "s07.npz"
    np.savez(data, **synthetic_arrays(module.ir, batch=24, seed=2))
    train_model(program, program.model(), {"data": str(data), "batch": 8, "epochs": 1,
                                           "validation": 0.0}, out=str(tmp_path / "run"),
                quiet=True)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x.get("split") == "train"]
    assert len(steps) == 3
    for entry in steps:
        assert {"task", "sparsity", "dense.kernel.l2"} <= set(entry)
        assert entry["loss"] == pytest.approx(entry["task"] + entry["sparsity"]
                                              + entry["dense.kernel.l2"], rel=1e-6)


# ---- S8: attention from parts ------------------------------------------------------------

ATTENTION_WEIGHTS = """
model AttentionWeights(d: int = 8, heads: int = 2) {
    input x    : float32[B, T, d]
    input keep : bool[B, T]
    dk = d / heads
    q = split_heads(Dense(d)(x), heads)
    k = split_heads(Dense(d)(x), heads)
    scores = q @ k.T / sqrt(dk)
    visible = expand_dims(expand_dims(keep, 1), 1) and causal_mask(x)
    inference output weights = softmax(scores, where = visible)
}
"""


def test_s08_masked_positions_get_exactly_zero_attention_weight() -> None:
    """s08's masking lines on their own (the whole of s08 is checked against a reference in
    test_parity_reference.py), exposing the weights."""
    module = graphdsl.compile(ATTENTION_WEIGHTS, backend="torch").eval()
    x = torch.randn(2, 6, 8) * 3.0
    keep = torch.tensor([[True, True, False, True, False, True], [True] * 6])
    weights = module(x=x, keep=keep)["weights"].detach()
    visible = keep[:, None, None, :] & torch.ones(6, 6, dtype=torch.bool).tril()
    visible = visible.expand_as(weights)
    assert bool((weights[~visible] == 0).all())
    assert bool((weights[visible] > 0).all())
    close(weights.sum(-1), torch.ones(2, 2, 6), 1e-6)


# ---- S9: a loss that uses a weight matrix --------------------------------------------------


def test_s09_gradients_reach_classifier_and_embedding_through_the_loss() -> None:
    module = example_module("s09_expected_embedding").eval()
    arrays = synthetic_arrays(module.ir, batch=4, steps=5)
    result = module.compute_losses(inputs_of(module, arrays), targets_of(module, arrays))
    table = module.embed.embeddings
    close(result.outputs["expected"], torch.softmax(result.outputs["logits"], -1) @ table)
    result.total.backward()
    assert module.dense_1.kernel.grad.abs().sum() > 0  # the classifier
    # rows never looked up get gradient only through softmax(logits) @ E
    unused = sorted(set(range(table.shape[0])) - set(arrays["context"].ravel().tolist()))
    assert unused and bool((table.grad[unused].abs().sum(-1) > 0).all())


# ---- S10: constrained parameters ---------------------------------------------------------


def constraints_hold(module: Any, q: torch.Tensor) -> None:
    q = q.detach()
    assert float(q.min()) >= -1e-6
    close(q.sum(0), torch.ones(q.shape[1]), 1e-6)
    assert float(module.dense.kernel.detach().min()) >= 0.0
    close(module.dense_1.kernel.detach().norm(dim=0), torch.ones(10), 1e-6)


@pytest.mark.parametrize("model", ["NoisyLabels", "NoisyLabelsReparam"])
def test_s10_constraints_hold_after_every_step(model: str) -> None:
    program = example_program("s10_constrained_params")
    engine = make_engine(program, model, lr=5e-2)
    module = engine.module
    start = module.Q.detach().clone()
    for step in range(5):
        engine.train_step(synthetic_arrays(module.ir, batch=16, seed=step), 1.0)
        constraints_hold(module, module.Q)
    assert not torch.allclose(module.Q, start), "Q never moved: the test proves nothing"
    if model == "NoisyLabelsReparam":
        stored = module.canonical_tensors()["Q"]
        assert not torch.allclose(stored, module.Q)  # Q = softmax(stored) at use
        close(module.Q, torch.softmax(stored, dim=0), 1e-6)


def test_s10_without_projection_the_same_steps_break_the_constraints() -> None:
    """The guard: the steps above do leave the constraint sets unless projected."""
    program = example_program("s10_constrained_params")
    engine = make_engine(program, "NoisyLabels", lr=5e-2)
    engine.module.project_constraints = lambda: None
    engine.train_step(synthetic_arrays(engine.module.ir, batch=16, seed=0), 1.0)
    with pytest.raises(AssertionError):
        constraints_hold(engine.module, engine.module.Q)


# ---- S11: sampling layers, KL term -------------------------------------------------------


def test_s11_kl_matches_closed_form_and_eval_is_reproducible() -> None:
    module = example_module("s11_vae")
    arrays = synthetic_arrays(module.ir, batch=6)
    x = torch.from_numpy(arrays["x"])
    t = module.canonical_tensors()
    h = torch.relu(x @ t["dense.kernel"] + t["dense.bias"])
    mean = h @ t["z_mean.kernel"] + t["z_mean.bias"]
    logvar = h @ t["z_logvar.kernel"] + t["z_logvar.bias"]
    kl = (-0.5 * (1 + logvar - mean ** 2 - logvar.exp()).sum(-1)).mean()
    for training in (True, False):
        module.train(training)
        result = module.compute_losses({"x": x}, {})
        close(result.terms["kl"], kl)
        close(result.outputs["mean"], mean)
    # eval: z = mean, reproducibly
    module.eval()
    first = module.compute_losses({"x": x}, {})
    second = module.compute_losses({"x": x}, {})
    assert torch.equal(first.total, second.total)
    assert torch.equal(first.outputs["reconstruction"], second.outputs["reconstruction"])
    decoded = torch.sigmoid(torch.relu(mean @ t["dense_1.kernel"] + t["dense_1.bias"])
                            @ t["dense_2.kernel"] + t["dense_2.bias"])
    close(first.outputs["reconstruction"], decoded)
    # training samples: two passes differ
    module.train()
    a, b = module(x=x)["reconstruction"], module(x=x)["reconstruction"]
    assert not torch.equal(a, b)


# ---- S12: masked merges and pooling ------------------------------------------------------


def test_s12_masked_mean_by_hand_and_padding_changes_nothing() -> None:
    module = example_module("s12_masked_pooling").eval()
    words = torch.tensor([[4, 9, 0, 7, 0], [3, 3, 8, 2, 6]], dtype=torch.int32)
    tags = torch.tensor([[2, 0, 5, 1, 0], [7, 1, 1, 0, 3]], dtype=torch.int32)
    query = torch.tensor([[11, 12, 0], [5, 0, 0]], dtype=torch.int32)
    logits = module(words=words, tags=tags, query=query)["logits"]
    t = module.canonical_tensors()
    w_emb, t_emb = t["word_embed.embeddings"], t["embedding.embeddings"]
    rows = []
    for b in range(2):
        steps = [i for i in range(5) if words[b, i] != 0 and tags[b, i] != 0]
        sentence = sum(w_emb[words[b, i]] + t_emb[tags[b, i]] for i in steps) / len(steps)
        asked = [int(q) for q in query[b] if q != 0]
        question = sum(w_emb[q] for q in asked) / len(asked)
        rows.append(torch.cat([sentence, question]) @ t["dense.kernel"] + t["dense.bias"])
    close(logits, torch.stack(rows), 1e-6)
    # more padding, and other ids at steps masked by the other input: the same result
    longer = module(words=F.pad(words, (0, 3)), tags=F.pad(tags, (0, 3)),
                    query=F.pad(query, (0, 4)))["logits"]
    close(longer, logits, 1e-6)
    other = words.clone()
    other[0, 1] = 33  # tags[0, 1] is padding, so this step stays masked
    assert torch.equal(module(words=other, tags=tags, query=query)["logits"], logits)


# ---- S13: sample and class weights -------------------------------------------------------


def test_s13_weighted_loss_formula_and_zero_weight_samples() -> None:
    module = example_module("s13_sample_class_weights").eval()
    arrays = synthetic_arrays(module.ir, batch=8)
    arrays["y"] = np.array([0, 1, 2, 3, 3, 2, 1, 0], np.int32)
    arrays["weight"] = np.array([1.0, 0.5, 0.0, 2.0, 1.0, 0.0, 0.3, 1.0], np.float32)
    result = module.compute_losses(inputs_of(module, arrays), targets_of(module, arrays))
    per_sample = F.cross_entropy(result.outputs["logits"], torch.from_numpy(arrays["y"]).long(),
                                 reduction="none")
    w = torch.from_numpy(arrays["weight"]) * torch.tensor([1.0, 1.0, 3.0, 5.0])[arrays["y"]]
    close(result.total, (w * per_sample).sum() / w.sum())
    # zero-weight samples: dropping them or changing them changes neither loss nor gradient
    params = [module.dense.kernel, module.dense_1.kernel]
    full = torch.autograd.grad(result.total, params)
    keep = arrays["weight"] > 0
    for variant in ({k: v[keep] for k, v in arrays.items()},
                    {**arrays, "x": np.where(keep[:, None], arrays["x"], 9.0).astype(np.float32),
                     "y": np.where(keep, arrays["y"], 3).astype(np.int32)}):
        other = module.compute_losses(inputs_of(module, variant), targets_of(module, variant))
        close(other.total, result.total, 1e-6)
        for g, h in zip(full, torch.autograd.grad(other.total, params), strict=True):
            close(g, h, 1e-6)


# ---- S14: models as layers (a GAN) ------------------------------------------------------


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def test_s14_sub_models_share_the_combined_models_weights() -> None:
    program = example_program("s14_gan")
    gan = example_module("s14_gan", "GAN").eval()
    weights = gan.export_arrays()
    generator = example_module("s14_gan", "Generator", seed=5).eval()
    discriminator = example_module("s14_gan", "Discriminator", seed=5).eval()
    generator.load_arrays(prefixed(weights, "generator."))
    discriminator.load_arrays(prefixed(weights, "discriminator."))
    assert program.models["GAN"].parameter_count == (program.models["Generator"].parameter_count
                                                     + program.models["Discriminator"]
                                                     .parameter_count)
    noise, real = torch.rand(4, 8), torch.rand(4, 16)
    out = gan(noise=noise, real=real)
    fake = generator(noise=noise)["sample"]
    close(out["fake"], fake, 1e-6)
    close(out["real_score"], discriminator(x=real)["score"], 1e-6)
    close(out["fake_score"], discriminator(x=fake)["score"], 1e-6)


def test_s14_each_optimizer_steps_on_its_own_loss_only() -> None:
    """First Adam step: delta = -lr * g / (|g| + eps), g the gradient of the group's loss."""
    program = example_program("s14_gan")
    engine = make_engine(program, "GAN")
    module = engine.module
    arrays = synthetic_arrays(module.ir, batch=8)
    tensors = module.canonical_tensors()
    groups = {"generator.": "generator_loss", "discriminator.": "discriminator_loss"}
    expected = {}
    torch.manual_seed(11)  # the same dropout draws as the step below
    module.train()
    result = module.compute_losses(inputs_of(module, arrays), {})
    for prefix, loss_name in groups.items():
        loss = sum(v for k, v in result.terms.items() if k.split(".")[0] == loss_name)
        names = [n for n in tensors if n.startswith(prefix)]
        grads = torch.autograd.grad(loss, [tensors[n] for n in names], retain_graph=True)
        for n, g in zip(names, grads, strict=True):
            expected[n] = tensors[n].detach() - 2e-4 * g / (g.abs() + 1e-7)
    torch.manual_seed(11)
    engine.train_step(arrays, 1.0)
    for name, value in expected.items():
        close(tensors[name], value, 1e-7)


# ---- S16: one optimizer per parameter group --------------------------------------------


def test_s16_every_trainable_parameter_in_exactly_one_group_and_encoder_moves() -> None:
    program = example_program("s16_finetune_groups")
    engine = make_engine(program)
    module = engine.module
    (_, opt1, names1), (_, opt2, names2) = engine.groups
    trainable = {n for n, t in module.canonical_tensors().items() if t.requires_grad}
    assert set(names1) | set(names2) == trainable and not set(names1) & set(names2)
    assert set(names1) == {n for n in trainable if n.startswith("encoder.")}
    assert set(names2) == {"head.kernel", "head.bias"}
    assert type(opt1) is torch.optim.AdamW and type(opt2) is torch.optim.Adam
    assert opt1.param_groups[0]["lr"] == 2e-5 and opt1.param_groups[0]["weight_decay"] == 0.01
    assert opt2.param_groups[0]["lr"] == 1e-3
    before = snapshot(module)
    train_steps(engine, synthetic_arrays(module.ir, batch=4, steps=6), 2)
    after = snapshot(module)
    for name in trainable:
        assert not torch.equal(after[name], before[name]), f"{name} did not change"
    # the classic bug: forget the head's group
    source = example_source("s16_finetune_groups").replace(
        "optimizer *         = adam(lr = 1e-3)", "")
    with pytest.raises(graphdsl.GraphdslError) as err:
        graphdsl.compile(source, base_dir=str(EXAMPLES))
    (diag,) = [d for d in err.value.diagnostics if d.code == "optimizer-coverage"]
    assert "`head.kernel`" in diag.message and "`head.bias`" in diag.message


# ---- S17: custom initialisers ------------------------------------------------------------


def test_s17_initial_values_have_exactly_the_stated_form() -> None:
    module = example_module("s17_custom_initializers", seed=3)
    t = {k: v.detach().numpy() for k, v in module.canonical_tensors().items()}
    np.testing.assert_array_equal(t["vectors.embeddings"],
                                  np.load(EXAMPLES / "data" / "vectors.npy"))
    np.testing.assert_array_equal(t["refine.kernel"], np.eye(16, dtype=np.float32))
    np.testing.assert_array_equal(t["refine.bias"], np.zeros(16, np.float32))
    signs, links = t["signs.kernel"], t["links.kernel"]
    assert set(np.unique(signs)) == {-1.0, 1.0}
    assert set(np.unique(links)) == {0.0, 1.0}
    assert 0.1 < links.mean() < 0.4  # p = 0.25
    np.testing.assert_array_equal(t["dense.bias"], np.full(64, 0.1, np.float32))
    np.testing.assert_array_equal(t["temperature"], np.ones(1, np.float32))
    # the module holds exactly the backend-neutral initial values
    for name, value in initial_values(module.ir, 3).items():
        np.testing.assert_array_equal(t[name], value)


# ---- S18: all hidden states --------------------------------------------------------------


def test_s18_stack_returns_n_plus_one_states_of_the_right_shape() -> None:
    module = example_module("s18_hidden_states").eval()  # layers = 2
    inputs, _ = synthetic_batch(module, batch=3, steps=5)
    out = module(**inputs)
    states = [out[f"states_{i}"] for i in range(3)]
    assert "states_3" not in out
    assert all(tuple(s.shape) == (3, 5, 8) for s in states)
    t = module.canonical_tensors()
    close(states[0], t["embedding.embeddings"][inputs["ids"].long()], 1e-6)

    def block(x: torch.Tensor, i: int) -> torch.Tensor:
        p = f"stack.{i}."
        n = F.layer_norm(x, (8,), t[p + "layer_normalization.gamma"],
                         t[p + "layer_normalization.beta"], eps=1e-3)
        h = F.gelu(n @ t[p + "dense.kernel"] + t[p + "dense.bias"])
        return x + h @ t[p + "dense_1.kernel"] + t[p + "dense_1.bias"]

    close(states[1], block(states[0], 0))
    close(states[2], block(states[1], 1))
    final = F.layer_norm(states[2], (8,), t["layer_normalization.gamma"],
                         t["layer_normalization.beta"], eps=1e-3)
    close(out["logits"], final @ t["dense.kernel"] + t["dense.bias"])


# ---- S19: explicit inputs and shapes -----------------------------------------------------


def test_s19_typed_inputs_run_and_invalid_steps_change_nothing() -> None:
    module = example_module("s19_explicit_shapes").eval()
    arrays = synthetic_arrays(module.ir, batch=4, steps=7)
    inputs = inputs_of(module, arrays)
    assert inputs["station"].dtype == torch.int64 and inputs["snapshot"].dtype == torch.uint8
    assert not bool(inputs["valid"].all())
    logits = module(**inputs)["logits"]
    assert tuple(logits.shape) == (4, 3) and bool(torch.isfinite(logits).all())
    # the invalid steps are trailing and the convolution causal: their readings are unused
    changed = dict(inputs)
    changed["readings"] = torch.where(inputs["valid"][..., None], inputs["readings"],
                                      torch.full_like(inputs["readings"], 50.0))
    close(module(**changed)["logits"], logits, 1e-6)
    changed["readings"] = inputs["readings"] + 1.0  # and valid steps do matter
    assert not torch.allclose(module(**changed)["logits"], logits)


# ---- S20: blocks and repetition ----------------------------------------------------------


def transformer_layer_count(d: int, heads: int, ff: int) -> int:
    attention = 4 * (d * d + d)  # q, k, v, output projections with biases (d / heads each)
    return attention + 2 * 2 * d + (d * ff + ff) + (ff * d + d)


@pytest.mark.parametrize("layers", [1, 3])
def test_s20_parameter_counts_match_the_closed_form(layers: int) -> None:
    vocab, d, heads, ff, classes = 50, 16, 2, 32, 2
    program = graphdsl.compile(example_source("s20_blocks_repeat").replace(
        "layers: int = 2", f"layers: int = {layers}"))
    rest = vocab * d + d * classes + classes
    block = transformer_layer_count(d, heads, ff)
    for name, expected in (("SeparateLayers", rest + layers * block),
                           ("SharedLayers", rest + block)):
        assert program.models[name].parameter_count == expected
        module = graphdsl.compile(example_source("s20_blocks_repeat").replace(
            "layers: int = 2", f"layers: int = {layers}"), backend="torch", model=name)
        assert sum(p.numel() for p in module.parameters()) == expected


def test_s20_shared_stack_applies_one_block_n_times() -> None:
    """SharedLayers == SeparateLayers whose two blocks both hold the shared block's weights."""
    shared = example_module("s20_blocks_repeat", "SharedLayers").eval()
    separate = example_module("s20_blocks_repeat", "SeparateLayers", seed=1).eval()
    weights = shared.export_arrays()
    copied = {}
    for name, value in weights.items():
        if name.startswith("transformer_layer."):
            rest = name[len("transformer_layer."):]
            copied.update({f"transformer_layer.{i}.{rest}": value for i in range(2)})
        else:
            copied[name] = value
    separate.load_arrays(copied)
    inputs, _ = synthetic_batch(shared, batch=3, steps=6)
    close(separate(**inputs)["logits"], shared(**inputs)["logits"], 1e-6)
    one = graphdsl.compile(example_source("s20_blocks_repeat").replace(
        "layers: int = 2", "layers: int = 1"), backend="torch", model="SharedLayers").eval()
    one.load_arrays(weights)
    assert not torch.allclose(one(**inputs)["logits"], shared(**inputs)["logits"])
