"""Boxes as arrays: the :class:`Detections` container and the geometry every other module shares.

All coordinates are **normalised xyxy**: ``(x0, y0, x1, y1)`` as fractions of the image width and
height, so ``0 <= x0 <= x1 <= 1``. Normalised boxes survive the detector's internal resize (a
plain, aspect-distorting resize to a square maps a normalised box to itself) and are what Label
Studio's ``RectangleLabels`` store (percentages), so no caller ever needs the pixel size of the
image the network saw. IoU is not invariant to anisotropic scaling in general, but both boxes of a
pair are scaled alike, and we compute it in normalised space everywhere (metrics, matching of MC
samples), so every consumer agrees on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Detections:
    """The boxes of one image: predicted (with scores and class distributions) or ground truth.

    ``boxes``: (n, 4) float64 normalised xyxy; ``labels``: n class names; ``scores``: (n,) float64,
    1.0 for ground truth; ``class_probs``: (n, C) per-box distribution over the detector's
    ``classes_``, or None for ground truth (and for boxes that come from elsewhere).

    Arrays are converted and validated on construction, so a malformed box fails where it is made
    rather than inside a metric.
    """

    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray
    class_probs: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        labels = [str(label) for label in self.labels]
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        n = boxes.shape[0]
        if len(labels) != n or scores.shape[0] != n:
            raise ValueError(f"{n} boxes but {len(labels)} labels and {scores.shape[0]} scores")
        if n and not np.all(np.isfinite(boxes)):
            raise ValueError("box coordinates must be finite")
        probs = None
        if self.class_probs is not None:
            probs = np.asarray(self.class_probs, dtype=np.float64)
            if probs.ndim != 2 or probs.shape[0] != n:
                raise ValueError(f"class_probs must be (n_boxes, n_classes) with n_boxes={n}, got {probs.shape}")
        # frozen dataclass: normalised values are written through object.__setattr__
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_probs", probs)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, n_classes: int = 0) -> Detections:
        """No boxes. ``n_classes > 0`` gives an empty ``(0, n_classes)`` ``class_probs`` (a prediction)."""
        probs = np.zeros((0, n_classes), dtype=np.float64) if n_classes > 0 else None
        return cls(np.zeros((0, 4)), [], np.zeros(0), probs)

    @classmethod
    def ground_truth(cls, boxes: Any, labels: Sequence[str]) -> Detections:
        """Labelled boxes: score 1.0 each and no class distribution."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return cls(boxes, list(labels), np.ones(boxes.shape[0]), None)

    def take(self, idx: Any) -> Detections:
        """The boxes at ``idx`` (integer indices or a boolean mask), in that order."""
        index = np.asarray(idx)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)
        probs = self.class_probs[index] if self.class_probs is not None else None
        return Detections(self.boxes[index], [self.labels[i] for i in index], self.scores[index], probs)

    def above(self, threshold: float) -> Detections:
        """The boxes whose score is at least ``threshold`` (what an auto-labeller would accept)."""
        return self.take(self.scores >= threshold)


def validate_boxes(boxes: Any) -> np.ndarray:
    """Return ``boxes`` as (n, 4) float64 after checking they are normalised xyxy.

    Raises ValueError for coordinates outside [0, 1] (beyond rounding) or with x1 < x0 / y1 < y0:
    pixel boxes passed by mistake would otherwise train a detector on garbage without an error.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.size and (b.min() < -1e-6 or b.max() > 1.0 + 1e-6):
        raise ValueError("boxes must be normalised xyxy in [0, 1] (fractions of the image width / height)")
    if b.size and (np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1])):
        raise ValueError("boxes must be xyxy with x1 >= x0 and y1 >= y0")
    return np.clip(b, 0.0, 1.0)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of (n, 4) xyxy boxes (0 for degenerate ones)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)


def iou_matrix(a: Any, b: Any) -> np.ndarray:
    """Intersection over union of every box of ``a`` (n, 4) with every box of ``b`` (m, 4): (n, m).

    Two degenerate (zero-area) boxes have IoU 0, not NaN.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0.0, None) * np.clip(y1 - y0, 0.0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0.0, inter / np.where(union > 0.0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, groups: np.ndarray | None = None) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, by descending score.

    A box is dropped when it overlaps a higher-scored kept box of the same group (class) by more
    than ``iou_threshold``. ``groups=None`` suppresses across all boxes. Ties in score keep the
    earlier index (stable sort), so the result is deterministic.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if order.size == 0:
        return order.astype(np.int64)
    overlaps = iou_matrix(boxes, boxes)
    same = np.ones_like(overlaps, dtype=bool) if groups is None else groups[:, None] == groups[None, :]
    suppressed = np.zeros(len(scores), dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= same[i] & (overlaps[i] > iou_threshold)
    return np.asarray(keep, dtype=np.int64)


def flip_boxes(boxes: np.ndarray, horizontal: bool, vertical: bool) -> np.ndarray:
    """Normalised boxes of the mirrored image (left-right and / or top-bottom)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    if horizontal:
        b[:, [0, 2]] = 1.0 - b[:, [2, 0]]
    if vertical:
        b[:, [1, 3]] = 1.0 - b[:, [3, 1]]
    return b


#: An augmented box is kept when at least this share of it stays inside the image.
MIN_INSIDE = 0.4


def affine_boxes(boxes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes under the zoom / shift / mirror of :func:`torch.nn.functional.affine_grid` augmentation.

    The output pixel at ``o`` (in [-1, 1] coordinates) samples the input at ``o / scale + offset``
    per axis (``scale`` negative = mirrored), so an input point ``p`` lands at ``(p - offset) *
    scale``. Boxes are clipped to the image; those with less than :data:`MIN_INSIDE` of their area
    left inside are dropped. Returns the kept boxes (m, 4) and their indices in ``boxes``.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.shape[0] == 0:
        return b, np.zeros(0, dtype=np.int64)
    sx, sy = float(scale[0]), float(scale[1])
    x = ((2 * b[:, [0, 2]] - 1 - offset[0]) * sx + 1) / 2
    y = ((2 * b[:, [1, 3]] - 1 - offset[1]) * sy + 1) / 2
    moved = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
    clipped = np.clip(moved, 0.0, 1.0)
    full = box_area(moved)
    inside = box_area(clipped) >= MIN_INSIDE * np.maximum(full, 1e-12)
    kept = np.flatnonzero(inside & (full > 0))
    return clipped[kept], kept
