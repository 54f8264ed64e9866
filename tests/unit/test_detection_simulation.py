"""Active-learning replay for detection (model.detection.simulation), at a toy size."""

import numpy as np
import pytest

from model.detection.simulation import (
    aggregate_curves,
    initial_images,
    labels_to_reach,
    run_detection_curve,
    split_images,
)
from model.detection.synthetic import make_scenes

TINY = dict(image_size=32, epochs=1, batch_size=8, min_steps=8, max_steps=8)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(24, seed=2, classes=("square", "circle"), min_size=40, max_size=48, clutter=0)


def test_split_and_initial_draw_depend_on_the_seed_only(scenes):
    _, targets = scenes
    pool, test = split_images(24, 8, seed=1)
    assert len(test) == 8 and len(pool) == 16 and not set(pool) & set(test)
    np.testing.assert_array_equal(split_images(24, 8, seed=1)[1], test)
    assert not np.array_equal(split_images(24, 8, seed=2)[1], test)
    first = initial_images([targets[i] for i in pool], 4, seed=1)
    np.testing.assert_array_equal(first, initial_images([targets[i] for i in pool], 4, seed=1))
    assert any(len(targets[pool[i]]) for i in first)
    with pytest.raises(ValueError):
        split_images(24, 24, seed=0)


def test_curves_share_the_grid_and_the_start(scenes):
    images, targets = scenes
    common = dict(seed=0, initial=4, batch_size=3, budget=7, test_size=8, detector_params=TINY,
                  warm_start_steps=4)
    random_arm = run_detection_curve(images, targets, "random", **common)
    entropy_arm = run_detection_curve(images, targets, "entropy", **common)
    assert random_arm["labels"] == entropy_arm["labels"] == [4, 7]
    # the first round trains the same detector on the same images in both arms
    assert random_arm["map50"][0] == entropy_arm["map50"][0]
    for curve in (random_arm, entropy_arm):
        assert len(curve["map50"]) == len(curve["map50_95"]) == len(curve["fit_seconds"]) == 2
        assert all(0.0 <= m <= 1.0 for m in curve["map50"])
        assert curve["boxes_labelled"] == sorted(curve["boxes_labelled"])
    summary = aggregate_curves([random_arm, entropy_arm])
    assert summary["labels"] == [4, 7] and len(summary["map50_std"]) == 2


def test_labels_to_reach():
    curve = {"labels": [10, 20, 30], "map50": [0.1, 0.35, 0.3]}
    assert labels_to_reach(curve, 0.3) == 20
    assert labels_to_reach(curve, 0.5) is None
    assert labels_to_reach({"labels": [10, 20], "map50_mean": [0.2, 0.4]}, 0.4) == 20
