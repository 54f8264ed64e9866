"""COCO-style detection metrics against hand-computed cases (model.detection.metrics)."""

import numpy as np
import pytest

from model.detection.boxes import Detections
from model.detection.metrics import average_precision, evaluate_detections, match

A, B = [0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]


def gt(boxes, labels):
    return Detections.ground_truth(np.asarray(boxes, float).reshape(-1, 4), labels)


def pred(boxes, labels, scores):
    return Detections(np.asarray(boxes, float).reshape(-1, 4), labels, np.asarray(scores, float), None)


def shifted(box, iou):
    """``box`` moved right so that it overlaps the original with exactly ``iou``."""
    w = box[2] - box[0]
    dx = w * (1 - iou) / (1 + iou)  # (w - dx) / (w + dx) = iou for equal heights
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


def test_perfect_predictions_score_one():
    truth = [gt([A, B], ["cat", "dog"]), gt([B], ["cat"]), gt([], [])]
    predicted = [pred([A, B], ["cat", "dog"], [0.9, 0.8]), pred([B], ["cat"], [0.7]), pred([], [], [])]
    r = evaluate_detections(truth, predicted, ["cat", "dog"])
    assert r["map50"] == r["map50_95"] == r["accuracy"] == 1.0
    assert r["macro_f1"] == 1.0
    assert r["n_images"] == 3 and r["n_boxes"] == 3
    assert r["per_class"]["cat"] == pytest.approx(
        {"precision": 1.0, "recall": 1.0, "f1": 1.0, "ap50": 1.0, "ap50_95": 1.0, "support": 2, "n_predicted": 2})


def test_shifted_box_counts_only_below_its_iou():
    # IoU 0.72: a hit at thresholds 0.50, 0.55, 0.60, 0.65, 0.70 -- 5 of the 10
    r = evaluate_detections([gt([A], ["cat"])], [pred([shifted(A, 0.72)], ["cat"], [0.9])], ["cat"])
    assert r["map50"] == 1.0
    assert r["map50_95"] == pytest.approx(0.5)
    # IoU 0.45: a miss everywhere
    r = evaluate_detections([gt([A], ["cat"])], [pred([shifted(A, 0.45)], ["cat"], [0.9])], ["cat"])
    assert r["map50"] == 0.0 and r["per_class"]["cat"]["precision"] == 0.0


def test_false_positive_ranked_above_true_positive_halves_ap():
    truth = [gt([A], ["cat"])]
    fp_first = evaluate_detections(truth, [pred([B, A], ["cat", "cat"], [0.9, 0.8])], ["cat"])
    assert fp_first["map50"] == pytest.approx(0.5)  # precision 1/2 at every recall level
    tp_first = evaluate_detections(truth, [pred([B, A], ["cat", "cat"], [0.8, 0.9])], ["cat"])
    assert tp_first["map50"] == pytest.approx(1.0)


def test_interpolated_ap_hand_computed():
    # 2 truths; ranked TP, FP, TP: recall .5/.5/1, precision 1/.5/.667; 51 recall points (0 .. .5)
    # get precision 1, the 50 above get 2/3.
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), n_truth=2)
    assert ap == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    # half the truths never found: recall stops at 0.5, precision 0 beyond
    assert average_precision(np.array([0.9]), np.array([True]), n_truth=2) == pytest.approx(51 / 101)
    assert average_precision(np.zeros(0), np.zeros(0, bool), n_truth=3) == 0.0
    with pytest.raises(ValueError):
        average_precision(np.array([0.5]), np.array([True]), n_truth=0)


def test_class_without_ground_truth_is_ignored_by_map_but_counts_in_f1():
    truth = [gt([A], ["cat"])]
    predicted = [pred([A, B], ["cat", "bird"], [0.9, 0.95])]
    r = evaluate_detections(truth, predicted, ["cat", "bird", "dog"])
    assert r["map50"] == 1.0 and r["map50_95"] == 1.0  # "bird" has no truth, "dog" nothing at all
    assert r["per_class"]["bird"]["support"] == 0 and r["per_class"]["bird"]["n_predicted"] == 1
    assert r["macro_f1"] == pytest.approx(0.5)  # cat 1.0, bird 0.0 (only hallucinated), dog not counted
    assert evaluate_detections([gt([], [])], [pred([A], ["cat"], [0.9])], ["cat"])["map50"] == 0.0


def test_wrong_class_and_duplicates_are_false_positives():
    m = match(pred([A, A, A], ["cat", "cat", "dog"], [0.6, 0.9, 0.8]), gt([A], ["cat"]))
    np.testing.assert_array_equal(m, [False, True, False])  # the best-scored cat wins; dog is wrong
    # each truth goes to the unmatched one a prediction overlaps most
    truth = gt([A, shifted(A, 0.6)], ["cat", "cat"])
    np.testing.assert_array_equal(match(pred([shifted(A, 0.8), A], ["cat", "cat"], [0.9, 0.5]), truth, 0.5),
                                  [True, True])


def test_operating_point_precision_recall():
    truth = [gt([A, B], ["cat", "cat"])]
    predicted = [pred([A, B, [0.1, 0.6, 0.3, 0.8]], ["cat", "cat", "cat"], [0.9, 0.3, 0.6])]
    c = evaluate_detections(truth, predicted, ["cat"])["per_class"]["cat"]
    # at score >= 0.5: A (hit) and the stray box (miss); B scores 0.3 and is not "predicted"
    assert c["precision"] == pytest.approx(0.5) and c["recall"] == pytest.approx(0.5) and c["n_predicted"] == 2


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        evaluate_detections([gt([A], ["cat"])], [], ["cat"])


def test_map50_95_matches_pycocotools():
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    coco_api = pytest.importorskip("pycocotools.coco")
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    truth, predicted = [], []
    for _ in range(12):
        n = int(rng.integers(0, 5))
        boxes = _random_boxes(rng, n)
        labels = [str(rng.choice(classes[:2])) for _ in range(n)]  # "c" never in the truth
        truth.append(gt(boxes, labels))
        noisy = np.clip(boxes + rng.normal(0, 0.03, boxes.shape), 0, 1)
        extra = _random_boxes(rng, int(rng.integers(0, 4)))
        all_boxes = np.concatenate([noisy, extra]) if len(extra) else noisy
        all_labels = labels + [str(rng.choice(classes)) for _ in range(len(extra))]
        ok = (all_boxes[:, 2] > all_boxes[:, 0]) & (all_boxes[:, 3] > all_boxes[:, 1])
        predicted.append(pred(all_boxes[ok], [all_labels[i] for i in np.flatnonzero(ok)], rng.random(int(ok.sum()))))
    ours = evaluate_detections(truth, predicted, classes)
    stats = _coco_stats(coco_api, cocoeval, truth, predicted, classes)
    assert ours["map50_95"] == pytest.approx(stats[0], abs=1e-9)
    assert ours["map50"] == pytest.approx(stats[1], abs=1e-9)


def _random_boxes(rng, n):
    xy = rng.uniform(0, 0.7, (n, 2))
    wh = rng.uniform(0.05, 0.3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).reshape(-1, 4)


def _coco_stats(coco_api, cocoeval, truth, predicted, classes, size=1000.0):
    def xywh(b):
        return [float(b[0] * size), float(b[1] * size), float((b[2] - b[0]) * size), float((b[3] - b[1]) * size)]

    cat = {c: i + 1 for i, c in enumerate(classes)}
    annotations, results = [], []
    for image_id, (t, p) in enumerate(zip(truth, predicted, strict=True), start=1):
        for b, label in zip(t.boxes, t.labels, strict=True):
            box = xywh(b)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat[label],
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        for b, label, s in zip(p.boxes, p.labels, p.scores, strict=True):
            results.append({"image_id": image_id, "category_id": cat[label], "bbox": xywh(b), "score": float(s)})
    coco = coco_api.COCO()
    coco.dataset = {"images": [{"id": i} for i in range(1, len(truth) + 1)], "annotations": annotations,
                    "categories": [{"id": i} for i in cat.values()]}
    coco.createIndex()
    evaluator = cocoeval.COCOeval(coco, coco.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats
