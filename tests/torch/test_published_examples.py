"""The published PyTorch architectures of examples/ against hand-written torch models with
the authors' modules and names.

* resnext50.gdl: torchvision's resnext50_32x4d (Bottleneck with groups = 32, width 4 per
  group; ResNet._make_layer), written here from torch.nn modules (torchvision itself is not
  installed): every module's parameter count equals the example's layer of the same name
  (torchvision's `downsample.0/1` are the example's downsample_conv/_bn), so one stage and
  the whole network have equal totals, 25,028,904.
* transformer_lm.gdl: pytorch/examples' word_language_model TransformerModel, written here
  from nn.Embedding, nn.TransformerEncoder (with the final norm that nn.Transformer's
  encoder has) and nn.Linear, with its PositionalEncoding buffer: equal parameter counts per
  module, and with the example's weights copied in, equal log-probabilities in
  inference, which checks the sinusoid table, the sqrt(ninp) scaling, the causal mask and
  the post-norm layers.
* lstm_seq2seq.gdl: the sampling models take the training model's weights by name, and
  decoding step by step from the encoder's states gives the training model's outputs.

Training a few steps in this backend: tests/torch/test_examples_train.py (every example).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import graphdsl
from graphdsl.ir.graph import ModelGraph

from .conftest import EXAMPLES

pytestmark = pytest.mark.torch


def layer_counts(model: ModelGraph, rename: dict[str, str] | None = None) -> dict[str, int]:
    """layer path -> trainable parameter count, for the example's trainable parameters."""
    counts: dict[str, int] = defaultdict(int)
    for node in model.trainable_params():
        name = model.node(node)["name"].rsplit(".", 1)[0]
        for old, new in (rename or {}).items():
            name = name.replace(old, new)
        counts[name] += model.count([node])
    return dict(counts)


def module_counts(module: nn.Module) -> dict[str, int]:
    """module path -> parameter count, for torch's parameters (buffers are not counted)."""
    counts: dict[str, int] = defaultdict(int)
    for name, p in module.named_parameters():
        counts[name.rsplit(".", 1)[0]] += p.numel()
    return dict(counts)


# ---- ResNeXt-50 (32x4d), after torchvision/models/resnet.py ------------------------------

class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1,
                 base_width: int = 64) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def make_layer(inplanes: int, planes: int, blocks: int, stride: int = 1, groups: int = 32,
               base_width: int = 4) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion))
    layers = [Bottleneck(inplanes, planes, stride, downsample, groups, base_width)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes, groups=groups,
                          base_width=base_width) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNeXt50(nn.Module):
    """torchvision's ResNet(Bottleneck, layers, groups, width_per_group); `width` is the
    first stage's planes (torchvision: 64), to run a small one."""

    def __init__(self, num_classes: int = 1000, layers: tuple[int, ...] = (3, 4, 6, 3),
                 groups: int = 32, width_per_group: int = 4, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            setattr(self, f"layer{i + 1}", make_layer(inplanes, planes, blocks, 1 if i == 0 else 2,
                                                      groups, width_per_group))
            inplanes = planes * Bottleneck.expansion
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


RESNEXT_NAMES = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}


def test_resnext_stage_has_torchvisions_modules_and_counts() -> None:
    model = graphdsl.compile_file(str(EXAMPLES / "resnext50.gdl")).model()
    ours = layer_counts(model, RESNEXT_NAMES)
    stage = {f"layer2.{name}": n for name, n in
             module_counts(make_layer(256, 128, 4, stride=2)).items()}
    assert {k: v for k, v in ours.items() if k.startswith("layer2.")} == stage
    # closed form: width 256 = 128 / 64 * 4 * 32 channels, 512 out, 3x3 kernels in 32 groups
    first = 256 * 256 + 9 * (256 // 32) * 256 + 256 * 512 + 256 * 512 + 2 * (256 + 256 + 512 + 512)
    other = 512 * 256 + 9 * (256 // 32) * 256 + 256 * 512 + 2 * (256 + 256 + 512)
    assert sum(stage.values()) == first + 3 * other == 1_197_056


def test_resnext50_has_torchvisions_modules_and_published_total() -> None:
    model = graphdsl.compile_file(str(EXAMPLES / "resnext50.gdl")).model()
    reference = ResNeXt50()
    assert layer_counts(model, RESNEXT_NAMES) == module_counts(reference)
    assert model.parameter_count == sum(p.numel() for p in reference.parameters()) \
        == 25_028_904                                               # torchvision's total


def test_torchvision_resnext_weights_convert_and_compute_the_same_logits() -> None:
    """Through the shipped torchvision_resnext map: grouped kernels, names and BatchNorm
    statistics land where the example reads them."""
    from graphdsl.diagnostics import SourceMap
    from graphdsl.runtime.convert import convert_arrays, load_map

    config = {"classes": 7, "size": 32, "width": 8, "groups": 4, "width_per_group": 8,
              "layers": [2, 1, 1, 1]}
    torch.manual_seed(0)
    reference = ResNeXt50(7, (2, 1, 1, 1), groups=4, width_per_group=8, width=8)
    for module in reference.modules():                  # statistics that are not 0 and 1
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    reference.eval()
    foreign = {k: v.numpy() for k, v in reference.state_dict().items()}
    program = graphdsl.compile_file(str(EXAMPLES / "resnext50.gdl"), args=config)
    arrays = convert_arrays(foreign, load_map("torchvision_resnext", SourceMap()), program.model())
    module: Any = graphdsl.compile_file(str(EXAMPLES / "resnext50.gdl"), backend="torch",
                                        args=config)
    module.load_arrays(arrays)
    module.eval()
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = module(image=image.permute(0, 2, 3, 1).contiguous())["logits"]
        theirs = reference(image)
    assert float(theirs.std()) > 0.1                    # logits that tell classes apart
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), float((ours - theirs).abs().max())


# ---- word_language_model's TransformerModel ---------------------------------------------

class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float()
                             * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))             # batch first here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[:, :x.size(1)])


class TransformerModel(nn.Module):
    """TransformerModel(nn.Transformer) as it ends up: the inherited encoder (with its
    norm), input_emb, pos_encoder and a Linear decoder; batch first."""

    def __init__(self, ntoken: int, ninp: int, nhead: int, nhid: int, nlayers: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        layer = nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, nlayers, norm=nn.LayerNorm(ninp),
                                             enable_nested_tensor=False)
        self.input_emb = nn.Embedding(ntoken, ninp)
        self.ninp = ninp
        self.decoder = nn.Linear(ninp, ntoken)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        size = src.size(1)
        mask = torch.log(torch.tril(torch.ones(size, size)))
        src = self.pos_encoder(self.input_emb(src) * math.sqrt(self.ninp))
        output = self.encoder(src, mask=mask)
        return torch.log_softmax(self.decoder(output), dim=-1)


def test_transformer_lm_has_the_modules_and_count_of_the_source() -> None:
    model = graphdsl.compile_file(str(EXAMPLES / "transformer_lm.gdl")).model()
    reference = TransformerModel(33278, 200, 2, 200, 2, 0.2)
    ours = layer_counts(model)
    theirs = module_counts(reference)
    # torch splits attention into in_proj (a parameter of self_attn) and out_proj
    for path in [k for k in theirs if k.endswith("self_attn.out_proj")]:
        theirs[path.rsplit(".", 1)[0]] += theirs.pop(path)
    assert ours == theirs
    assert model.parameter_count == sum(p.numel() for p in reference.parameters()) \
        == 13_828_878


def copy_into(reference: TransformerModel, tensors: dict[str, np.ndarray], d: int) -> None:
    """The example's canonical (Keras-layout) weights into the torch modules."""
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(tensors[name]))

    state: dict[str, torch.Tensor] = {"input_emb.weight": t("input_emb.embeddings"),
                                      "decoder.weight": t("decoder.kernel").T,
                                      "decoder.bias": t("decoder.bias"),
                                      "encoder.norm.weight": t("encoder.norm.gamma"),
                                      "encoder.norm.bias": t("encoder.norm.beta")}
    for i in range(len(reference.encoder.layers)):
        p = f"encoder.layers.{i}."
        attn = p + "self_attn."
        state[attn + "in_proj_weight"] = torch.cat(
            [t(f"{attn}{part}_kernel").reshape(d, d).T for part in ("query", "key", "value")])
        state[attn + "in_proj_bias"] = torch.cat(
            [t(f"{attn}{part}_bias").reshape(d) for part in ("query", "key", "value")])
        state[attn + "out_proj.weight"] = t(attn + "output_kernel").reshape(d, d).T
        state[attn + "out_proj.bias"] = t(attn + "output_bias")
        for lin in ("linear1", "linear2"):
            state[f"{p}{lin}.weight"] = t(f"{p}{lin}.kernel").T
            state[f"{p}{lin}.bias"] = t(f"{p}{lin}.bias")
        for norm in ("norm1", "norm2"):
            state[f"{p}{norm}.weight"] = t(f"{p}{norm}.gamma")
            state[f"{p}{norm}.bias"] = t(f"{p}{norm}.beta")
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert missing == ["pos_encoder.pe"] or not missing, missing
    assert not unexpected


def test_transformer_lm_computes_what_the_source_computes() -> None:
    config = {"ntoken": 40, "ninp": 16, "nhead": 2, "nhid": 24, "nlayers": 2}
    module: Any = graphdsl.compile_file(str(EXAMPLES / "transformer_lm.gdl"), backend="torch",
                                        args=config, seed=3)
    tensors = {n: v.detach().numpy() for n, v in module.canonical_tensors().items()}
    reference = TransformerModel(*config.values(), dropout=0.2)
    copy_into(reference, tensors, config["ninp"])
    module.eval()
    reference.eval()
    src = torch.randint(0, 40, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = torch.log_softmax(module(src=src.int())["logits"], dim=-1)
        theirs = reference(src)
    assert torch.allclose(ours, theirs, atol=1e-5), float((ours - theirs).abs().max())
    # causal: a change at the last step leaves every earlier step's prediction alone
    changed = src.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 40
    with torch.no_grad():
        again = torch.log_softmax(module(src=changed.int())["logits"], dim=-1)
    assert torch.equal(again[:, :-1], ours[:, :-1])
    assert not torch.allclose(again[:, -1], ours[:, -1])


# ---- the seq2seq sampling models share the trained weights ------------------------------

def test_seq2seq_sampling_models_reproduce_the_training_model() -> None:
    config = {"num_encoder_tokens": 5, "num_decoder_tokens": 6, "latent_dim": 8}
    path = str(EXAMPLES / "lstm_seq2seq.gdl")

    def build(name: str, seed: int) -> Any:
        args = {k: v for k, v in config.items()
                if not (name == "Encoder" and k == "num_decoder_tokens")
                and not (name == "DecoderStep" and k == "num_encoder_tokens")}
        return graphdsl.compile_file(path, model=name, backend="torch", args=args, seed=seed)

    trained = build("Seq2Seq", 0)
    weights = {n: v.detach().numpy() for n, v in trained.canonical_tensors().items()}
    encoder, decoder = build("Encoder", 1), build("DecoderStep", 2)
    for sampler in (encoder, decoder):
        own = sampler.canonical_tensors()
        assert set(own) < set(weights)                        # the same names, by design
        sampler.load_arrays({n: weights[n] for n in own})

    rng = np.random.default_rng(0)
    source = torch.from_numpy(rng.random((2, 4, 5), dtype=np.float32))
    target_in = torch.from_numpy(rng.random((2, 3, 6), dtype=np.float32))
    with torch.no_grad():
        expected = trained(encoder_inputs=source, decoder_inputs=target_in)["probs"]
        states = encoder(encoder_inputs=source)
        h, c = states["state_h"], states["state_c"]
        steps = []
        for t in range(3):                                    # the sampling loop, teacher-forced
            out = decoder(decoder_inputs=target_in[:, t:t + 1], decoder_state_input_h=h,
                          decoder_state_input_c=c)
            steps.append(out["probs"])
            h, c = out["state_h"], out["state_c"]
    assert torch.allclose(torch.cat(steps, dim=1), expected, atol=1e-6)
