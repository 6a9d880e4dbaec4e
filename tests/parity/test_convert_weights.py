"""`graphdsl convert`: weights from Hugging Face (GPT-2, BERT) and torchvision (ResNet-18)
give the same outputs as the source models, in both backends.

Each source model is built from a tiny configuration with random weights (nothing is
downloaded), saved as the tool saves it (`save_pretrained`'s model.safetensors, a
`torch.save` state dict), converted with the real command (`--set` gives the tiny sizes)
and run against the source model itself: 1e-5 (1e-4 for GPT-2's logits). BERT's batch has
padding, and every position is compared, padded ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers  # the `dev` extra installs it
from torch import nn

import graphdsl
from graphdsl.cli.main import main
from graphdsl.runtime.checkpoint import load_checkpoint

pytestmark = [pytest.mark.keras, pytest.mark.torch]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def convert(tmp_path: Path, example: str, args: dict[str, int], source: Path,
            weight_map: str) -> dict[str, np.ndarray]:
    out = tmp_path / f"{source.stem}.graphdsl.safetensors"
    sets = [f for k, v in args.items() for f in ("--set", f"{k}={v}")]
    assert main(["convert", str(EXAMPLES / example), *sets, "--from", str(source),
                 "--map", weight_map, "--out", str(out)]) == 0
    checkpoint = load_checkpoint(str(out))
    assert ast.literal_eval(checkpoint.metadata["arguments"]) == args
    return checkpoint.tensors


def both_backends(example: str, args: dict[str, int], values: dict[str, np.ndarray],
                  inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The outputs of the PyTorch module and of the Keras model, as numpy arrays."""
    path = str(EXAMPLES / example)
    module = graphdsl.compile_file(path, backend="torch", args=args, values=values).eval()
    with torch.no_grad():
        t_out = {k: v.numpy() for k, v in
                 module(**{k: torch.from_numpy(v) for k, v in inputs.items()}).items()}
    keras_model = graphdsl.compile_file(path, backend="keras", args=args, values=values)
    k_out = {k: np.asarray(v) for k, v in keras_model(inputs).items()}
    # the parameters given from outside are part of the Keras configuration
    rebuilt = type(keras_model).from_config(keras_model.get_config())
    assert [tuple(v.shape) for v in rebuilt.weights] == \
        [tuple(v.shape) for v in keras_model.weights]
    return [t_out, k_out]


def close(actual: np.ndarray, expected: Any, tolerance: float) -> None:
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance)


# ---- GPT-2 --------------------------------------------------------------------------------

GPT2_ARGS = {"vocab": 96, "context": 16, "d": 32, "layers": 2, "heads": 4}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=96, n_positions=16, n_embd=32, n_layer=2, n_head=4,
        bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(folder)                       # model.safetensors, head dropped
    torch.save(model.state_dict(), folder / "pytorch_model.bin")   # head kept (tied)
    return model, folder


@pytest.mark.parametrize("file", ["model.safetensors", "pytorch_model.bin"])
def test_gpt2_from_hugging_face(gpt2: tuple[Any, Path], tmp_path: Path, file: str) -> None:
    model, folder = gpt2
    values = convert(tmp_path, "gpt2_small.gdl", GPT2_ARGS, folder / file, "hf_gpt2")
    ids = np.random.default_rng(1).integers(0, 96, size=(3, 11)).astype(np.int32)
    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(ids).long()).logits
    for out in both_backends("gpt2_small.gdl", GPT2_ARGS, values, {"input_ids": ids}):
        close(out["logits"], expected, 1e-4)


# ---- BERT ---------------------------------------------------------------------------------

BERT_ARGS = {"vocab": 80, "context": 16, "segments": 2, "d": 32, "layers": 2, "heads": 4,
             "ff": 48}


def test_bert_from_hugging_face_with_padding(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=80, max_position_embeddings=16, type_vocab_size=2, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
    model = transformers.BertModel(config).eval()
    model.save_pretrained(tmp_path / "bert")
    values = convert(tmp_path, "bert_base.gdl", BERT_ARGS,
                     tmp_path / "bert" / "model.safetensors", "hf_bert")
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 80, size=(3, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0                                     # padded tails of two lengths
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    segments = (np.arange(9)[None, :] >= 4).astype(np.int32).repeat(3, axis=0)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": segments}
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v).long() for k, v in inputs.items()})
    for out in both_backends("bert_base.gdl", BERT_ARGS, values, inputs):
        close(out["last_hidden_state"], expected.last_hidden_state, 1e-5)  # every position
        close(out["pooler_output"], expected.pooler_output, 1e-5)


# ---- ResNet-18 ----------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, with its names (torchvision is not installed)."""

    def __init__(self, inputs: int, filters: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, filters, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.downsample = None if stride == 1 else nn.Sequential(
            nn.Conv2d(inputs, filters, 1, stride, bias=False), nn.BatchNorm2d(filters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchvisionResNet18(nn.Module):
    """torchvision.models.resnet18's structure and state-dict names, any width."""

    def __init__(self, classes: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        inputs = width
        for i, w in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(inputs, w, stride),
                                                     BasicBlock(w, w, 1)))
            inputs = w
        self.fc = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_resnet18_from_torchvision(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TorchvisionResNet18(classes=10, width=8)
    for m in model.modules():  # statistics and affine terms off their defaults
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    args = {"classes": 10, "width": 8, "size": 32}
    values = convert(tmp_path, "resnet18.gdl", args, tmp_path / "resnet18.pth",
                     "torchvision_resnet")
    image = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(image))
    channels_last = {"image": np.ascontiguousarray(image.transpose(0, 2, 3, 1))}
    for out in both_backends("resnet18.gdl", args, values, channels_last):
        close(out["logits"], expected, 1e-5)


# ---- Keras .weights.h5 ----------------------------------------------------------------------

SMALL_CNN = """\
model SmallCnn(classes: int = 5) {
    input image : float32[B, 12, 12, 3]
    layer conv = Conv2D(8, 3, strides = 2, padding = "same")
    layer bn = BatchNormalization(epsilon = 1e-3)
    layer head = Dense(classes)
    inference output logits = head(GlobalAveragePooling2D()(relu(bn(conv(image)))))
}
"""

# Keras 3 names a layer's variables in .weights.h5 by the layer's class and position
# (`layers/conv2d/vars/0`), whatever the layer's own name.
SMALL_CNN_MAP = """\
layers/conv2d/vars/0 -> conv.kernel
layers/conv2d/vars/1 -> conv.bias
layers/batch_normalization/vars/0 -> bn.gamma
layers/batch_normalization/vars/1 -> bn.beta
layers/batch_normalization/vars/2 -> bn.moving_mean
layers/batch_normalization/vars/3 -> bn.moving_variance
layers/dense/vars/0 -> head.kernel
layers/dense/vars/1 -> head.bias
"""


def test_keras_weights_h5(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="b")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    source = keras.Model(inputs, keras.layers.Dense(5, name="d")(x))
    rng = np.random.default_rng(6)
    for w in source.weights:  # no zero bias or unit statistics to hide a mistake
        w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype(np.float32))
    source.save_weights(str(tmp_path / "cnn.weights.h5"))
    (tmp_path / "cnn.gdl").write_text(SMALL_CNN)
    (tmp_path / "cnn.map").write_text(SMALL_CNN_MAP)
    out = tmp_path / "cnn.safetensors"
    assert main(["convert", str(tmp_path / "cnn.gdl"), "--from", str(tmp_path / "cnn.weights.h5"),
                 "--map", str(tmp_path / "cnn.map"), "--out", str(out)]) == 0
    values = load_checkpoint(str(out)).tensors
    image = rng.standard_normal((2, 12, 12, 3)).astype(np.float32)
    expected = np.asarray(source(image, training=False))
    program_path = str(tmp_path / "cnn.gdl")
    module = graphdsl.compile_file(program_path, backend="torch", values=values).eval()
    with torch.no_grad():
        close(module(image=torch.from_numpy(image))["logits"].numpy(), expected, 1e-5)
    keras_model = graphdsl.compile_file(program_path, backend="keras", values=values)
    close(np.asarray(keras_model({"image": image})["logits"]), expected, 1e-5)


# ---- keras.applications.MobileNetV2 -> examples/mobilenet_v2.gdl ----------------------------

MOBILENET_ARGS = {"alpha": 0.35, "size": 32, "classes": 10}


def test_keras_mobilenet_v2(tmp_path: Path) -> None:
    import keras

    from graphdsl.backends.keras.weight_map import weight_map_lines

    keras.utils.set_random_seed(0)
    source = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3),
                                            classes=10)
    rng = np.random.default_rng(7)
    for w in source.weights:  # moving statistics too: none left at 0 or 1 to hide a swap
        w.assign(rng.uniform(-0.5, 0.5, tuple(w.shape)).astype(np.float32)
                 if "moving_variance" not in w.path
                 else rng.uniform(0.5, 1.5, tuple(w.shape)).astype(np.float32))
    source.save_weights(str(tmp_path / "mobilenet.weights.h5"))

    # the shipped map is the one derived from Keras' own layer order (with any alpha)
    model = graphdsl.compile_file(str(EXAMPLES / "mobilenet_v2.gdl"),
                                  args=MOBILENET_ARGS).model(None)
    shipped = Path(graphdsl.__file__).parent / "maps" / "keras_mobilenet_v2.map"
    rules = [line for line in shipped.read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules == weight_map_lines(source, model)

    values = convert(tmp_path, "mobilenet_v2.gdl", MOBILENET_ARGS,
                     tmp_path / "mobilenet.weights.h5", "keras_mobilenet_v2")
    image = rng.uniform(0.0, 1.0, (3, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(source(image, training=False))
    assert expected.std(axis=-1).min() > 0.02  # far from uniform: a wrong tensor shows
    for out in both_backends("mobilenet_v2.gdl", MOBILENET_ARGS, values, {"image": image}):
        close(out["probs"], expected, 1e-5)
