"""Five SGD steps in each backend, from the same weights and batches, end in the same place.

Each example model trains five steps through each backend's own engine (what `graphdsl
train` runs: forward, loss terms, per-group gradients, optimizer step, constraint
projections): ``TorchEngine`` with ``torch.optim.SGD``, ``KerasEngine`` with
``keras.optimizers.SGD``. Both start from the same canonical weights and see the same five
batches. Afterwards every parameter (state such as BatchNorm's moving statistics
included) must agree within 1e-4, and the loss terms of every step within 1e-4.

The train blocks' optimizer groups are kept (patterns and per-group losses: S14's two
players still step on their own losses) with every group's optimizer replaced by
``sgd(lr = 0.05)`` and batches of 4 (ResNet-18, ResNeXt-50: lr 1e-3, batches of 8;
MobileNetV2: one such step; see ``CONDITIONED``).
The examples are shrunk (tests/torch/conftest.py) and every dropout
rate is set to 0 in the source text (``Dropout(...)`` -> ``Dropout(0.0)``,
``dropout = 0.1`` -> ``dropout = 0.0``), since the two frameworks draw different random
masks; models that sample in training (``sample_normal``, ``GaussianNoise``) are left out
for the same reason, and models without a loss have nothing to train
(``test_models_left_out_are_exactly_the_random_and_loss_free_ones``).

A second test runs the same five steps with Adam, AdamW, RMSprop and Adagrad on a model
whose batches repeat token ids: the update of an embedding table must be the canonical one
in both backends.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import graphdsl
from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.runtime.training import Settings, resolve_settings
from graphdsl.runtime.weights import initial_values

from ..torch.conftest import ALL_EXAMPLES, EXAMPLES, example_source, synthetic_arrays

pytestmark = [pytest.mark.keras, pytest.mark.torch]

LR = 0.05
BATCH = 4
STEPS = 5
TOL = 1e-4
RANDOM_IN_TRAINING = {"sample_normal", "GaussianNoise"}
# ResNet-18 shrunk to 32x32 inputs ends in 1x1 feature maps, where BatchNormalization over a
# 4-sample batch divides by a near-zero variance: float32 rounding differences (1e-7) grow
# chaotically within five steps at lr 0.05 even though the first step agrees to 1e-5
# relative. Batches of 8 and lr 1e-3 keep the problem well conditioned.
# ResNeXt-50 ends in 1x1 maps the same way. MobileNetV2 (17 blocks of BatchNormalization
# on maps down to 1x1) is worse: its first step agrees to 1e-4 relative (gradients of ~60
# per weight), but its gradients are so sensitive to the weights that the second step
# differs by 10% even at lr 1e-4, with relu as with relu6 and on every batch tried. It is
# compared over one step.
CONDITIONED: dict[str, dict[str, float]] = {
    "resnet18": {"lr": 1e-3, "batch": 8}, "resnext50": {"lr": 1e-3, "batch": 8},
    "mobilenet_v2": {"lr": 1e-3, "batch": 8, "steps": 1}}
# Keras traces each engine function once per model: 20-75 s for these deep graphs.
SLOW = {"resnet18", "gpt2_small", "mobilenet_v2", "unet_pets", "bigru_imdb", "resnext50"}


def deterministic_source(stem: str) -> str:
    text = re.sub(r"\bDropout\([^()]*\)", "Dropout(0.0)", example_source(stem))
    text = re.sub(r"\bdropout\s*=\s*[0-9.]+", "dropout = 0.0", text)
    # a rate given as a formal (`dropout: float = 0.1`, transformer_lm's layers)
    return re.sub(r"\b(dropout\s*:\s*float\s*=\s*)[0-9.]+", r"\g<1>0.0", text)


def deterministic_program(stem: str) -> Program:
    return graphdsl.compile(deterministic_source(stem), file=str(EXAMPLES / f"{stem}.gdl"),
                            base_dir=str(EXAMPLES))


def comparable(model: ModelGraph) -> bool:
    """Has a loss to train, and no random draw in training."""
    return bool(model.losses) and not any(model.node(n)["op"] in RANDOM_IN_TRAINING
                                          for n in model.ops())


def with_optimizer(spec: Spec, name: str, **args: Any) -> Spec:
    """``name`` with its defaults and ``args``, keeping the group's own `loss`."""
    values = {**dict(default_spec("optimizer", name).args), **args}
    if spec.get("loss"):
        values["loss"] = spec.get("loss")
    return Spec("optimizer", name, tuple(values.items()))


def settings_for(model: ModelGraph, optimizer: str, **args: Any) -> Settings:
    settings = resolve_settings(model, {"device": "cpu", "seed": 0})
    settings.optimizers = [(pattern, with_optimizer(spec, optimizer, **args))
                           for pattern, spec in settings.optimizers]
    return settings


def train_both(program: Program, model: ModelGraph, settings: Settings,
               batches: list[dict[str, np.ndarray]]) -> tuple[Any, Any, list[Any], list[Any]]:
    from graphdsl.backends.keras.train import KerasEngine
    from graphdsl.backends.torch.train import TorchEngine

    start = initial_values(model, 7)
    torch_engine = TorchEngine(program, model, settings)
    keras_engine = KerasEngine(program, model, settings)
    torch_engine.load_arrays(start)
    keras_engine.load_arrays(start)
    t_steps = [torch_engine.train_step(b, 1.0) for b in batches]
    k_steps = [keras_engine.train_step(b, 1.0) for b in batches]
    return torch_engine, keras_engine, t_steps, k_steps


def assert_same_end(torch_engine: Any, keras_engine: Any, t_steps: list[Any],
                    k_steps: list[Any], start: dict[str, np.ndarray]) -> None:
    t_end, k_end = torch_engine.export_arrays(), keras_engine.export_arrays()
    assert set(t_end) == set(k_end)
    failures = []
    for i, (t, k) in enumerate(zip(t_steps, k_steps, strict=True)):
        assert set(t.terms) == set(k.terms)
        for name in t.terms:
            if not abs(t.terms[name] - k.terms[name]) <= TOL * max(1.0, abs(t.terms[name])):
                failures.append(f"step {i + 1} loss {name}: {t.terms[name]:.6g} (torch) vs "
                                f"{k.terms[name]:.6g} (keras)")
    moved = 0
    for name in t_end:
        diff = float(np.max(np.abs(t_end[name].astype(np.float64) - k_end[name])))\
            if t_end[name].size else 0.0
        if not diff <= TOL:
            failures.append(f"{name}: max |difference| {diff:.3g}")
        moved += name in start and not np.array_equal(t_end[name], start[name])
    assert not failures, "; ".join(failures)
    assert moved, "no parameter moved: the comparison proves nothing"


CASES = [(stem, name) for stem in ALL_EXAMPLES
         for name, model in deterministic_program(stem).models.items() if comparable(model)]


def test_models_left_out_are_exactly_the_random_and_loss_free_ones() -> None:
    left_out = {(stem, name) for stem in ALL_EXAMPLES
                for name in deterministic_program(stem).models} - set(CASES)
    assert left_out == {("s11_vae", "VAE"), ("bert_base", "BertBase"),
                        ("s14_gan", "Generator"), ("s14_gan", "Discriminator"),
                        ("lstm_seq2seq", "Encoder"), ("lstm_seq2seq", "DecoderStep")}


@pytest.mark.parametrize(("stem", "name"), [
    pytest.param(s, n, id=f"{s}-{n}", marks=[pytest.mark.slow] if s in SLOW else [])
    for s, n in CASES])
def test_five_sgd_steps_end_within_tolerance(stem: str, name: str) -> None:
    program = deterministic_program(stem)
    model = program.models[name]
    case = {"lr": LR, "batch": BATCH, "steps": STEPS, **CONDITIONED.get(stem, {})}
    settings = settings_for(model, "sgd", lr=case["lr"])
    batches = [synthetic_arrays(model, batch=int(case["batch"]), steps=5, seed=s)
               for s in range(int(case["steps"]))]
    torch_engine, keras_engine, t_steps, k_steps = train_both(program, model, settings,
                                                              batches)
    assert_same_end(torch_engine, keras_engine, t_steps, k_steps, initial_values(model, 7))


BAG_OF_WORDS = """
model BagOfWords(vocab: int = 12, d: int = 4) {
    input  ids   : int32[B, T]
    target label : int32[B]
    h = GlobalAveragePooling1D()(Embedding(vocab, d, mask_zero = true)(ids))
    output logits = Dense(3)(h)
    loss crossentropy(logits, label, from_logits = true)
}
"""


@pytest.mark.parametrize(("optimizer", "args"), [
    ("adam", {}), ("adamw", {}), ("rmsprop", {}),
    # a large epsilon tells `g / (sqrt(v) + eps)` from Keras' own `g / sqrt(v + eps)`
    ("rmsprop", {"momentum": 0.9, "centered": True, "weight_decay": 0.01, "epsilon": 0.1}),
    ("adagrad", {}),
    ("adagrad", {"weight_decay": 0.01, "initial_accumulator_value": 0.0, "epsilon": 0.1})],
    ids=["adam", "adamw", "rmsprop", "rmsprop-momentum-centered-decay", "adagrad",
         "adagrad-decay-from-zero"])
def test_five_adaptive_steps_with_repeated_ids_end_within_tolerance(
        optimizer: str, args: dict[str, Any]) -> None:
    """Against PyTorch's own optimizers (torch.optim.Adam, AdamW, RMSprop, Adagrad): the
    Keras side computes the same canonical update."""
    program = graphdsl.compile(BAG_OF_WORDS)
    model = program.model()
    settings = settings_for(model, optimizer, lr=1e-2, **args)
    rng = np.random.default_rng(0)
    batches = [{"ids": rng.integers(1, 4, (4, 6)).astype("int32"),   # ids 1..3 repeat
                "label": rng.integers(0, 3, 4).astype("int32")} for _ in range(STEPS)]
    torch_engine, keras_engine, t_steps, k_steps = train_both(program, model, settings,
                                                              batches)
    assert_same_end(torch_engine, keras_engine, t_steps, k_steps, initial_values(model, 7))
