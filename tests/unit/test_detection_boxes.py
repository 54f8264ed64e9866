"""Detections container and box geometry (model.detection.boxes)."""

import numpy as np
import pytest

from model.detection.boxes import Detections, affine_boxes, flip_boxes, iou_matrix, nms, validate_boxes


def _pred(boxes, labels, scores, n_classes=2):
    probs = np.full((len(labels), n_classes), 1.0 / n_classes)
    return Detections(np.asarray(boxes, float), labels, np.asarray(scores, float), probs)


def test_detections_normalises_types_and_validates_lengths():
    d = Detections([[0.1, 0.1, 0.5, 0.5]], ["cat"], [1], None)
    assert d.boxes.dtype == np.float64 and d.boxes.shape == (1, 4)
    assert d.scores.dtype == np.float64 and d.labels == ["cat"] and len(d) == 1
    with pytest.raises(ValueError, match="labels"):
        Detections([[0, 0, 1, 1]], ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="class_probs"):
        Detections([[0, 0, 1, 1]], ["a"], [1.0], np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        Detections([[0, 0, np.nan, 1]], ["a"], [1.0])


def test_empty_and_ground_truth_constructors():
    empty = Detections.empty(3)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.class_probs.shape == (0, 3)
    assert Detections.empty().class_probs is None
    gt = Detections.ground_truth([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], ["a", "b"])
    np.testing.assert_array_equal(gt.scores, [1.0, 1.0])
    assert gt.class_probs is None


def test_take_and_above_keep_rows_aligned():
    d = _pred([[0, 0, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3], [0.4, 0.4, 0.5, 0.5]], ["a", "b", "a"], [0.9, 0.2, 0.5])
    d.class_probs[1] = [0.3, 0.7]
    picked = d.take([1, 0])
    assert picked.labels == ["b", "a"]
    np.testing.assert_array_equal(picked.scores, [0.2, 0.9])
    np.testing.assert_array_equal(picked.class_probs[0], [0.3, 0.7])
    np.testing.assert_array_equal(picked.boxes[0], [0.2, 0.2, 0.3, 0.3])
    kept = d.above(0.5)
    assert kept.labels == ["a", "a"] and np.all(kept.scores >= 0.5)
    assert len(d.take(np.array([False, False, False]))) == 0


def test_iou_matrix_hand_computed():
    a = np.array([[0.0, 0.0, 0.5, 0.5]])
    b = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5], [0.6, 0.6, 1.0, 1.0], [0.2, 0.2, 0.2, 0.2]])
    iou = iou_matrix(a, b)
    assert iou.shape == (1, 4)
    # identical; half-overlapping (intersection 1/8, union 3/8); disjoint; degenerate box
    np.testing.assert_allclose(iou[0], [1.0, 1.0 / 3.0, 0.0, 0.0])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)
    # two zero-area boxes: 0, not NaN
    assert iou_matrix([[0.3, 0.3, 0.3, 0.3]], [[0.3, 0.3, 0.3, 0.3]])[0, 0] == 0.0


def test_nms_suppresses_within_group_only():
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.02, 0.0, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]])
    scores = np.array([0.6, 0.9, 0.5])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [1, 2])
    # the overlapping pair belongs to different classes: both stay
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, groups=np.array([0, 1, 0])), [1, 0, 2])


def test_validate_boxes_rejects_pixels_and_inverted_boxes():
    with pytest.raises(ValueError, match="normalised"):
        validate_boxes([[10, 10, 50, 50]])
    with pytest.raises(ValueError, match="x1 >= x0"):
        validate_boxes([[0.5, 0.1, 0.2, 0.4]])
    np.testing.assert_array_equal(validate_boxes([[0.0, 0.0, 1.0, 1.0]]), [[0.0, 0.0, 1.0, 1.0]])


def test_flip_boxes():
    b = np.array([[0.1, 0.2, 0.3, 0.6]])
    np.testing.assert_allclose(flip_boxes(b, True, False), [[0.7, 0.2, 0.9, 0.6]])
    np.testing.assert_allclose(flip_boxes(b, False, True), [[0.1, 0.4, 0.3, 0.8]])


def test_affine_boxes_identity_zoom_mirror_and_drop():
    b = np.array([[0.1, 0.2, 0.3, 0.6], [0.9, 0.9, 1.0, 1.0]])
    same, kept = affine_boxes(b, np.array([1.0, 1.0]), np.zeros(2))
    np.testing.assert_allclose(same, b)
    np.testing.assert_array_equal(kept, [0, 1])
    mirrored, _ = affine_boxes(b[:1], np.array([-1.0, 1.0]), np.zeros(2))
    np.testing.assert_allclose(mirrored, flip_boxes(b[:1], True, False))
    # zoom x2 about the centre: [0.3, 0.6] -> [0.1, 0.7]; the corner box leaves the image
    zoomed, kept = affine_boxes(np.array([[0.3, 0.3, 0.6, 0.6], [0.9, 0.9, 1.0, 1.0]]), np.array([2.0, 2.0]),
                                np.zeros(2))
    np.testing.assert_array_equal(kept, [0])
    np.testing.assert_allclose(zoomed, [[0.1, 0.1, 0.7, 0.7]])
    # half inside ([-0.1, 0.1] in x): kept and clipped; a third inside ([-0.2, 0.1]): dropped
    cut, kept = affine_boxes(np.array([[0.2, 0.4, 0.3, 0.6], [0.15, 0.4, 0.3, 0.6]]), np.array([2.0, 2.0]),
                             np.zeros(2))
    np.testing.assert_array_equal(kept, [0])
    np.testing.assert_allclose(cut, [[0.0, 0.3, 0.1, 0.7]])
