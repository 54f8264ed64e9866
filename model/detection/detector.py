"""``BoxDetector``: a small anchor-free detector trained from scratch, with MC-dropout samples.

The estimator follows the scikit-learn contract (parameters in ``__init__``, fitted state in
attributes ending in ``_``), takes images as arrays and boxes as :class:`Detections`, and keeps its
fitted state as numpy arrays only, so :mod:`model.persistence` stores it in the native format (no
pickle) and a reloaded model predicts bit-identically. The network itself -- a CenterNet-style box
network plus a crop classifier that names each box -- is :mod:`model.detection.network`, its
training loop and batched inference :mod:`model.detection.engine` (imported, with torch, only when
a detector is fitted or used).

Training from scratch on a few dozen images is the use case -- an active-learning project's first
rounds -- so the defaults favour a small network, many cheap steps and strong but simple
augmentation (mirror flips, colour-channel permutations, brightness / contrast) over capacity. A
user with a better start point passes ``init_weights``, an ``.npz`` of the same arrays (e.g. written
by :meth:`BoxDetector.save_weights` from an earlier round or a larger data set).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from model.detection.boxes import Detections, nms, validate_boxes
from model.detection.images import resize_batch

#: Fewest optimiser steps a fit takes whatever ``epochs`` says: a first round of 10 images is one
#: mini-batch per epoch, and 60 steps leave a from-scratch detector close to its initialisation.
MIN_STEPS = 150
#: Most optimiser steps a fit takes (None in the parameter: no cap), so that fit time stops growing
#: with the labelled set: later active-learning rounds get more data per step, not more steps.
MAX_STEPS = 600
#: Images per inference batch: bounds memory (activations of ~1 MB per 128 px image, times
#: ``mc_samples`` for the output layer) whatever the number of images asked about.
INFER_BATCH = 32
#: Boxes of one class overlapping a better-scored one by more than this IoU are dropped.
NMS_IOU = 0.6


@dataclass(frozen=True)
class DetectorOutput:
    """One inference pass: per image the detections, optionally T MC samples and pooled features."""

    detections: list[Detections]
    samples: list[list[Detections]] | None = None
    features: np.ndarray | None = None


class BoxDetector(BaseEstimator):
    """Box detector for ``RectangleLabels`` projects (see :mod:`model.detection.network`).

    Measured on the synthetic scenes (6 classes, clutter, occlusion; 60 training images, defaults,
    a busy 2-core CPU): mAP@0.5 0.31 on held-out scenes after a fit of 600 steps.

    Parameters
    ----------
    classes:
        All label names of the project, in the order of ``class_probs`` columns. Empty: the sorted
        labels seen in ``y``.
    image_size:
        Side of the square every image is resized to (a multiple of 16). 96 by default: on the
        synthetic scenes 64 px lost the small objects (mAP@0.5 0.19 vs 0.41 at 96 px, same steps)
        and 128 px costs ~1.8x the time per step and learnt less in the same steps (0.02 vs 0.06 at
        batch size 8, measured before the crop classifier existed).
    epochs, batch_size, learning_rate:
        Passes over the training images, images per step and the peak AdamW learning rate (linear
        warm-up, then cosine decay to 5 %).
    min_steps, max_steps:
        Bounds on the optimiser steps ``epochs`` gives (``max_steps=None``: no cap). A first round of
        10 images is one or two mini-batches per epoch, too few steps to learn anything; a large
        labelled set would make every fit slower, where the same steps over more data already learn
        more.
    dropout:
        Dropout rate before the box head's output layer and the classifier's linear layer, in
        training and in :meth:`predict_samples`.
    score_threshold:
        Boxes scoring below this are not returned. The score is objectness x top class
        probability. Low by default so that uncertainty heuristics and mAP see the weak boxes too;
        auto-labelling applies its own, higher threshold.
    max_boxes:
        Most boxes returned per image (the best-scored ones).
    mc_samples:
        T, the number of MC-dropout passes of :meth:`predict_samples` (read at predict time).
    augment:
        In training: random zoom (0.6-1.6x) and shift, mirror flips, colour-channel permutations and
        brightness / contrast changes (see :mod:`model.detection.engine`).
    device:
        ``"auto"``, ``"cpu"``, ``"cuda"``... (see :func:`model.device.select_device`).
    random_state:
        Seeds initialisation, batch order, augmentation, dropout and the MC masks; None draws fresh
        entropy at fit time. The same seed gives the same model on one device.
    init_weights:
        Optional path to an ``.npz`` of weights to start from (read with ``allow_pickle=False``).
        Arrays whose name or shape does not match (e.g. the output layer of another class count)
        keep their random initialisation.

    Attributes (after fit)
    ----------------------
    classes_: np.ndarray of str. weights_: dict of float32 arrays (the network).
    image_size_, dropout_: what the network was trained with. mc_seed_: seed of the MC masks.
    n_train_, n_boxes_: images and boxes trained on. n_steps_: optimiser steps taken.
    loss_curve_: mean training loss per epoch. fit_seconds_: wall time of the fit.
    """

    def __init__(
        self,
        classes: Sequence[str] = (),
        image_size: int = 96,
        epochs: int = 150,
        batch_size: int = 16,
        learning_rate: float = 5e-3,
        dropout: float = 0.2,
        score_threshold: float = 0.05,
        max_boxes: int = 50,
        mc_samples: int = 8,
        augment: bool = True,
        device: str = "auto",
        random_state: int | None = 0,
        init_weights: str | None = None,
        min_steps: int = MIN_STEPS,
        max_steps: int | None = MAX_STEPS,
    ):
        self.classes = classes
        self.image_size = image_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.score_threshold = score_threshold
        self.max_boxes = max_boxes
        self.mc_samples = mc_samples
        self.augment = augment
        self.device = device
        self.random_state = random_state
        self.init_weights = init_weights
        self.min_steps = min_steps
        self.max_steps = max_steps

    # ------------------------------------------------------------------ fit

    def fit(self, X: Sequence[Any], y: Sequence[Detections]) -> BoxDetector:
        """Train from scratch (or from ``init_weights``) on images ``X`` and their boxes ``y``.

        Images without boxes are allowed (they teach "background"). Raises ValueError for unknown
        labels, boxes that are not normalised xyxy, or bad hyper-parameters.
        """
        self._check_params()
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: {len(X)} != {len(y)}")
        if len(X) == 0:
            raise ValueError("cannot fit on zero images")
        classes = self._classes_for(y)
        index = {name: i for i, name in enumerate(classes)}
        boxes = [validate_boxes(d.boxes) for d in y]
        unknown = sorted({label for d in y for label in d.labels if label not in index})
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {classes}")
        labels = [np.asarray([index[label] for label in d.labels], dtype=np.int64) for d in y]
        pixels = resize_batch(X, int(self.image_size))  # checks the images before any state changes
        started = time.perf_counter()
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)  # a refit must not keep a previous fit's state
        seed = _seed(self.random_state)
        self.classes_ = np.asarray(classes, dtype=str)
        self.image_size_ = int(self.image_size)
        self.dropout_ = float(self.dropout)
        self.mc_seed_ = seed
        self.n_train_ = len(X)
        self.n_boxes_ = int(sum(len(b) for b in boxes))
        self.n_steps_ = self._n_steps(len(X))
        self.weights_, self.loss_curve_ = self._train(pixels, boxes, labels, seed)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _n_steps(self, n_images: int) -> int:
        """``epochs`` passes over the images, within [``min_steps``, ``max_steps``]."""
        from model.detection.engine import batch_bounds

        steps = int(self.epochs) * len(batch_bounds(n_images, int(self.batch_size)))
        steps = max(steps, int(self.min_steps))
        return min(steps, int(self.max_steps)) if self.max_steps is not None else steps

    def _train(
        self, pixels: np.ndarray, boxes: list[np.ndarray], labels: list[np.ndarray], seed: int
    ) -> tuple[dict[str, np.ndarray], list[float]]:
        from model.detection import engine, network
        from model.device import cpu_threads, select_device

        init = network.init_weights(len(self.classes_), np.random.default_rng(seed))
        if self.init_weights:
            _load_init(init, str(self.init_weights))
        config = engine.TrainConfig(
            n_classes=len(self.classes_),
            n_steps=self.n_steps_,
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate),
            dropout=self.dropout_,
            augment=bool(self.augment),
        )
        device = select_device(self.device)
        with cpu_threads(device):
            return engine.train(pixels, boxes, labels, config, init, seed, device)

    def _check_params(self) -> None:
        if int(self.image_size) < 32 or int(self.image_size) % 16:
            raise ValueError(f"image_size must be a multiple of 16 and >= 32, got {self.image_size!r}")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs!r} and {self.batch_size!r}")
        if int(self.min_steps) < 1 or (self.max_steps is not None and int(self.max_steps) < int(self.min_steps)):
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps!r} and {self.max_steps!r}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if int(self.max_boxes) < 1:
            raise ValueError(f"max_boxes must be >= 1, got {self.max_boxes!r}")

    def _classes_for(self, y: Sequence[Detections]) -> list[str]:
        classes = [str(c) for c in self.classes]
        if not classes:
            classes = sorted({label for d in y for label in d.labels})
        if not classes:
            raise ValueError("no classes: pass classes=... or at least one labelled box")
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate class names in {classes}")
        return classes

    # ------------------------------------------------------------------ inference

    def predict(self, X: Sequence[Any], score_threshold: float | None = None) -> list[Detections]:
        """Boxes per image with score >= ``score_threshold`` (default: the parameter), best first."""
        return self.predict_all(X, score_threshold=score_threshold).detections

    def predict_samples(self, X: Sequence[Any], n_samples: int | None = None) -> list[list[Detections]]:
        """Per image, the detections of T MC-dropout passes (T = ``n_samples`` or ``mc_samples``).

        Passes keep boxes scoring at least ``max(score_threshold, engine.SAMPLE_MIN_SCORE)`` (0.1).
        The same input gives the same samples (the masks are seeded at fit time); an image's
        samples depend on its position in ``X`` too, as in :mod:`model.torch_mlp`.
        """
        samples = self.predict_all(X, n_samples=self._n_samples(n_samples)).samples
        assert samples is not None
        return samples

    def score_items(self, strategy: Any, X: Sequence[Any], *, with_features: bool = False) -> Any:
        """The scoring kernel's entry (:func:`model.scoring.score`): per image its boxes, uncertainty and
        confidences, as a :class:`model.scored.Scored` (:func:`model.detection.kernel.score_boxes`)."""
        from model.detection.kernel import score_boxes

        return score_boxes(self, strategy, X, with_features=with_features)

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        """Pooled features (n, d) float64: mean of the deepest backbone map and of the head map,
        for diversity-aware queues and cold-start selection."""
        features = self.predict_all(X, with_features=True).features
        assert features is not None
        return features

    def predict_all(
        self, X: Sequence[Any], n_samples: int = 0, with_features: bool = False, score_threshold: float | None = None
    ) -> DetectorOutput:
        """One pass over ``X`` giving detections, and with ``n_samples > 0`` MC samples, and features.

        Uncertainty scoring needs detections and samples of the same images; this computes the
        backbone once for both (the samples repeat only the output layer).
        """
        from model.detection import engine
        from model.device import cpu_threads, select_device

        check_is_fitted(self, "weights_")
        if n_samples:
            n_samples = self._n_samples(n_samples)
        threshold = float(self.score_threshold if score_threshold is None else score_threshold)
        detections: list[Detections] = []
        samples: list[list[Detections]] | None = [] if n_samples else None
        features: list[np.ndarray] = []
        device = select_device(self.device)
        with cpu_threads(device):
            for chunk in engine.infer(
                self.weights_, X, image_size=self.image_size_, n_classes=len(self.classes_),
                k=int(self.max_boxes), threshold=threshold, n_samples=n_samples, dropout=self.dropout_,
                seed=self.mc_seed_, with_features=with_features, device=device, chunk_size=INFER_BATCH,
            ):
                n = len(chunk.boxes)
                detections.extend(self._select(chunk.boxes[i], chunk.objectness[i], chunk.class_probs[i], threshold)
                                  for i in range(n))
                if samples is not None:
                    b, o, p = chunk.sampled_boxes, chunk.sampled_objectness, chunk.sampled_class_probs
                    assert b is not None and o is not None and p is not None
                    samples.extend([self._select(b[t, i], o[t, i], p[t, i], threshold) for t in range(n_samples)]
                                   for i in range(n))
                if chunk.features is not None:
                    features.append(chunk.features)
        width = self.weights_["c7.w"].shape[0] + self.weights_["head.w"].shape[0]
        pooled = (np.concatenate(features) if features else np.zeros((0, width))) if with_features else None
        return DetectorOutput(detections, samples, pooled)

    def _select(self, boxes: np.ndarray, objectness: np.ndarray, probs: np.ndarray, threshold: float) -> Detections:
        """Candidates of one image -> :class:`Detections`: score = objectness x top class probability,
        at least ``threshold``, non-degenerate, per-class NMS, at most ``max_boxes``, best first."""
        top = probs.argmax(axis=1)
        scores = objectness * probs.max(axis=1)
        keep = np.flatnonzero((scores >= threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        if keep.size == 0:
            return Detections.empty(len(self.classes_))
        kept = keep[nms(boxes[keep], scores[keep], NMS_IOU, groups=top[keep])][: int(self.max_boxes)]
        names = [str(self.classes_[j]) for j in top[kept]]
        return Detections(boxes[kept], names, scores[kept], probs[kept])

    def _n_samples(self, n_samples: int | None) -> int:
        value = self.mc_samples if n_samples is None else n_samples
        if isinstance(value, bool) or int(value) < 1:
            raise ValueError(f"n_samples must be >= 1, got {value!r}")
        return int(value)

    def save_weights(self, path: str) -> None:
        """Write the fitted network as an ``.npz`` that ``init_weights`` accepts (warm starts)."""
        check_is_fitted(self, "weights_")
        np.savez(path, **self.weights_)


def _load_init(init: dict[str, np.ndarray], path: str) -> None:
    """Overwrite ``init`` with the matching arrays of the ``.npz`` at ``path`` (no pickles)."""
    with np.load(path, allow_pickle=False) as data:
        for name in data.files:
            if name in init and data[name].shape == init[name].shape:
                init[name] = data[name].astype(np.float32)


def _seed(random_state: int | None) -> int:
    """An int seed for numpy / torch generators; fresh OS entropy when ``random_state`` is None."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(33))
    return int(random_state)
