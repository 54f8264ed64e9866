"""Synthetic object-detection scenes: labelled images for tests, benchmarks and active-learning replays.

Real detection data sets are large downloads; this generator gives a task of the right *kind*
offline and deterministically, hard enough that a detector needs tens of labelled images and that
which images get labelled matters:

* several classes of shapes (circle, square, triangle, cross, ring, bar) in random colours, some
  rotated, from small (~7 % of the short side) to large (~50 %);
* 0 to ``max_objects`` objects per image, with a share of empty images;
* varied backgrounds (linear gradients, smooth colour textures, flat colour) and clutter that is
  *not* an object (thin lines, irregular blobs, specks), so "anything with an edge" is wrong;
* partial occlusion: objects may overlap; the box of each is the extent of its *visible* pixels
  (what an annotator draws), and placements hiding too much of an object are re-drawn;
* sensor effects: Gaussian blur and pixel noise, varying image sizes and aspect ratios.

Image ``i`` of a seed depends on ``(seed, i)`` only, so ``make_scenes(50, seed)`` is the first 50
images of ``make_scenes(500, seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from model.detection.boxes import Detections

#: All shape classes the generator can draw, in their canonical order.
SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")

#: An object whose visible pixels are fewer than this share of its own pixels is re-placed: an
#: annotator could not tell its class either.
MIN_VISIBLE = 0.6
#: Background kinds :func:`make_scenes` draws from.
BACKGROUNDS = ("gradient", "texture", "flat")
#: Smallest and largest object size relative to the image's short side (log-uniform in between).
SIZE_RANGE = (0.07, 0.5)


@dataclass(frozen=True)
class SceneOptions:
    """Knobs of :func:`make_scenes` beyond the image count and sizes (defaults: the benchmark's scenes)."""

    max_objects: int = 6
    empty_fraction: float = 0.1
    clutter: int = 4
    noise: float = 10.0
    blur: float = 1.0
    backgrounds: tuple[str, ...] = BACKGROUNDS
    object_sizes: tuple[float, float] = SIZE_RANGE


def make_scenes(
    n_images: int,
    seed: int = 0,
    classes: Sequence[str] = SHAPES,
    min_size: int = 96,
    max_size: int = 160,
    max_objects: int = 6,
    empty_fraction: float = 0.1,
    clutter: int = 4,
    noise: float = 10.0,
    blur: float = 1.0,
    backgrounds: Sequence[str] = BACKGROUNDS,
    object_sizes: tuple[float, float] = SIZE_RANGE,
) -> tuple[list[np.ndarray], list[Detections]]:
    """Return ``n_images`` uint8 RGB images (H, W, 3) and their ground-truth :class:`Detections`.

    ``classes``: which of :data:`SHAPES` appear (a subset makes an easier task). Width and height
    are drawn independently from ``[min_size, max_size]``. ``clutter``: at most this many
    distractors per image; ``noise``: the largest per-pixel noise standard deviation (0-255
    scale); ``blur``: the largest Gaussian blur radius in pixels; ``backgrounds``: the kinds of
    :data:`BACKGROUNDS` to draw from; ``object_sizes``: smallest and largest object size relative
    to the image's short side. Deterministic per ``seed``.
    """
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes:
        raise ValueError(f"classes must be a non-empty subset of {SHAPES}, got {list(classes)!r}")
    if not 8 <= min_size <= max_size:
        raise ValueError(f"need 8 <= min_size <= max_size, got {min_size} and {max_size}")
    if not backgrounds or any(b not in BACKGROUNDS for b in backgrounds):
        raise ValueError(f"backgrounds must be a non-empty subset of {BACKGROUNDS}, got {list(backgrounds)!r}")
    if not 0.0 < object_sizes[0] <= object_sizes[1] <= 1.0:
        raise ValueError(f"object_sizes must satisfy 0 < smallest <= largest <= 1, got {object_sizes!r}")
    options = SceneOptions(max_objects, empty_fraction, clutter, noise, blur, tuple(backgrounds),
                           (float(object_sizes[0]), float(object_sizes[1])))
    images, targets = [], []
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        image, target = _scene(rng, tuple(classes), min_size, max_size, options)
        images.append(image)
        targets.append(target)
    return images, targets


def _scene(
    rng: np.random.Generator, classes: tuple[str, ...], min_size: int, max_size: int, options: SceneOptions
) -> tuple[np.ndarray, Detections]:
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    canvas = _background(rng, width, height, options.backgrounds)
    _draw_clutter(rng, canvas, int(rng.integers(0, options.clutter + 1)))
    n_objects = 0 if rng.random() < options.empty_fraction else int(rng.integers(1, options.max_objects + 1))
    masks: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    names: list[str] = []
    for _ in range(n_objects):
        name = str(rng.choice(classes))
        mask = _place(rng, name, width, height, masks, visible, options.object_sizes)
        if mask is None:
            continue
        colour = _contrasting_colour(rng, canvas, mask)
        canvas[mask] = colour * rng.uniform(0.85, 1.0, size=(int(mask.sum()), 1))  # slight shading
        for v in visible:
            v &= ~mask
        masks.append(mask)
        visible.append(mask.copy())
        names.append(name)
    image = _sensor(rng, canvas, options)
    boxes = [_extent(v, width, height) for v in visible]
    return image, Detections.ground_truth(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), names)


def _background(rng: np.random.Generator, width: int, height: int, kinds: tuple[str, ...]) -> np.ndarray:
    """A float (H, W, 3) background: a linear gradient, a smooth colour texture, or a flat colour."""
    kind = kinds[int(rng.integers(0, len(kinds)))]
    if kind == "gradient":
        a, b = rng.uniform(0, 255, size=(2, 3))
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        t = (xx * math.cos(angle) + yy * math.sin(angle)).astype(np.float64)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        return a + (b - a) * t[..., None]
    if kind == "texture":
        cells = rng.uniform(0, 255, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(cells).resize((width, height), Image.BICUBIC), dtype=np.float64)
        base = rng.uniform(0, 255, size=3)
        return base + rng.uniform(0.3, 1.0) * (smooth - base)  # from a faint to a loud texture
    return np.broadcast_to(rng.uniform(0, 255, size=3), (height, width, 3)).copy()


def _draw_clutter(rng: np.random.Generator, canvas: np.ndarray, count: int) -> None:
    """Distractors that are not objects: thin lines, irregular blobs and specks (under the objects)."""
    height, width = canvas.shape[:2]
    for _ in range(count):
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        kind = rng.integers(0, 3)
        if kind == 0:
            points = [tuple(p) for p in rng.uniform(0, [width, height], size=(int(rng.integers(2, 4)), 2))]
            draw.line(points, fill=255, width=int(rng.integers(1, 3)))
        elif kind == 1:
            centre = rng.uniform(0, [width, height])
            radius = rng.uniform(0.03, 0.12) * min(width, height)
            angles = np.sort(rng.uniform(0, 2 * math.pi, size=int(rng.integers(5, 9))))
            radii = radius * rng.uniform(0.3, 1.0, size=angles.size)
            draw.polygon([(centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)) for a, r in zip(angles, radii,
                                                                                                     strict=True)],
                         fill=255)
        else:
            for x, y in rng.uniform(0, [width, height], size=(int(rng.integers(3, 12)), 2)):
                r = rng.uniform(0.5, 2.0)
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        mask = np.asarray(layer) > 127
        canvas[mask] = rng.uniform(0, 255, size=3)


def _place(
    rng: np.random.Generator, name: str, width: int, height: int, masks: list[np.ndarray],
    visible: list[np.ndarray], sizes: tuple[float, float],
) -> np.ndarray | None:
    """The pixel mask of a new object, re-drawn (up to 20 times) until it leaves every earlier
    object at least :data:`MIN_VISIBLE` of its pixels visible (counting all occluders so far) and
    is not too small to see; None if no placement worked."""
    short = min(width, height)
    for _ in range(20):
        size = short * math.exp(rng.uniform(math.log(sizes[0]), math.log(sizes[1])))
        half = size / 2
        centre = (rng.uniform(half, width - half), rng.uniform(half, height - half))
        mask = _shape_mask(rng, name, centre, size, width, height)
        area = int(mask.sum())
        if area < 12:
            continue
        if all((seen & ~mask).sum() >= MIN_VISIBLE * full.sum() for full, seen in zip(masks, visible, strict=True)):
            return mask
    return None


def _shape_mask(
    rng: np.random.Generator, name: str, centre: tuple[float, float], size: float, width: int, height: int
) -> np.ndarray:
    """Boolean (H, W) mask of one shape of the given ``size`` (its nominal diameter) at ``centre``."""
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    cx, cy = centre
    r = size / 2
    if name in ("circle", "ring"):
        ry = r * rng.uniform(0.85, 1.0)
        draw.ellipse((cx - r, cy - ry, cx + r, cy + ry), fill=255)
        if name == "ring":
            k = rng.uniform(0.45, 0.65)
            draw.ellipse((cx - k * r, cy - k * ry, cx + k * r, cy + k * ry), fill=0)
    elif name == "square":
        draw.polygon(_rotated([(-1, -1), (1, -1), (1, 1), (-1, 1)], 0.75 * r, rng.uniform(-0.35, 0.35), centre),
                     fill=255)
    elif name == "triangle":
        corners = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(_rotated(corners, r, rng.uniform(0, 2 * math.pi), centre), fill=255)
    elif name == "cross":
        t = rng.uniform(0.22, 0.32)
        angle = rng.uniform(-0.35, 0.35)
        draw.polygon(_rotated([(-1, -t), (1, -t), (1, t), (-1, t)], r, angle, centre), fill=255)
        draw.polygon(_rotated([(-t, -1), (t, -1), (t, 1), (-t, 1)], r, angle, centre), fill=255)
    else:  # bar
        t = rng.uniform(0.15, 0.25)
        draw.polygon(_rotated([(-1, -t), (1, -t), (1, t), (-1, t)], r, rng.uniform(0, math.pi), centre), fill=255)
    return np.asarray(layer) > 127


def _rotated(
    points: list[tuple[float, float]], scale: float, angle: float, centre: tuple[float, float]
) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(centre[0] + scale * (x * c - y * s), centre[1] + scale * (x * s + y * c)) for x, y in points]


def _contrasting_colour(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A random colour at least ~70 (RGB distance) away from the background it covers, when one is
    found in 10 draws: low-contrast objects exist in real data, invisible ones should not be labelled."""
    below = canvas[mask].mean(axis=0)
    colour = rng.uniform(0, 255, size=3)
    for _ in range(10):
        if np.linalg.norm(colour - below) >= 70.0:
            break
        colour = rng.uniform(0, 255, size=3)
    return colour


def _sensor(rng: np.random.Generator, canvas: np.ndarray, options: SceneOptions) -> np.ndarray:
    """Blur (sometimes) and pixel noise, then quantise to uint8."""
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    if options.blur > 0 and rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, options.blur)))
    pixels = np.asarray(image, dtype=np.float64)
    if options.noise > 0:
        pixels = pixels + rng.normal(0.0, rng.uniform(0.0, options.noise), size=pixels.shape)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _extent(visible: np.ndarray, width: int, height: int) -> list[float]:
    """Normalised xyxy extent of an object's visible pixels (those no later object covers)."""
    ys, xs = np.nonzero(visible)
    return [xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height]
