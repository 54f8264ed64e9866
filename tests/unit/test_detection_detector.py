"""BoxDetector: learning, output contract, MC samples, persistence, determinism (model.detection.detector).

Tiny images (32-48 px) and few steps keep the file at a few seconds; the learning bar is low but far
above what an untrained network scores (mAP@0.5 ~ 0).
"""

import zipfile
from io import BytesIO

import numpy as np
import pytest

from model import arrays_io, persistence
from model.detection import BoxDetector, Detections, evaluate_detections
from model.detection.synthetic import make_scenes

CLASSES = ("square", "circle")
SCENE = dict(classes=CLASSES, min_size=40, max_size=56, clutter=0, noise=0.0, blur=0.0, max_objects=2,
             backgrounds=("flat", "gradient"), object_sizes=(0.3, 0.55), empty_fraction=0.1)
FAST = dict(classes=CLASSES, image_size=32, epochs=1, batch_size=8, learning_rate=5e-3, min_steps=20)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(72, seed=11, **SCENE)


@pytest.fixture(scope="module")
def trained(scenes):
    images, targets = scenes
    return BoxDetector(classes=CLASSES, image_size=32, epochs=1, batch_size=12, min_steps=240,
                       max_steps=240).fit(images[:48], targets[:48])


def test_learns_simple_scenes(scenes, trained):
    images, targets = scenes
    held_out = evaluate_detections(targets[48:], trained.predict(images[48:]), CLASSES)
    assert held_out["map50"] > 0.15, held_out  # measured 0.3; an untrained network scores ~0
    assert trained.loss_curve_[-1] < 0.5 * trained.loss_curve_[0]
    untrained = BoxDetector(**{**FAST, "learning_rate": 1e-9}).fit(images[:8], targets[:8])
    assert evaluate_detections(targets[48:], untrained.predict(images[48:]), CLASSES)["map50"] < 0.1


def test_fitted_state_is_numpy_only(trained):
    assert list(trained.classes_) == list(CLASSES)
    assert trained.n_train_ == 48 and trained.n_steps_ == 240
    for name, value in vars(trained).items():
        assert type(value).__module__ in ("builtins", "numpy"), name
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in trained.weights_.values())


def test_predict_contract(scenes, trained):
    images, _ = scenes
    mixed = [images[50], images[51][:, :, 0], np.dstack([images[52], np.full(images[52].shape[:2], 255, np.uint8)]),
             np.zeros((20, 70, 3), np.uint8)]  # RGB, grey, RGBA, odd size
    predictions = trained.predict(mixed)
    assert len(predictions) == 4
    for d in predictions:
        assert isinstance(d, Detections) and len(d) <= trained.max_boxes
        assert np.all((d.boxes >= 0) & (d.boxes <= 1))
        assert np.all(d.boxes[:, 2] > d.boxes[:, 0]) and np.all(d.boxes[:, 3] > d.boxes[:, 1])
        assert np.all((d.scores >= trained.score_threshold) & (d.scores <= 1))
        assert np.all(np.diff(d.scores) <= 0)  # best first
        assert d.class_probs.shape == (len(d), 2)
        np.testing.assert_allclose(d.class_probs.sum(axis=1), 1.0, atol=1e-9)
        assert d.labels == [CLASSES[j] for j in d.class_probs.argmax(axis=1)]
    assert len(trained.predict(mixed, score_threshold=0.5)[0]) <= len(predictions[0])
    assert trained.predict([]) == []


def test_mc_samples_are_stochastic_and_reproducible(scenes, trained):
    images, _ = scenes
    samples = trained.predict_samples(images[48:54], n_samples=5)
    assert len(samples) == 6 and all(len(per_image) == 5 for per_image in samples)
    assert all(isinstance(d, Detections) for per_image in samples for d in per_image)
    scores = [np.sort(d.scores)[::-1][:1] for per_image in samples for d in per_image if len(d)]
    assert np.std(np.concatenate(scores)) > 0  # passes differ
    again = trained.predict_samples(images[48:54], n_samples=5)
    for a, b in zip(samples[0], again[0], strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
    assert len(trained.predict_samples(images[48:50])[0]) == trained.mc_samples
    with pytest.raises(ValueError):
        trained.predict_samples(images[:2], n_samples=0)


def test_transform_features(scenes, trained):
    images, _ = scenes
    features = trained.transform(images[:5])
    assert features.dtype == np.float64 and features.shape[0] == 5 and features.shape[1] > 16
    assert np.all(np.isfinite(features)) and features.std(axis=0).max() > 0


def test_persistence_round_trip_predicts_identically(scenes, trained):
    images, _ = scenes
    blob = persistence.dumps(trained)
    with zipfile.ZipFile(BytesIO(blob)) as zf:
        assert arrays_io.is_native(zf.namelist())  # the safe native format, not the skops fallback
    loaded = persistence.loads(blob)
    assert type(loaded) is BoxDetector
    for a, b in zip(trained.predict(images[48:60]), loaded.predict(images[48:60]), strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.labels == b.labels
    a, b = trained.predict_samples(images[48:50], 3), loaded.predict_samples(images[48:50], 3)
    np.testing.assert_array_equal(a[1][2].boxes, b[1][2].boxes)


def test_same_seed_same_model_other_seed_other_model(scenes):
    images, targets = scenes
    one = BoxDetector(**FAST, random_state=3).fit(images[:10], targets[:10])
    two = BoxDetector(**FAST, random_state=3).fit(images[:10], targets[:10])
    other = BoxDetector(**FAST, random_state=4).fit(images[:10], targets[:10])
    for name, value in one.weights_.items():
        np.testing.assert_array_equal(value, two.weights_[name])
    assert any(not np.array_equal(v, other.weights_[k]) for k, v in one.weights_.items())


def test_images_without_boxes(scenes):
    images, targets = scenes
    nothing = [Detections.empty() for _ in range(6)]
    fitted = BoxDetector(**FAST).fit(images[:6], nothing)  # background only: allowed
    assert fitted.n_boxes_ == 0 and list(fitted.classes_) == list(CLASSES)
    mixed = BoxDetector(**FAST).fit(images[:6], [targets[0], *nothing[:5]])
    assert mixed.n_boxes_ == len(targets[0])


def test_classes_from_labels_when_not_given(scenes):
    images, targets = scenes
    fitted = BoxDetector(**{**FAST, "classes": ()}).fit(images[:8], targets[:8])
    assert list(fitted.classes_) == sorted({label for t in targets[:8] for label in t.labels})


def test_init_weights_warm_start(tmp_path, scenes, trained):
    images, targets = scenes
    path = tmp_path / "weights.npz"
    trained.save_weights(str(path))
    warm = BoxDetector(**FAST, init_weights=str(path)).fit(images[:8], targets[:8])
    cold = BoxDetector(**FAST).fit(images[:8], targets[:8])
    assert warm.loss_curve_[0] < cold.loss_curve_[0]


def test_bad_input_raises(scenes):
    images, targets = scenes
    with pytest.raises(ValueError, match="not among the classes"):
        BoxDetector(**{**FAST, "classes": ("square",)}).fit(images[:4], targets[:4])
    with pytest.raises(ValueError, match="normalised"):
        BoxDetector(**FAST).fit(images[:1], [Detections.ground_truth([[10, 10, 40, 40]], ["square"])])
    with pytest.raises(ValueError, match="no classes"):
        BoxDetector(**{**FAST, "classes": ()}).fit(images[:2], [Detections.empty(), Detections.empty()])
    with pytest.raises(ValueError, match="image_size"):
        BoxDetector(**{**FAST, "image_size": 40}).fit(images[:2], targets[:2])
    with pytest.raises(ValueError, match="lengths"):
        BoxDetector(**FAST).fit(images[:2], targets[:3])
    with pytest.raises(ValueError, match="shape"):
        BoxDetector(**FAST).fit([np.zeros((4, 4, 2), np.uint8)], [Detections.empty()])
