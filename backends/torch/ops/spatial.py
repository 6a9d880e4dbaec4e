"""Zero padding, cropping, up-sampling, resizing and centre cropping, channels last.

Resizing follows TensorFlow's tf.image.resize (Keras): bilinear with half-pixel centres
and no antialiasing is F.interpolate(mode="bilinear", align_corners=False); TensorFlow's
half-pixel nearest is torch's "nearest-exact" (torch's "nearest" rounds differently)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from graphdsl.ops.rules import aspect_crop_box, ntuple, side_pairs

from . import impl
from .conv import flat_pad, to_channels_first, to_channels_last


def _pad_layer(rank: int):  # type: ignore[no-untyped-def]
    def pad(*, x: torch.Tensor, padding: Any = 1) -> torch.Tensor:
        return F.pad(x, [0, 0, *flat_pad(side_pairs(padding, rank, "padding"))])
    return pad


def _crop_layer(rank: int):  # type: ignore[no-untyped-def]
    def crop(*, x: torch.Tensor, cropping: Any = 0) -> torch.Tensor:
        amounts = side_pairs(cropping, rank, "cropping")
        index = tuple(slice(before, x.shape[1 + i] - after)
                      for i, (before, after) in enumerate(amounts))
        return x[(slice(None), *index)]
    return crop


for _rank in (1, 2, 3):
    impl(f"ZeroPadding{_rank}D")(_pad_layer(_rank))
    impl(f"Cropping{_rank}D")(_crop_layer(_rank))


@impl("UpSampling1D")
def up_sampling1d(*, x: torch.Tensor, size: int = 2) -> torch.Tensor:
    return x.repeat_interleave(size, dim=1)


def resize(x: torch.Tensor, height: int, width: int, interpolation: str) -> torch.Tensor:
    """[B, H, W, C] to [B, height, width, C], TensorFlow's half-pixel arithmetic."""
    if tuple(x.shape[1:3]) == (height, width):
        return x
    mode = "bilinear" if interpolation == "bilinear" else "nearest-exact"
    extra: dict[str, Any] = {"align_corners": False} if mode == "bilinear" else {}
    y = F.interpolate(to_channels_first(x), size=(height, width), mode=mode, **extra)
    return to_channels_last(y)


@impl("UpSampling2D")
def up_sampling2d(*, x: torch.Tensor, size: Any = 2,
                  interpolation: str = "nearest") -> torch.Tensor:
    fh, fw = ntuple(size, 2, "size")
    if interpolation == "nearest":
        return x.repeat_interleave(fh, dim=1).repeat_interleave(fw, dim=2)
    return resize(x, x.shape[1] * fh, x.shape[2] * fw, interpolation)


def crop_and_resize(x: torch.Tensor, height: int, width: int, interpolation: str,
                    crop_to_aspect_ratio: bool) -> torch.Tensor:
    if crop_to_aspect_ratio:
        top, left, h, w = aspect_crop_box(x.shape[1], x.shape[2], height, width)
        x = x[:, top:top + h, left:left + w]
    return resize(x, height, width, interpolation)


@impl("Resizing")
def resizing(*, x: torch.Tensor, height: int, width: int, interpolation: str = "bilinear",
             crop_to_aspect_ratio: bool = False) -> torch.Tensor:
    return crop_and_resize(x.float(), height, width, interpolation, crop_to_aspect_ratio)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    big_h, big_w = x.shape[1], x.shape[2]
    if big_h >= height and big_w >= width:
        top, left = (big_h - height) // 2, (big_w - width) // 2
        return x[:, top:top + height, left:left + width]
    return crop_and_resize(x, height, width, "bilinear", True)


@impl("CenterCrop")
def center_crop_layer(*, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return center_crop(x.float(), height, width)
