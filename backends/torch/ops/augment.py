"""Random image augmentation (graphdsl/ops/augment.py), channels last.

:func:`affine_transform` is TensorFlow's ImageProjectiveTransformV3 (what Keras' layers run
on TensorFlow) for affine transforms: the same source coordinates, fill modes and
interpolation, vectorised over the batch."""

from __future__ import annotations

import math
from typing import Any

import torch

from graphdsl.ops.augment import factor_range
from graphdsl.ops.rules import aspect_crop_box

from . import impl
from .spatial import crop_and_resize, resize


def _map_coordinate(c: torch.Tensor, size: int, fill_mode: str) -> torch.Tensor:
    """A source coordinate mapped into [0, size - 1] as TensorFlow's fill modes do."""
    if fill_mode == "constant":
        return c
    if size <= 1 and fill_mode in ("reflect", "wrap"):
        return torch.zeros_like(c)
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a
        both = 2 * size
        low = both * torch.trunc(-c / both) + c
        low = torch.where(low < -size, low + both, -low - 1)
        high = c - both * torch.trunc(c / both)
        high = torch.where(high >= size, both - high - 1, high)
        c = torch.where(c < 0, low, torch.where(c > size - 1, high, c))
    elif fill_mode == "wrap":
        span = size - 1
        c = torch.where(c < 0, c + size * (torch.trunc(-c / span) + 1),
                        torch.where(c > size - 1, c - size * torch.trunc(c / span), c))
    return c.clamp(0, size - 1)


def _read(images: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
          fill_value: float) -> torch.Tensor:
    """images[b, y, x, :] for integer-valued [B, H', W'] coordinates; fill_value outside."""
    b, h, w, _ = images.shape
    inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    flat = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).long()
    batch = torch.arange(b, device=images.device).reshape(b, 1, 1)
    values = images.reshape(b, h * w, -1)[batch, flat]
    return torch.where(inside.unsqueeze(-1), values,
                       torch.full((), fill_value, dtype=images.dtype, device=images.device))


def affine_transform(images: torch.Tensor, transforms: torch.Tensor, interpolation: str,
                     fill_mode: str, fill_value: float) -> torch.Tensor:
    """Output pixel (x, y) of image b reads the input at (a0 x + a1 y + a2, b0 x + b1 y + b2),
    transforms[b] = [a0, a1, a2, b0, b1, b2, 0, 0] (TensorFlow's layout)."""
    _, h, w, _ = images.shape
    t = transforms.to(torch.float32)[:, :, None, None]
    ys = torch.arange(h, dtype=torch.float32, device=images.device).reshape(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=images.device).reshape(1, 1, w)
    x = _map_coordinate(t[:, 0] * xs + t[:, 1] * ys + t[:, 2], w, fill_mode)
    y = _map_coordinate(t[:, 3] * xs + t[:, 4] * ys + t[:, 5], h, fill_mode)
    if interpolation == "nearest":
        def half_away(v: torch.Tensor) -> torch.Tensor:  # std::round, not torch's half-even
            return torch.sign(v) * torch.floor(v.abs() + 0.5)
        return _read(images, half_away(y), half_away(x), fill_value)
    y0, x0 = torch.floor(y), torch.floor(x)
    y1, x1 = y0 + 1, x0 + 1
    wx0, wx1 = (x1 - x).unsqueeze(-1), (x - x0).unsqueeze(-1)
    top = wx0 * _read(images, y0, x0, fill_value) + wx1 * _read(images, y0, x1, fill_value)
    bottom = wx0 * _read(images, y1, x0, fill_value) + wx1 * _read(images, y1, x1, fill_value)
    return (y1 - y).unsqueeze(-1) * top + (y - y0).unsqueeze(-1) * bottom


def _uniform(batch: int, bounds: tuple[float, float], device: Any) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(batch, device=device)


def _stack(*rows: torch.Tensor) -> torch.Tensor:
    return torch.stack([*rows, torch.zeros_like(rows[0]), torch.zeros_like(rows[0])], dim=1)


@impl("RandomFlip")
def random_flip(*, x: torch.Tensor, mode: str = "horizontal_and_vertical",
                training: bool) -> torch.Tensor:
    x = x.float()
    if not training:
        return x
    for axis, kind in ((2, "horizontal"), (1, "vertical")):
        if kind in mode:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.reshape(-1, 1, 1, 1), x.flip(axis), x)
    return x


@impl("RandomRotation")
def random_rotation(*, x: torch.Tensor, factor: Any, fill_mode: str = "reflect",
                    interpolation: str = "bilinear", fill_value: float = 0.0,
                    training: bool) -> torch.Tensor:
    x = x.float()
    if not training:
        return x
    b, h, w, _ = x.shape
    angle = _uniform(b, factor_range(factor, "factor"), x.device) * (2 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    transforms = _stack(cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos)
    return affine_transform(x, transforms, interpolation, fill_mode, fill_value)


@impl("RandomZoom")
def random_zoom(*, x: torch.Tensor, height_factor: Any, width_factor: Any = None,
                fill_mode: str = "reflect", interpolation: str = "bilinear",
                fill_value: float = 0.0, training: bool) -> torch.Tensor:
    x = x.float()
    if not training:
        return x
    b, h, w, _ = x.shape
    zh = 1 + _uniform(b, factor_range(height_factor, "height_factor"), x.device)
    zw = zh if width_factor is None else \
        1 + _uniform(b, factor_range(width_factor, "width_factor"), x.device)
    zero = torch.zeros_like(zh)
    transforms = _stack(zw, zero, (w - 1) / 2 * (1 - zw), zero, zh, (h - 1) / 2 * (1 - zh))
    return affine_transform(x, transforms, interpolation, fill_mode, fill_value)


@impl("RandomTranslation")
def random_translation(*, x: torch.Tensor, height_factor: Any, width_factor: Any,
                       fill_mode: str = "reflect", interpolation: str = "bilinear",
                       fill_value: float = 0.0, training: bool) -> torch.Tensor:
    x = x.float()
    if not training:
        return x
    b, h, w, _ = x.shape
    dy = _uniform(b, factor_range(height_factor, "height_factor"), x.device) * h
    dx = _uniform(b, factor_range(width_factor, "width_factor"), x.device) * w
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    return affine_transform(x, _stack(one, zero, -dx, zero, one, -dy), interpolation,
                            fill_mode, fill_value)


@impl("RandomCrop")
def random_crop(*, x: torch.Tensor, height: int, width: int, training: bool) -> torch.Tensor:
    x = x.float()
    big_h, big_w = x.shape[1], x.shape[2]
    if not training:
        return crop_and_resize(x, height, width, "bilinear", True)
    if big_h > height and big_w > width:
        top = int(torch.randint(0, big_h - height + 1, ()))
        left = int(torch.randint(0, big_w - width + 1, ()))
    else:
        top, left, _, _ = aspect_crop_box(big_h, big_w, height, width)
    return resize(x[:, top:top + height, left:left + width], height, width, "bilinear")
