"""Object detection for Label Studio ``RectangleLabels`` projects: arrays in, arrays out.

* :mod:`~model.detection.boxes` -- :class:`Detections` (normalised xyxy boxes) and box geometry;
* :mod:`~model.detection.detector` -- :class:`BoxDetector`, a small CenterNet-style CNN with a crop
  classifier and MC dropout (network: :mod:`~model.detection.network`, training and inference:
  :mod:`~model.detection.engine`, input images: :mod:`~model.detection.images`);
* :mod:`~model.detection.uncertainty` -- image-level acquisition heuristics and :func:`score_images`;
* :mod:`~model.detection.metrics` -- COCO-style mAP, matching and per-class precision / recall;
* :mod:`~model.detection.synthetic` -- labelled synthetic scenes;
* :mod:`~model.detection.simulation` -- offline active-learning replays (active vs random).

Importing the package does not import torch (only fitting or using a detector does), so
:mod:`model.persistence` can import the estimator class to recognise it in model files.
"""

from model.detection.boxes import Detections, iou_matrix, nms
from model.detection.detector import BoxDetector, DetectorOutput
from model.detection.metrics import average_precision, evaluate_detections, match
from model.detection.simulation import aggregate_curves, labels_to_reach, run_detection_curve
from model.detection.synthetic import SHAPES, make_scenes
from model.detection.uncertainty import (
    DETECTION_STRATEGIES,
    DetectionScores,
    DetectionStrategy,
    get_detection_strategy,
    score_images,
)

__all__ = [
    "DETECTION_STRATEGIES",
    "SHAPES",
    "BoxDetector",
    "DetectionScores",
    "DetectionStrategy",
    "Detections",
    "DetectorOutput",
    "aggregate_curves",
    "average_precision",
    "evaluate_detections",
    "get_detection_strategy",
    "iou_matrix",
    "labels_to_reach",
    "make_scenes",
    "match",
    "nms",
    "run_detection_curve",
    "score_images",
]
