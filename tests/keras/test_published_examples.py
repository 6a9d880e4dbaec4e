"""The published architectures of examples/ against the models their authors built in
Keras, and a few training steps of each in the Keras backend.

The references are rebuilt here with Keras' own layers, as the sources write them:
keras.applications.MobileNetV2 itself, and keras.io's U-Net (oxford_pets_image_segmentation),
character-level LSTM seq2seq (lstm_seq2seq) and bidirectional IMDB classifier (with GRU
for LSTM). Their trainable and total weight counts must equal the checker's parameter
count and parameters + state (BatchNormalization's moving statistics). The torch-side
references (ResNeXt, the Transformer LM) are in tests/torch/test_published_examples.py.

Training: each example, shrunk as in tests/torch/conftest.py, is built by the Keras
backend, compiled with its train block's optimizer, else Adam (tests/torch/conftest.py's
REWRITE swaps the published SGD rates for Adam where they need real data) and fitted for four
epochs of one synthetic batch; its loss on that batch, in inference mode, must fall.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
from keras import layers

import graphdsl
from graphdsl.ir.graph import ModelGraph

from ..torch.conftest import synthetic_arrays
from .conftest import EXAMPLES, example_keras

pytestmark = pytest.mark.keras


def gdl_counts(stem: str, model: str | None = None,
               args: dict[str, Any] | None = None) -> tuple[int, int]:
    """(trainable, trainable + non-trainable + state) of an example, from the checker."""
    program = graphdsl.compile_file(str(EXAMPLES / f"{stem}.gdl"), args=args)
    graph: ModelGraph = program.model(model)
    return graph.trainable_count, graph.count(graph.param_nodes(None))


def keras_counts(model: keras.Model) -> tuple[int, int]:
    def size(weights: list[Any]) -> int:
        return sum(int(np.prod(w.shape)) for w in weights)
    return size(model.trainable_weights), size(model.weights)


# ---- the authors' models, in Keras ------------------------------------------------------

def keras_io_unet(img_size: tuple[int, int], num_classes: int) -> keras.Model:
    """keras.io: Image segmentation with a U-Net-like architecture, get_model()."""
    inputs = keras.Input(shape=img_size + (3,))
    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous_block_activation = x
    for filters in [64, 128, 256]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(
            previous_block_activation)
        x = layers.add([x, residual])
        previous_block_activation = x
    for filters in [256, 128, 64, 32]:
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.UpSampling2D(2)(x)
        residual = layers.UpSampling2D(2)(previous_block_activation)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])
        previous_block_activation = x
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs)


def keras_io_seq2seq(num_encoder_tokens: int, num_decoder_tokens: int,
                     latent_dim: int) -> tuple[keras.Model, keras.Model, keras.Model]:
    """keras.io: Character-level recurrent sequence-to-sequence model: the training model,
    then the sampling encoder and decoder built from the same layers."""
    encoder_inputs = keras.Input(shape=(None, num_encoder_tokens))
    encoder = layers.LSTM(latent_dim, return_state=True)
    _, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = keras.Input(shape=(None, num_decoder_tokens))
    decoder_lstm = layers.LSTM(latent_dim, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = layers.Dense(num_decoder_tokens, activation="softmax")
    model = keras.Model([encoder_inputs, decoder_inputs], decoder_dense(decoder_outputs))

    encoder_model = keras.Model(encoder_inputs, encoder_states)
    state_inputs = [keras.Input(shape=(latent_dim,)), keras.Input(shape=(latent_dim,))]
    outputs, h, c = decoder_lstm(decoder_inputs, initial_state=state_inputs)
    decoder_model = keras.Model([decoder_inputs] + state_inputs, [decoder_dense(outputs), h, c])
    return model, encoder_model, decoder_model


def bidirectional_gru_imdb(max_features: int, units: int, embedding_dim: int) -> keras.Model:
    """keras.io: Bidirectional LSTM on IMDB, with GRU layers and a masked padding id."""
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(max_features, embedding_dim, mask_zero=True)(inputs)
    x = layers.Bidirectional(layers.GRU(units, return_sequences=True))(x)
    x = layers.Bidirectional(layers.GRU(units))(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


# ---- parameter counts -------------------------------------------------------------------

@pytest.mark.parametrize(("alpha", "size", "classes"), [(1.0, 224, 1000), (0.35, 32, 10),
                                                         (1.4, 96, 10)])
def test_mobilenet_v2_counts_equal_keras_applications(alpha: float, size: int,
                                                      classes: int) -> None:
    reference = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha,
                                                weights=None, classes=classes)
    args = {"alpha": alpha, "size": size, "classes": classes}
    assert gdl_counts("mobilenet_v2", args=args) == keras_counts(reference)


def test_mobilenet_v2_defaults_have_the_published_counts() -> None:
    assert gdl_counts("mobilenet_v2") == (3_504_872, 3_538_984)   # keras.applications


def test_unet_counts_equal_the_keras_io_model() -> None:
    assert gdl_counts("unet_pets") == keras_counts(keras_io_unet((160, 160), 3))
    assert gdl_counts("unet_pets", args={"size": 64, "classes": 5}) == \
        keras_counts(keras_io_unet((64, 64), 5))


def test_seq2seq_counts_equal_the_keras_io_models() -> None:
    model, encoder_model, decoder_model = keras_io_seq2seq(71, 92, 256)
    assert gdl_counts("lstm_seq2seq", "Seq2Seq") == keras_counts(model)
    assert gdl_counts("lstm_seq2seq", "Encoder") == keras_counts(encoder_model)
    assert gdl_counts("lstm_seq2seq", "DecoderStep") == keras_counts(decoder_model)


def test_bidirectional_gru_counts_equal_keras() -> None:
    assert gdl_counts("bigru_imdb") == keras_counts(bidirectional_gru_imdb(20000, 64, 128))


# ---- training ---------------------------------------------------------------------------

TRAINED = [("mobilenet_v2", "MobileNetV2"), ("unet_pets", "UNet"), ("lstm_seq2seq", "Seq2Seq"),
           ("transformer_lm", "TransformerModel"), ("bigru_imdb", "BiGRUClassifier"),
           ("resnext50", "ResNeXt50")]


@pytest.mark.parametrize(("stem", "name"), TRAINED, ids=[s for s, _ in TRAINED])
def test_published_example_trains_in_keras(stem: str, name: str) -> None:
    keras.utils.set_random_seed(0)
    model = example_keras(stem, name)
    arrays = synthetic_arrays(model.ir, batch=8, steps=6)
    x = {n: arrays[n] for n in model.input_names}
    y = {n: arrays[n] for n in model.target_names}
    # The train block's optimizer (Adam without one). Eagerly: tracing these deep graphs for four steps took
    # 40 s (MobileNetV2), running them 6.
    model.compile(run_eagerly=True)
    before = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(before) and np.isfinite(after)
    assert after < before, f"{stem}: loss {before:.5f} -> {after:.5f}"


# ---- numbers ----------------------------------------------------------------------------

def test_mobilenet_v2_computes_what_keras_applications_computes() -> None:
    """keras.applications' weights, moved by layer name (Keras' `block_1_expand` is the
    example's `block_1.expand`), give the same probabilities in inference: the padding
    before each strided depthwise convolution, the widths, the shortcuts and relu6 are
    where Keras has them."""
    keras.utils.set_random_seed(1)
    reference = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                               weights=None, classes=10)
    rng = np.random.default_rng(0)
    by_path = {}
    for w in reference.weights:                      # statistics that are not 0 and 1
        value = np.asarray(w.numpy())
        if w.path.endswith(("moving_mean", "beta")):
            value = rng.uniform(-0.2, 0.2, value.shape).astype("float32")
        elif w.path.endswith(("moving_variance", "gamma")):
            value = rng.uniform(0.5, 1.5, value.shape).astype("float32")
        w.assign(value)
        by_path[w.path.replace("/", ".")] = value
    model = example_keras("mobilenet_v2", "MobileNetV2")          # alpha 0.35, 32x32, 10
    variables = model.canonical_variables()
    for name, variable in variables.items():
        layer, _, leaf = name.rpartition(".")
        leaf = {"depthwise_kernel": "kernel"}.get(leaf, leaf)   # Keras 3's variable name
        variable.assign(by_path[f"{layer.replace('.', '_')}.{leaf}"])
    assert len(variables) == len(reference.weights)
    image = rng.random((3, 32, 32, 3)).astype("float32")
    ours = np.asarray(model({"image": image}, training=False)["probs"])
    theirs = np.asarray(reference(image, training=False))
    assert float(theirs.std()) > 1e-3
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def randomised(reference: keras.Model, rng: np.random.Generator) -> list[np.ndarray]:
    """New values for the reference's weights (BatchNormalization's statistics and scales
    away from 0 and 1, everything else kept), assigned and returned in order."""
    values = []
    for w in reference.weights:
        value = np.asarray(w.numpy())
        if w.path.endswith(("moving_mean", "beta", "bias")):
            value = rng.uniform(-0.2, 0.2, value.shape).astype("float32")
        elif w.path.endswith(("moving_variance", "gamma")):
            value = rng.uniform(0.5, 1.5, value.shape).astype("float32")
        w.assign(value)
        values.append(value)
    return values


def padded_ids(rng: np.random.Generator, vocab: int, batch: int, steps: int) -> np.ndarray:
    ids = rng.integers(1, vocab, (batch, steps)).astype("int32")
    ids[1:, steps // 2:] = 0                                     # padding, masked
    return ids


# (example, model, the keras.io model at the shrunk sizes, inputs for both)
KERAS_IO = {
    "unet_pets": ("UNet", lambda: keras_io_unet((32, 32), 3),
                  lambda rng: {"image": rng.random((2, 32, 32, 3)).astype("float32")}),
    "bigru_imdb": ("BiGRUClassifier", lambda: bidirectional_gru_imdb(50, 8, 8),
                   lambda rng: {"words": padded_ids(rng, 50, 3, 7)}),
    "lstm_seq2seq": ("Seq2Seq", lambda: keras_io_seq2seq(7, 9, 16)[0],
                     lambda rng: {"encoder_inputs": rng.random((2, 5, 7)).astype("float32"),
                                  "decoder_inputs": rng.random((2, 4, 9)).astype("float32")}),
}


@pytest.mark.parametrize("stem", sorted(KERAS_IO))
def test_keras_io_examples_compute_what_the_keras_io_models_compute(stem: str) -> None:
    """The keras.io model's weights, moved in order (the example creates its layers in the
    source's order, each with Keras' variable layout), give the same outputs."""
    name, build, make_inputs = KERAS_IO[stem]
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(2)
    reference = build()
    values = randomised(reference, rng)
    model = example_keras(stem, name)
    variables = list(model.canonical_variables().values())
    assert [tuple(v.shape) for v in variables] == [v.shape for v in values]
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
    inputs = make_inputs(rng)
    ours = np.asarray(next(iter(model(inputs, training=False).values())))   # the first output
    theirs = np.asarray(reference(list(inputs.values()) if len(inputs) > 1
                                  else next(iter(inputs.values())), training=False))
    assert float(theirs.std()) > 1e-3
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
