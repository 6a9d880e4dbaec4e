"""The PyTorch implementations of the convolution, pooling, resampling, preprocessing and
augmentation ops against independent NumPy computations of their canonical definitions
(graphdsl/ops/conv.py, pooling.py, spatial.py, preprocess.py, augment.py, random.py).

Each test names its ops with ``@covers``; test_op_numbers.py's coverage test adds this
module's COVERED to its own. float64 inputs, so the tolerance is tight."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from graphdsl.backends.torch.ops import load_all
from graphdsl.ops import get

pytestmark = pytest.mark.torch

IMPLS = load_all()
COVERED: set[str] = set()
TOL = 1e-9  # float64 throughout, except ops whose output is float32 (1e-6 there)


def covers(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    COVERED.update(names)
    return lambda fn: fn


def run(name: str, x: np.ndarray, training: bool = False, **kwargs: Any) -> np.ndarray:
    op = get(name)
    assert op is not None
    if op.random:
        kwargs["training"] = training
    tensors = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
               for k, v in kwargs.items()}
    return IMPLS[name](x=torch.from_numpy(x), **tensors).detach().numpy()


def close(actual: np.ndarray, expected: np.ndarray, tol: float = TOL) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME: out = ceil(n / s), the odd cell after."""
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def np_conv(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, ...],
            dilations: tuple[int, ...], padding: str, groups: int = 1) -> np.ndarray:
    """Channels-last grouped cross-correlation, kernel [*k, in / groups, out]."""
    rank = x.ndim - 2
    sizes = kernel.shape[:rank]
    pads = [same_pads(n, k, s, d) if padding == "same" else (0, 0)
            for n, k, s, d in zip(x.shape[1:-1], sizes, strides, dilations, strict=True)]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    outs = [(n - d * (k - 1) - 1) // s + 1
            for n, k, s, d in zip(xp.shape[1:-1], sizes, strides, dilations, strict=True)]
    cin, cout = kernel.shape[-2], kernel.shape[-1]
    per_group = cout // groups
    y = np.zeros((x.shape[0], *outs, cout))
    for offset in np.ndindex(*sizes):
        window = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                       for o, d, n, s in zip(offset, dilations, outs, strides, strict=True))
        patch = xp[(slice(None), *window)]
        for g in range(groups):
            out = slice(g * per_group, (g + 1) * per_group)
            y[..., out] += patch[..., g * cin:(g + 1) * cin] @ kernel[offset][:, out]
    return y


# ---------------------------------------------------------------- convolutions
@covers("Conv3D")
@pytest.mark.parametrize("padding,strides,groups", [("valid", 1, 1), ("same", 2, 2),
                                                    ("same", 1, 4)])
def test_conv3d(padding: str, strides: int, groups: int) -> None:
    r = rng(1)
    x, kernel = r.normal(size=(2, 5, 6, 4, 4)), r.normal(size=(3, 2, 3, 4 // groups, 8))
    bias = r.normal(size=8)
    out = run("Conv3D", x, kernel=kernel, bias=bias, filters=8, kernel_size=[3, 2, 3],
              strides=strides, padding=padding, groups=groups)
    close(out, np_conv(x, kernel, (strides,) * 3, (1,) * 3, padding, groups) + bias)


@covers("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")
@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("padding,strides,dilation,multiplier",
                         [("valid", 1, 1, 1), ("same", 2, 1, 2), ("same", 1, 2, 3)])
def test_depthwise_and_separable(rank: int, padding: str, strides: int, dilation: int,
                                 multiplier: int) -> None:
    r = rng(2)
    x = r.normal(size=(2, *[7] * rank, 3))
    depthwise = r.normal(size=(*[3] * rank, 3, multiplier))
    bias = r.normal(size=3 * multiplier)
    # channel c, filter j: a one-channel convolution each, output channel c * m + j
    expected = np.concatenate(
        [np_conv(x[..., c:c + 1], depthwise[..., c:c + 1, j:j + 1], (strides,) * rank,
                 (dilation,) * rank, padding) for c in range(3) for j in range(multiplier)],
        axis=-1)
    args = {"kernel_size": 3, "strides": strides, "padding": padding, "dilation_rate": dilation,
            "depth_multiplier": multiplier}
    close(run(f"DepthwiseConv{rank}D", x, depthwise_kernel=depthwise, bias=bias, **args),
          expected + bias)
    pointwise, bias2 = r.normal(size=(*[1] * rank, 3 * multiplier, 4)), r.normal(size=4)
    close(run(f"SeparableConv{rank}D", x, depthwise_kernel=depthwise, pointwise_kernel=pointwise,
              bias=bias2, filters=4, **args), expected @ pointwise.reshape(-1, 4) + bias2)


def keras_transpose_length(n: int, k: int, s: int, d: int, padding: str,
                           output_padding: int | None) -> int:
    """keras.src.utils.conv_utils.deconv_output_length, restated."""
    k = k + (k - 1) * (d - 1)
    if output_padding is None:
        return n * s + max(k - s, 0) if padding == "valid" else n * s
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * s + k - 2 * pad + output_padding


@covers("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("k,s,padding,output_padding,d",
                         [(3, 2, "valid", None, 1), (3, 2, "same", None, 1), (4, 2, "same", 1, 1),
                          (2, 3, "valid", None, 1), (3, 1, "same", None, 2),
                          (3, 3, "same", 2, 1)])
def test_conv_transpose_scatters(rank: int, k: int, s: int, padding: str,
                                 output_padding: int | None, d: int) -> None:
    """z[i s + j d] += x[i] kernel[j], then the window [p, p + L_out) of z (zeros past it)."""
    r = rng(3)
    x, kernel, bias = r.normal(size=(2, *[4] * rank, 3)), r.normal(size=(*[k] * rank, 5, 3)), \
        r.normal(size=5)
    full = (4 - 1) * s + d * (k - 1) + 1
    z = np.zeros((2, *[full] * rank, 5))
    for i in np.ndindex(*[4] * rank):
        for j in np.ndindex(*[k] * rank):
            at = tuple(a * s + b * d for a, b in zip(i, j, strict=True))
            z[(slice(None), *at)] += x[(slice(None), *i)] @ kernel[j].T
    out = keras_transpose_length(4, k, s, d, padding, output_padding)
    start = 0 if padding == "valid" else max(full - out, 0) // 2
    z = np.pad(z, [(0, 0), *[(0, max(start + out - full, 0))] * rank, (0, 0)])
    expected = z[(slice(None), *[slice(start, start + out)] * rank)] + bias
    close(run(f"Conv{rank}DTranspose", x, kernel=kernel, bias=bias, filters=5, kernel_size=k,
              strides=s, padding=padding, output_padding=output_padding, dilation_rate=d),
          expected)


# ---------------------------------------------------------------- pooling
@covers("MaxPooling3D", "AveragePooling3D", "GlobalAveragePooling3D", "GlobalMaxPooling3D")
def test_pooling3d() -> None:
    x = rng(4).normal(size=(2, 4, 6, 5, 3))
    blocks = x[:, :4, :6, :4].reshape(2, 2, 2, 3, 2, 2, 2, 3)
    close(run("MaxPooling3D", x, pool_size=2, strides=None, padding="valid"),
          blocks.max(axis=(2, 4, 6)))
    close(run("AveragePooling3D", x, pool_size=2, strides=None, padding="valid"),
          blocks.mean(axis=(2, 4, 6)))
    close(run("GlobalAveragePooling3D", x), x.mean(axis=(1, 2, 3)))
    close(run("GlobalMaxPooling3D", x), x.max(axis=(1, 2, 3)))


def np_adaptive(x: np.ndarray, sizes: tuple[int, ...], reduce: Any) -> np.ndarray:
    rank = len(sizes)
    y = np.zeros((x.shape[0], *sizes, x.shape[-1]))
    for index in np.ndindex(*sizes):
        window = tuple(slice(i * n // b, math.ceil((i + 1) * n / b))
                       for i, n, b in zip(index, x.shape[1:-1], sizes, strict=True))
        y[(slice(None), *index)] = reduce(x[(slice(None), *window)],
                                          axis=tuple(range(1, rank + 1)))
    return y


@covers(*(f"Adaptive{k}Pooling{r}D" for k in ("Average", "Max") for r in (1, 2, 3)))
@pytest.mark.parametrize("rank,sizes", [(1, (3,)), (1, (8,)), (2, (3, 4)), (2, (1, 7)),
                                        (3, (2, 3, 4))])
def test_adaptive_pooling(rank: int, sizes: tuple[int, ...]) -> None:
    x = rng(5).normal(size=(2, *[7, 5, 6][:rank], 3))
    for kind, reduce in (("Average", np.mean), ("Max", np.max)):
        output_size = sizes[0] if rank == 1 else list(sizes)
        close(run(f"Adaptive{kind}Pooling{rank}D", x, output_size=output_size),
              np_adaptive(x, sizes, reduce))


# ---------------------------------------------------------------- padding, cropping, resampling
@covers("ZeroPadding1D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D")
def test_padding_and_cropping() -> None:
    x = rng(6).normal(size=(2, 4, 5, 6, 2))
    close(run("ZeroPadding3D", x, padding=[[1, 0], [0, 2], [3, 1]]),
          np.pad(x, [(0, 0), (1, 0), (0, 2), (3, 1), (0, 0)]))
    close(run("Cropping3D", x, cropping=[1, 0, 2]), x[:, 1:3, :, 2:4])
    close(run("Cropping2D", x[..., 0, :], cropping=[[1, 2], [0, 1]]), x[:, 1:2, 0:4, 0])
    x1 = x[:, 0, 0]
    close(run("ZeroPadding1D", x1, padding=[2, 1]), np.pad(x1, [(0, 0), (2, 1), (0, 0)]))
    close(run("Cropping1D", x1, cropping=[1, 2]), x1[:, 1:4])


def np_resize_axis(x: np.ndarray, axis: int, out: int, interpolation: str) -> np.ndarray:
    """Half-pixel resampling of one axis (TensorFlow's resize, no antialiasing)."""
    n = x.shape[axis]
    src = (np.arange(out) + 0.5) * n / out
    if interpolation == "nearest":
        return np.take(x, np.minimum(np.floor(src).astype(int), n - 1), axis=axis)
    src = np.maximum(src - 0.5, 0)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, n - 1)
    frac = (src - low).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, low, axis=axis) * (1 - frac) + np.take(x, high, axis=axis) * frac


def np_resize(x: np.ndarray, h: int, w: int, interpolation: str) -> np.ndarray:
    return np_resize_axis(np_resize_axis(x, 1, h, interpolation), 2, w, interpolation)


@covers("UpSampling1D", "UpSampling2D", "Resizing", "CenterCrop")
def test_resampling() -> None:
    x = rng(7).normal(size=(2, 5, 7, 3))
    close(run("UpSampling1D", x[:, 0], size=3), np.repeat(x[:, 0], 3, axis=1))
    close(run("UpSampling2D", x, size=[2, 3], interpolation="nearest"),
          np.repeat(np.repeat(x, 2, axis=1), 3, axis=2))
    close(run("UpSampling2D", x, size=2, interpolation="bilinear"),
          np_resize(x, 10, 14, "bilinear"), 1e-6)
    for h, w in ((3, 4), (9, 13), (5, 7)):
        for interpolation in ("bilinear", "nearest"):
            close(run("Resizing", x, height=h, width=w, interpolation=interpolation),
                  np_resize(x, h, w, interpolation), 1e-6)
    # the largest centred window of 5 x 7 with the aspect of 2 x 4: 3 (7 * 2 // 4) x 7 at row 1
    close(run("Resizing", x, height=2, width=4, crop_to_aspect_ratio=True),
          np_resize(x[:, 1:4], 2, 4, "bilinear"), 1e-6)
    close(run("CenterCrop", x, height=3, width=4), x[:, 1:4, 1:5], 1e-6)
    close(run("CenterCrop", x, height=6, width=6), np_resize(x[:, 0:5, 1:6], 6, 6, "bilinear"),
          1e-6)


# ---------------------------------------------------------------- preprocessing
@covers("Rescaling", "Normalization")
def test_rescaling_and_normalization() -> None:
    r = rng(8)
    x = r.normal(size=(3, 4, 5)) * 3 + 1
    close(run("Rescaling", x, scale=0.5, offset=-2.0), x * 0.5 - 2, 1e-6)  # float32
    mean, variance = r.normal(size=5), r.uniform(0.5, 2.0, size=5)
    variance[0] = 0.0  # the floor of the standard deviation: 1e-7
    std = np.maximum(np.sqrt(variance), 1e-7)
    close(run("Normalization", x, adapt_mean=mean, adapt_variance=variance), (x - mean) / std,
          1e-6)
    close(run("Normalization", x, adapt_mean=None, adapt_variance=None, mean=mean.tolist(),
              variance=variance.tolist(), invert=True), mean + x * std, 1e-6)
    m2 = r.normal(size=4)
    close(run("Normalization", x, adapt_mean=None, adapt_variance=None, axis=1,
              mean=m2.tolist(), variance=[4.0] * 4), (x - m2[:, None]) / 2, 1e-6)


# ---------------------------------------------------------------- random layers
@covers("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomCrop")
def test_random_layers_in_inference_and_training() -> None:
    x = rng(9).uniform(size=(4, 6, 8, 2))
    for name, args in (("SpatialDropout2D", {"rate": 0.5}), ("GaussianDropout", {"rate": 0.5}),
                       ("RandomFlip", {}), ("RandomRotation", {"factor": 0.2}),
                       ("RandomZoom", {"height_factor": 0.2}),
                       ("RandomTranslation", {"height_factor": 0.2, "width_factor": 0.2})):
        close(run(name, x, **args), x, 1e-6)  # float32
        torch.manual_seed(0)
        assert not np.allclose(run(name, x, training=True, **args), x), name
    close(run("SpatialDropout1D", x[:, 0], rate=0.5), x[:, 0])
    close(run("SpatialDropout3D", x[..., None, :], rate=0.5), x[..., None, :])
    # a quarter turn of a square image about its centre: the source of (x, y) is (y, n-1-x)
    square = rng(10).uniform(size=(1, 5, 5, 1))
    turned = run("RandomRotation", square, training=True, factor=[0.25, 0.25],
                 interpolation="nearest", fill_mode="constant", fill_value=0.0)
    close(turned[0, :, :, 0], np.rot90(square[0, :, :, 0], k=1), 1e-6)
    shifted = run("RandomTranslation", x, training=True, height_factor=[0.5, 0.5],
                  width_factor=[0.0, 0.0], fill_mode="constant", fill_value=-1.0)
    close(shifted[:, 3:], x[:, :3], 1e-6)
    close(shifted[:, :3], np.full_like(x[:, :3], -1.0))
    zoomed = run("RandomZoom", x, training=True, height_factor=[0.0, 0.0])
    close(zoomed, x, 1e-6)
    close(run("RandomCrop", x, height=6, width=6), np_resize(x[:, :, 1:7], 6, 6, "bilinear"),
          1e-6)
