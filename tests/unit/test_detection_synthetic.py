"""Synthetic detection scenes (model.detection.synthetic)."""

import numpy as np
import pytest

from model.detection.boxes import iou_matrix
from model.detection.synthetic import SHAPES, make_scenes


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(60, seed=5)


def test_shapes_types_and_box_ranges(scenes):
    images, targets = scenes
    assert len(images) == len(targets) == 60
    for image, target in zip(images, targets, strict=True):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert 96 <= image.shape[0] <= 160 and 96 <= image.shape[1] <= 160
        assert target.boxes.shape == (len(target), 4) and target.class_probs is None
        np.testing.assert_array_equal(target.scores, 1.0)
        assert np.all((target.boxes >= 0) & (target.boxes <= 1))
        assert np.all(target.boxes[:, 2] > target.boxes[:, 0]) and np.all(target.boxes[:, 3] > target.boxes[:, 1])
        assert set(target.labels) <= set(SHAPES)


def test_variety(scenes):
    images, targets = scenes
    counts = np.array([len(t) for t in targets])
    assert counts.min() == 0 and counts.max() >= 5  # empty images and crowded ones
    assert set(label for t in targets for label in t.labels) == set(SHAPES)
    sides = np.concatenate([np.maximum(t.boxes[:, 2] - t.boxes[:, 0], t.boxes[:, 3] - t.boxes[:, 1]) for t in targets])
    assert sides.min() < 0.12 and sides.max() > 0.4  # small and large objects
    assert len({im.shape[:2] for im in images}) > 30  # sizes and aspect ratios vary
    overlapping = sum(int((np.triu(iou_matrix(t.boxes, t.boxes), 1) > 0).any()) for t in targets)
    assert overlapping >= 3  # some objects overlap (occlusion)


def test_deterministic_per_seed_and_prefix_stable():
    a_images, a_targets = make_scenes(8, seed=1)
    b_images, b_targets = make_scenes(12, seed=1)
    c_images, _ = make_scenes(8, seed=2)
    for i in range(8):
        np.testing.assert_array_equal(a_images[i], b_images[i])
        np.testing.assert_array_equal(a_targets[i].boxes, b_targets[i].boxes)
        assert a_targets[i].labels == b_targets[i].labels
    assert any(a.shape != c.shape or not np.array_equal(a, c) for a, c in zip(a_images, c_images, strict=True))


def test_boxes_are_the_visible_extents():
    # flat backgrounds, no clutter, noise or blur: the pixels that differ from the background are the
    # objects'; every one lies in a box, and every box edge touches such pixels (the box is tight)
    images, targets = make_scenes(12, seed=3, clutter=0, noise=0.0, blur=0.0, empty_fraction=0.0,
                                  backgrounds=("flat",))
    for image, target in zip(images, targets, strict=True):
        h, w = image.shape[:2]
        background = image[0, 0] if not _corner_covered(target) else np.median(image.reshape(-1, 3), axis=0)
        ink = np.abs(image.astype(int) - background.astype(int)).sum(axis=2) > 3
        inside = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in np.round(target.boxes * [w, h, w, h]).astype(int):
            inside[y0:y1, x0:x1] = True
            region = ink[y0:y1, x0:x1]
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
        assert target.labels and not (ink & ~inside).any()


def _corner_covered(target):
    return bool(((target.boxes[:, 0] == 0) & (target.boxes[:, 1] == 0)).any())


def test_bad_arguments():
    with pytest.raises(ValueError, match="subset"):
        make_scenes(1, classes=("circle", "hexagon"))
    with pytest.raises(ValueError):
        make_scenes(1, min_size=100, max_size=50)
    with pytest.raises(ValueError, match="backgrounds"):
        make_scenes(1, backgrounds=("checkerboard",))
