"""Image arrays as the detector's input: any common layout in, a uint8 (n, 3, S, S) batch out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image


def to_rgb(image: Any) -> np.ndarray:
    """An (H, W, 3) uint8 array from grey (H, W), (H, W, 1), RGB or RGBA (alpha dropped) input.

    Float images are taken as 0-255 when their maximum exceeds 1, else as 0-1, so a caller that
    already scaled pixels does not get a black image. Raises ValueError for other shapes.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.stack([a, a, a], axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        if f.size and np.nanmax(f) <= 1.0:
            f = f * 255.0
        a = np.clip(np.nan_to_num(np.round(f)), 0, 255).astype(np.uint8)
    return a


def resize_batch(images: Sequence[Any], size: int) -> np.ndarray:
    """Every image converted with :func:`to_rgb` and resized (bilinear, anti-aliased) to ``size`` x ``size``.

    A plain resize, not a letterbox: boxes are normalised to the image's own width and height, so
    they stay correct under the (aspect-distorting) resize and no padding wastes input pixels.
    Returns uint8 (n, 3, size, size), channels first as torch wants them.
    """
    out = np.empty((len(images), 3, size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        rgb = to_rgb(image)
        if rgb.shape[:2] != (size, size):
            rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
        out[i] = rgb.transpose(2, 0, 1)
    return out
