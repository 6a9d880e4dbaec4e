"""The convolution, pooling, resampling, preprocessing and augmentation ops against the
frameworks' own layers: keras.layers.X and torch.nn.X given the same weights (canonical
layouts converted), outputs within 1e-5, and the registry's parameter shapes adding up
to Keras' count_params().

Both backends' implementations are checked against each reference. Where Keras and
PyTorch differ (transposed-convolution padding, nearest resizing), the registry follows
Keras and the torch reference is set up by the conversion its canonical text states.
Augmentation layers are compared in inference, and in training with degenerate factor
ranges ([a, a]), which make the random draw deterministic in every framework.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from graphdsl.backends.keras.ops import load_all as load_keras
from graphdsl.backends.keras.ops.augment import affine_transform as keras_affine
from graphdsl.backends.torch.ops import load_all as load_torch
from graphdsl.backends.torch.ops.augment import affine_transform as torch_affine
from graphdsl.ir.types import TensorType
from graphdsl.ops import get
from graphdsl.ops.registry import REQUIRED

pytestmark = [pytest.mark.keras, pytest.mark.torch]
TOL = 1e-5


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def ours(op: str, x: np.ndarray, params: dict[str, np.ndarray | None],
         training: bool = False, **args: Any) -> dict[str, np.ndarray]:
    """The op's output in each backend (parameters as Keras Variables, as a model has them)."""
    kwargs = dict(args)
    if get(op).random:  # type: ignore[union-attr]
        kwargs["training"] = training
    t = load_torch()[op](x=torch.from_numpy(x), **kwargs, **{
        k: None if v is None else torch.from_numpy(v) for k, v in params.items()})
    k = load_keras()[op](x=tf.constant(x), **kwargs, **{
        k: None if v is None else keras.Variable(v) for k, v in params.items()})
    return {"torch": t.detach().numpy(), "keras": np.asarray(k)}


def check(got: dict[str, np.ndarray], expected: Any, what: str) -> None:
    expected = np.asarray(expected)
    for backend, y in got.items():
        assert y.shape == expected.shape, f"{what} {backend}: {y.shape} vs {expected.shape}"
        np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL,
                                   err_msg=f"{what} ({backend})")


def param_count(op: str, x: np.ndarray, **args: Any) -> int:
    """The registry's parameter sizes for this call (state included, as Keras counts it)."""
    spec = get(op)
    assert spec is not None
    full = {a.name: a.default for a in spec.args if a.default is not REQUIRED}
    full.update(args)
    inputs = [TensorType("float32", tuple(x.shape))]
    return sum(int(np.prod(p.shape(full, inputs))) for p in spec.params if p.present(full))


def keras_layer(layer: keras.layers.Layer, x: np.ndarray,
                weights: list[np.ndarray] | None = None, training: bool = False) -> np.ndarray:
    layer.build(x.shape)
    if weights is not None:
        layer.set_weights(weights)
    return np.asarray(layer(x, training=training))


def torch_channels_first(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    rank = x.ndim - 2
    xc = torch.from_numpy(x).permute(0, rank + 1, *range(1, rank + 1))
    with torch.no_grad():
        y = module(xc)
    return y.permute(0, *range(2, rank + 2), 1).numpy()


# ---------------------------------------------------------------- convolutions
CONV = {1: (keras.layers.Conv1D, torch.nn.Conv1d), 2: (keras.layers.Conv2D, torch.nn.Conv2d),
        3: (keras.layers.Conv3D, torch.nn.Conv3d)}
CONV_CASES = [(1, 1, 1, "valid", 1), (1, 3, 2, "same", 1), (1, 2, 1, "valid", 2),
              (2, 2, 1, "valid", 1), (2, 4, 2, "same", 1), (2, 1, 1, "same", 2),
              (3, 2, 2, "valid", 1), (3, 1, 1, "same", 1)]


@pytest.mark.parametrize("rank,groups,strides,padding,dilation", CONV_CASES, ids=str)
def test_conv_with_groups(rank: int, groups: int, strides: int, padding: str,
                          dilation: int) -> None:
    r = rng(rank * 10 + groups)
    x = r.standard_normal((2, *[7] * rank, 12)).astype(np.float32)
    kernel = r.standard_normal((*[3] * rank, 12 // groups, 12)).astype(np.float32)
    bias = r.standard_normal(12).astype(np.float32)
    args = {"filters": 12, "kernel_size": 3, "strides": strides, "padding": padding,
            "dilation_rate": dilation, "groups": groups}
    layer = CONV[rank][0](**args)
    expected = keras_layer(layer, x, [kernel, bias])
    check(ours(f"Conv{rank}D", x, {"kernel": kernel, "bias": bias}, **args), expected,
          "keras")
    assert param_count(f"Conv{rank}D", x, **args) == layer.count_params()
    if padding == "valid" or strides == 1:  # torch's padding="same" takes stride 1 only
        module = CONV[rank][1](12, 12, 3, stride=strides, padding=padding, dilation=dilation,
                               groups=groups)
        module.weight.data = torch.from_numpy(kernel).permute(rank + 1, rank, *range(rank))
        module.bias.data = torch.from_numpy(bias)
        check({"torch.nn": torch_channels_first(module, x)}, expected, "torch.nn vs keras")


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("multiplier,strides,padding", [(1, 1, "valid"), (2, 2, "same"),
                                                        (3, 1, "same")], ids=str)
def test_depthwise_conv(rank: int, multiplier: int, strides: int, padding: str) -> None:
    r = rng(rank + multiplier)
    x = r.standard_normal((2, *[8] * rank, 3)).astype(np.float32)
    depthwise = r.standard_normal((*[3] * rank, 3, multiplier)).astype(np.float32)
    bias = r.standard_normal(3 * multiplier).astype(np.float32)
    args = {"kernel_size": 3, "strides": strides, "padding": padding,
            "depth_multiplier": multiplier}
    layer = getattr(keras.layers, f"DepthwiseConv{rank}D")(**args)
    expected = keras_layer(layer, x, [depthwise, bias])
    check(ours(f"DepthwiseConv{rank}D", x, {"depthwise_kernel": depthwise, "bias": bias},
               **args), expected, "keras")
    assert param_count(f"DepthwiseConv{rank}D", x, **args) == layer.count_params()
    if strides == 1:
        # torch: a grouped convolution, out channel c * m + j = channel c with filter j
        module = CONV[rank][1](3, 3 * multiplier, 3, padding=padding, groups=3)
        weight = torch.from_numpy(depthwise.reshape(*[3] * rank, 3 * multiplier))
        module.weight.data = weight.permute(rank, *range(rank)).unsqueeze(1).contiguous()
        module.bias.data = torch.from_numpy(bias)
        check({"torch.nn": torch_channels_first(module, x)}, expected, "torch.nn vs keras")


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("multiplier,strides,padding,dilation",
                         [(1, 1, "valid", 1), (2, 2, "same", 1), (1, 1, "same", 2)], ids=str)
def test_separable_conv(rank: int, multiplier: int, strides: int, padding: str,
                        dilation: int) -> None:
    r = rng(20 + rank + multiplier)
    x = r.standard_normal((2, *[8] * rank, 3)).astype(np.float32)
    depthwise = r.standard_normal((*[3] * rank, 3, multiplier)).astype(np.float32)
    pointwise = r.standard_normal((*[1] * rank, 3 * multiplier, 5)).astype(np.float32)
    bias = r.standard_normal(5).astype(np.float32)
    args = {"filters": 5, "kernel_size": 3, "strides": strides, "padding": padding,
            "dilation_rate": dilation, "depth_multiplier": multiplier}
    layer = getattr(keras.layers, f"SeparableConv{rank}D")(**args)
    expected = keras_layer(layer, x, [depthwise, pointwise, bias])
    check(ours(f"SeparableConv{rank}D", x, {"depthwise_kernel": depthwise,
                                             "pointwise_kernel": pointwise, "bias": bias},
               **args), expected, "keras")
    assert param_count(f"SeparableConv{rank}D", x, **args) == layer.count_params()


TRANSPOSE_CASES = [(1, 3, 1, "valid", None, 1), (1, 3, 2, "same", None, 1),
                   (1, 4, 2, "same", None, 1), (1, 2, 3, "valid", None, 1),
                   (1, 3, 2, "valid", 1, 1), (1, 3, 2, "same", 1, 1), (1, 3, 1, "same", None, 2),
                   (2, 3, 2, "same", None, 1), (2, 3, 2, "valid", 1, 1),
                   (2, 2, 1, "valid", None, 2), (3, 3, 2, "same", None, 1),
                   (3, 2, 2, "valid", 1, 1)]


@pytest.mark.parametrize("rank,kernel_size,strides,padding,output_padding,dilation",
                         TRANSPOSE_CASES, ids=str)
def test_conv_transpose(rank: int, kernel_size: int, strides: int, padding: str,
                        output_padding: int | None, dilation: int) -> None:
    r = rng(30 + rank * 7 + kernel_size * 3 + strides)
    x = r.standard_normal((2, *[5] * rank, 3)).astype(np.float32)
    kernel = r.standard_normal((*[kernel_size] * rank, 4, 3)).astype(np.float32)
    bias = r.standard_normal(4).astype(np.float32)
    args = {"filters": 4, "kernel_size": kernel_size, "strides": strides, "padding": padding,
            "output_padding": output_padding, "dilation_rate": dilation}
    layer = getattr(keras.layers, f"Conv{rank}DTranspose")(**args)
    expected = keras_layer(layer, x, [kernel, bias])
    check(ours(f"Conv{rank}DTranspose", x, {"kernel": kernel, "bias": bias}, **args),
          expected, "keras")
    assert param_count(f"Conv{rank}DTranspose", x, **args) == layer.count_params()


@pytest.mark.parametrize("padding,output_padding", [(0, 0), (1, 0), (1, 1), (2, 1)])
def test_conv_transpose_against_torch(padding: int, output_padding: int) -> None:
    """torch's ConvTranspose2d(padding P, output_padding Q) is the op with padding valid
    cropped by P on the left and P - Q on the right (the registry's conversion)."""
    r = rng(40 + padding)
    x = r.standard_normal((2, 5, 6, 3)).astype(np.float32)
    kernel = r.standard_normal((3, 3, 4, 3)).astype(np.float32)
    bias = r.standard_normal(4).astype(np.float32)
    module = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=padding,
                                      output_padding=output_padding)
    module.weight.data = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
    module.bias.data = torch.from_numpy(bias)
    expected = torch_channels_first(module, x)
    full = ours("Conv2DTranspose", x, {"kernel": kernel, "bias": bias}, filters=4,
                kernel_size=3, strides=2, padding="valid", output_padding=0)
    end = -(padding - output_padding) or None
    check({k: v[:, padding:end, padding:end] for k, v in full.items()}, expected, "torch.nn")


# ---------------------------------------------------------------- pooling
@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 2, "same"),
                                                  ([2, 3, 1], [1, 2, 1], "valid")], ids=str)
def test_pooling3d(kind: str, pool: Any, strides: Any, padding: str) -> None:
    x = rng(50).standard_normal((2, 5, 6, 4, 3)).astype(np.float32)
    layer = getattr(keras.layers, f"{kind}Pooling3D")(pool_size=pool, strides=strides,
                                                      padding=padding)
    check(ours(f"{kind}Pooling3D", x, {}, pool_size=pool, strides=strides, padding=padding),
          keras_layer(layer, x), "keras")


def test_global_pooling3d() -> None:
    x = rng(51).standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    for kind in ("Average", "Max"):
        layer = getattr(keras.layers, f"Global{kind}Pooling3D")()
        check(ours(f"Global{kind}Pooling3D", x, {}), keras_layer(layer, x), kind)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_global_pooling_keepdims(rank: int) -> None:
    x = rng(52).standard_normal((2, *(3, 4, 5)[:rank], 6)).astype(np.float32)
    for kind in ("Average", "Max"):
        layer = getattr(keras.layers, f"Global{kind}Pooling{rank}D")(keepdims=True)
        expected = keras_layer(layer, x)
        assert expected.shape == (2, *[1] * rank, 6)
        check(ours(f"Global{kind}Pooling{rank}D", x, {}, keepdims=True), expected, kind)


ADAPTIVE_TORCH = {("Average", 1): torch.nn.AdaptiveAvgPool1d,
                  ("Average", 2): torch.nn.AdaptiveAvgPool2d,
                  ("Average", 3): torch.nn.AdaptiveAvgPool3d,
                  ("Max", 1): torch.nn.AdaptiveMaxPool1d, ("Max", 2): torch.nn.AdaptiveMaxPool2d,
                  ("Max", 3): torch.nn.AdaptiveMaxPool3d}


@pytest.mark.parametrize("kind,rank", list(ADAPTIVE_TORCH), ids=str)
@pytest.mark.parametrize("size", [1, 3, 4, 7])
def test_adaptive_pooling(kind: str, rank: int, size: int) -> None:
    x = rng(52 + size).standard_normal((2, *[10, 7, 5][:rank], 3)).astype(np.float32)
    output_size = size if rank == 1 else [size] * rank
    got = ours(f"Adaptive{kind}Pooling{rank}D", x, {}, output_size=output_size)
    check(got, torch_channels_first(ADAPTIVE_TORCH[kind, rank](size), x), "torch.nn")
    # Keras 3.15's own adaptive max pooling, and its average pooling with more bins than
    # cells, kill the process (SIGFPE): compared where it runs
    if kind == "Average" and all(size <= n for n in x.shape[1:-1]):
        layer = getattr(keras.layers, f"Adaptive{kind}Pooling{rank}D")(output_size)
        check(got, keras_layer(layer, x), "keras")


# ---------------------------------------------------------------- padding, cropping, resampling
PAD_CASES = [(1, 2), (1, [1, 3]), (2, 1), (2, [2, 0]), (2, [[1, 2], [3, 0]]), (3, 1),
             (3, [[1, 0], [0, 2], [2, 1]])]


@pytest.mark.parametrize("rank,amount", PAD_CASES, ids=str)
def test_zero_padding_and_cropping(rank: int, amount: Any) -> None:
    x = rng(60).standard_normal((2, *[6] * rank, 3)).astype(np.float32)
    keras_amount = tuple(tuple(a) if isinstance(a, list) else a for a in amount) \
        if isinstance(amount, list) else amount
    pad = getattr(keras.layers, f"ZeroPadding{rank}D")(keras_amount)
    check(ours(f"ZeroPadding{rank}D", x, {}, padding=amount), keras_layer(pad, x), "pad")
    crop = getattr(keras.layers, f"Cropping{rank}D")(keras_amount)
    check(ours(f"Cropping{rank}D", x, {}, cropping=amount), keras_layer(crop, x), "crop")


@pytest.mark.parametrize("size", [2, 3])
def test_up_sampling1d(size: int) -> None:
    x = rng(61).standard_normal((2, 5, 3)).astype(np.float32)
    expected = keras_layer(keras.layers.UpSampling1D(size), x)
    check(ours("UpSampling1D", x, {}, size=size), expected, "keras")
    check({"torch.nn": torch_channels_first(torch.nn.Upsample(scale_factor=size), x)},
          expected, "torch.nn")


@pytest.mark.parametrize("size", [2, [3, 2], [1, 4]], ids=str)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_up_sampling2d(size: Any, interpolation: str) -> None:
    x = rng(62).standard_normal((2, 5, 4, 3)).astype(np.float32)
    layer = keras.layers.UpSampling2D(tuple(size) if isinstance(size, list) else size,
                                      interpolation=interpolation)
    expected = keras_layer(layer, x)
    check(ours("UpSampling2D", x, {}, size=size, interpolation=interpolation), expected,
          "keras")
    factors = (size, size) if isinstance(size, int) else tuple(size)
    module = torch.nn.Upsample(scale_factor=factors, mode=interpolation,
                               **({"align_corners": False} if interpolation == "bilinear"
                                  else {}))
    check({"torch.nn": torch_channels_first(module, x)}, expected, "torch.nn")


RESIZE_CASES = [(5, 6), (11, 13), (20, 17), (4, 20), (1, 1), (7, 3)]


@pytest.mark.parametrize("height,width", RESIZE_CASES, ids=str)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("crop", [False, True])
def test_resizing(height: int, width: int, interpolation: str, crop: bool) -> None:
    x = rng(63).uniform(0, 255, (2, 11, 13, 3)).astype(np.float32)
    layer = keras.layers.Resizing(height, width, interpolation=interpolation,
                                  crop_to_aspect_ratio=crop)
    expected = keras_layer(layer, x)
    check(ours("Resizing", x, {}, height=height, width=width, interpolation=interpolation,
               crop_to_aspect_ratio=crop), expected, "keras")
    if not crop:
        # torch: bilinear with align_corners=False and no antialias; nearest is nearest-exact
        mode = "bilinear" if interpolation == "bilinear" else "nearest-exact"
        module = torch.nn.Upsample(size=(height, width), mode=mode,
                                   **({"align_corners": False} if mode == "bilinear" else {}))
        check({"torch.nn": torch_channels_first(module, x)}, expected, "torch.nn")


@pytest.mark.parametrize("height,width", [(5, 6), (11, 13), (10, 4), (12, 8), (20, 30)],
                         ids=str)
def test_center_crop(height: int, width: int) -> None:
    x = rng(64).uniform(0, 255, (2, 11, 13, 3)).astype(np.float32)
    check(ours("CenterCrop", x, {}, height=height, width=width),
          keras_layer(keras.layers.CenterCrop(height, width), x), "keras")


# ---------------------------------------------------------------- preprocessing
def test_rescaling() -> None:
    x = rng(70).uniform(0, 255, (2, 3, 4)).astype(np.float32)
    check(ours("Rescaling", x, {}, scale=1 / 127.5, offset=-1.0),
          keras_layer(keras.layers.Rescaling(1 / 127.5, offset=-1.0), x), "keras")


@pytest.mark.parametrize("axis", [-1, 1, [1, 2], None], ids=str)
@pytest.mark.parametrize("invert", [False, True])
def test_normalization(axis: Any, invert: bool) -> None:
    r = rng(71)
    x = (r.standard_normal((3, 4, 5)) * 3 + 2).astype(np.float32)
    keep = (4, 5) if isinstance(axis, list) else {-1: (5,), 1: (4,), None: ()}[axis]
    mean = r.standard_normal(keep).astype(np.float32)
    variance = r.uniform(0.2, 3.0, keep).astype(np.float32)
    keras_axis = tuple(axis) if isinstance(axis, list) else axis
    given = keras.layers.Normalization(axis=keras_axis, mean=mean, variance=variance,
                                       invert=invert)
    expected = keras_layer(given, x)
    check(ours("Normalization", x, {"adapt_mean": None, "adapt_variance": None}, axis=axis,
               mean=mean.tolist(), variance=variance.tolist(), invert=invert), expected, "args")
    assert param_count("Normalization", x, axis=axis, mean=mean.tolist(),
                       variance=variance.tolist()) == given.count_params() == 0
    # the statistics as state, set as Keras' adapted weights (mean, variance, count)
    adapted = keras.layers.Normalization(axis=keras_axis, invert=invert)
    adapted.build(x.shape)
    adapted.set_weights([mean, variance, np.array(0)])
    adapted.finalize_state()
    check(ours("Normalization", x, {"adapt_mean": mean, "adapt_variance": variance},
               axis=axis, invert=invert), np.asarray(adapted(x)), "state")
    # Keras keeps a legacy integer `count` beside the statistics
    assert param_count("Normalization", x, axis=axis) == adapted.count_params() - 1


# ---------------------------------------------------------------- regularisation in inference
@pytest.mark.parametrize("op,layer", [
    ("Dropout", keras.layers.Dropout(0.5, noise_shape=(None, 1, 4))),
    ("SpatialDropout1D", keras.layers.SpatialDropout1D(0.5)),
    ("GaussianDropout", keras.layers.GaussianDropout(0.3)),
    ("GaussianNoise", keras.layers.GaussianNoise(0.3))], ids=lambda v: str(v)[:20])
def test_regularisation_is_identity_in_inference(op: str, layer: keras.layers.Layer) -> None:
    x = rng(80).standard_normal((2, 3, 4)).astype(np.float32)
    args = {"stddev": 0.3} if op == "GaussianNoise" else {"rate": 0.5}
    if op == "Dropout":
        args["noise_shape"] = [-1, 1, 4]
    check(ours(op, x, {}, **args), keras_layer(layer, x), "keras")


# ---------------------------------------------------------------- augmentation
AFFINE_MODES = [(fill, interpolation) for fill in ("reflect", "wrap", "constant", "nearest")
                for interpolation in ("bilinear", "nearest")]


@pytest.mark.parametrize("fill_mode,interpolation", AFFINE_MODES, ids=str)
def test_affine_transform_is_tensorflows(fill_mode: str, interpolation: str) -> None:
    """torch's port against Keras' ops.image.affine_transform on TensorFlow, with
    transforms reaching far outside the image (several reflections and wraps)."""
    r = rng(90)
    images = r.uniform(0, 1, (6, 7, 9, 2)).astype(np.float32)
    angle = r.uniform(-np.pi, np.pi, 6)
    scale = r.uniform(0.5, 3.0, 6)
    transforms = np.stack([scale * np.cos(angle), -scale * np.sin(angle), r.uniform(-20, 20, 6),
                           scale * np.sin(angle), scale * np.cos(angle), r.uniform(-20, 20, 6),
                           np.zeros(6), np.zeros(6)], axis=1).astype(np.float32)
    transforms[0] = [1, 0, 0.5, 0, 1, -0.5, 0, 0]  # half-pixel shifts: rounding ties
    transforms[1] = [1, 0, -30, 0, 1, 25, 0, 0]
    expected = np.asarray(keras.ops.image.affine_transform(
        images, transforms, interpolation=interpolation, fill_mode=fill_mode, fill_value=0.5))
    got = torch_affine(torch.from_numpy(images), torch.from_numpy(transforms), interpolation,
                       fill_mode, 0.5).numpy()
    np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL)
    ours_keras = np.asarray(keras_affine(tf.constant(images), tf.constant(transforms),
                                         interpolation, fill_mode, 0.5))
    np.testing.assert_allclose(ours_keras, expected, rtol=TOL, atol=TOL)


GEOMETRY = {"fill_mode": "reflect", "interpolation": "bilinear", "fill_value": 0.0}


@pytest.mark.parametrize("op,args,layer", [
    ("RandomRotation", {"factor": [0.1, 0.1]}, lambda: keras.layers.RandomRotation((0.1, 0.1))),
    ("RandomRotation", {"factor": [-0.3, -0.3], "fill_mode": "constant", "fill_value": 2.0,
                        "interpolation": "nearest"},
     lambda: keras.layers.RandomRotation((-0.3, -0.3), fill_mode="constant", fill_value=2.0,
                                         interpolation="nearest")),
    ("RandomZoom", {"height_factor": [0.3, 0.3]}, lambda: keras.layers.RandomZoom((0.3, 0.3))),
    ("RandomZoom", {"height_factor": [-0.2, -0.2], "width_factor": [0.4, 0.4],
                    "fill_mode": "wrap"},
     lambda: keras.layers.RandomZoom((-0.2, -0.2), (0.4, 0.4), fill_mode="wrap")),
    ("RandomTranslation", {"height_factor": [0.25, 0.25], "width_factor": [-0.4, -0.4],
                           "fill_mode": "nearest"},
     lambda: keras.layers.RandomTranslation((0.25, 0.25), (-0.4, -0.4), fill_mode="nearest")),
], ids=lambda v: v if isinstance(v, str) else "")
def test_geometric_augmentation_with_a_fixed_draw(op: str, args: dict[str, Any],
                                                  layer: Any) -> None:
    """A range [a, a] draws a in every framework: training is deterministic there."""
    x = rng(91).uniform(0, 1, (3, 8, 10, 2)).astype(np.float32)
    full = {**GEOMETRY, **args}
    expected = keras_layer(layer(), x, training=True)
    assert not np.allclose(expected, x)
    check(ours(op, x, {}, training=True, **full), expected, "keras training")
    check(ours(op, x, {}, training=False, **full), keras_layer(layer(), x), "keras inference")


@pytest.mark.parametrize("height,width", [(8, 10), (8, 6), (5, 10), (10, 12), (9, 4)], ids=str)
def test_random_crop_fallback_matches_keras(height: int, width: int) -> None:
    """Not larger than the input in both axes: Keras' training path is deterministic."""
    x = rng(92).uniform(0, 1, (2, 8, 10, 3)).astype(np.float32)
    expected = keras_layer(keras.layers.RandomCrop(height, width), x, training=True)
    check(ours("RandomCrop", x, {}, training=True, height=height, width=width), expected,
          "keras training")


def test_random_crop_in_inference_is_smart_resize() -> None:
    x = rng(93).uniform(0, 1, (2, 8, 10, 3)).astype(np.float32)
    resize = keras.layers.Resizing(5, 5, crop_to_aspect_ratio=True)
    check(ours("RandomCrop", x, {}, height=5, width=5), keras_layer(resize, x), "Resizing")


def test_random_flip_in_inference() -> None:
    x = rng(94).uniform(0, 1, (2, 4, 5, 3)).astype(np.float32)
    check(ours("RandomFlip", x, {}, mode="horizontal"),
          keras_layer(keras.layers.RandomFlip("horizontal"), x), "keras")
