import time

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from model.features import PixelFeatures, RBFImageFeatures, make_image_features, make_text_features
from model.persistence import dumps, loads


def _short_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}ord{i % 7}" for i in range(2000)]
    return [" ".join(rng.choice(vocab, size=rng.integers(4, 12))) for _ in range(n)]


# ----------------------------------------------------------------- text


def test_text_features_shape_and_normalisation():
    f = make_text_features(random_state=0)
    X = f.fit_transform(["The cat sat", "a dog barked loudly", "cat and dog"])
    assert sp.issparse(X)
    assert X.shape[0] == 3
    # Two L2-normalised blocks (word, char) -> every non-empty row has squared norm 2.
    np.testing.assert_allclose(np.asarray(X.multiply(X).sum(axis=1)).ravel(), 2.0)


def test_text_features_lowercase_and_bigrams():
    f = make_text_features().fit(["Good movie", "bad movie"])
    a, b = f.transform(["GOOD MOVIE"]), f.transform(["good movie"])
    assert (a != b).nnz == 0
    names = set(f.get_feature_names_out())
    assert "word__good movie" in names
    assert any(n.startswith("char__") for n in names)


def test_char_ngrams_generalise_to_unseen_inflections():
    f = make_text_features().fit(["refund my order", "where is my parcel"])
    # "refunds" / "parcels" are unseen words; only the char block can relate them.
    X = f.transform(["refunds", "parcels"]).toarray()
    train = f.transform(["refund my order", "where is my parcel"]).toarray()
    assert X[0] @ train[0] > X[0] @ train[1]
    assert X[1] @ train[1] > X[1] @ train[0]


def test_text_transform_is_fast():
    f = make_text_features().fit(_short_texts(3000, seed=1))
    texts = _short_texts(1000, seed=2)
    best = min(_timed(f.transform, texts) for _ in range(3))
    # Target is well under 0.1 s; the bound is loose so a busy CI box does not flake.
    assert best < 0.5


def _timed(fn, arg) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


# ----------------------------------------------------------------- pixels


def test_pixel_features_mixed_shapes_and_sizes():
    rgb = np.zeros((10, 30, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    images = [
        np.zeros((5, 7), np.uint8),
        np.full((3, 3, 1), 255, np.uint8),
        rgb,
        np.full((40, 20, 4), 255, np.uint8),
    ]
    X = PixelFeatures(size=16).transform(images)
    assert X.shape == (4, 16 * 16 * 3)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X[0], 0.0)
    np.testing.assert_array_equal(X[1], 1.0)
    np.testing.assert_array_equal(X[2].reshape(-1, 3), np.tile([1.0, 0.0, 0.0], (256, 1)))
    np.testing.assert_array_equal(X[3], 1.0)


def test_pixel_features_grayscale_and_size():
    X = PixelFeatures(size=4, grayscale=True).transform([np.full((9, 9, 3), 51, np.uint8)])
    assert X.shape == (1, 16)
    np.testing.assert_allclose(X, 0.2, atol=1e-6)


def test_pixel_features_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent
    X = PixelFeatures(size=2).transform([rgba])
    np.testing.assert_array_equal(X, 1.0)


def test_pixel_features_resize_averages():
    left_black_right_white = np.zeros((8, 8), np.uint8)
    left_black_right_white[:, 4:] = 255
    X = PixelFeatures(size=2, grayscale=True).transform([left_black_right_white])
    np.testing.assert_allclose(X.reshape(2, 2), [[0.0, 1.0], [0.0, 1.0]])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4,), np.uint8),
        np.zeros((0, 4), np.uint8),
    ],
)
def test_pixel_features_rejects_bad_images(image):
    with pytest.raises(ValueError, match="image 1"):
        PixelFeatures().transform([np.zeros((4, 4), np.uint8), image])


def test_pixel_features_is_stateless_and_empty_ok():
    pf = PixelFeatures(size=3)
    assert pf.fit([np.zeros((2, 2), np.uint8)]) is pf
    assert not [k for k in vars(pf) if k.endswith("_")]
    assert clone(pf).get_params() == {"size": 3, "grayscale": False}
    assert PixelFeatures(size=3, grayscale=True).transform([]).shape == (0, 9)
    with pytest.raises(ValueError, match="size"):
        PixelFeatures(size=0).transform([])


def test_pixel_features_skops_round_trip():
    pf = PixelFeatures(size=5, grayscale=True)
    again = loads(dumps(pf))
    assert isinstance(again, PixelFeatures)
    assert again.get_params() == pf.get_params()


# ----------------------------------------------------------------- RBF kernel features


def _images(n: int, seed: int = 0, shape=(8, 8)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]


def _digits(n: int) -> tuple[list[np.ndarray], list[str]]:
    """``n`` of scikit-learn's digits in a fixed random order (the file is sorted by writer)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rows = np.random.default_rng(0).permutation(len(data.target))[:n]
    images = list(np.rint(data.images[rows] * (255.0 / 16.0)).astype(np.uint8))
    return images, [str(t) for t in data.target[rows]]


def test_rbf_features_reproduce_the_kernel_on_training_rows():
    images = _images(40)
    f = RBFImageFeatures(rcond=0.0).fit(images)
    X = f.transform(images)
    assert X.dtype == np.float64 and X.shape == (40, f.n_features_out)
    pixels = PixelFeatures().transform(images).astype(np.float64)
    # gamma: scikit-learn's "scale" heuristic from the training pixels
    assert f.gamma_ == pytest.approx(1.0 / (pixels.shape[1] * pixels.var()))
    # landmarks are stored as uint8 and give back exactly the pixel features
    assert f.landmarks_.dtype == np.uint8
    np.testing.assert_array_equal(f.landmarks_.astype(np.float32) / 255.0, np.unique(pixels.astype(np.float32), axis=0))
    sq = ((pixels[:, None, :] - pixels[None, :, :]) ** 2).sum(axis=-1)
    # float32 distances: kernel values to ~1e-5
    np.testing.assert_allclose(X @ X.T, np.exp(-f.gamma_ * sq), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=2e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_rbf_features_fit_on_a_handful_of_rows(n):
    images = _images(n, shape=(5, 7, 3))
    f = make_image_features(random_state=0).fit(images)
    X = f.transform(_images(4, seed=1, shape=(9, 9)))  # other sizes and channels are fine
    assert X.shape == (4, f.n_features_out) and 1 <= f.n_features_out <= n
    assert np.isfinite(X).all()
    assert f.transform([]).shape == (0, f.n_features_out)


def test_rbf_features_blank_and_duplicate_images():
    blank = np.zeros((6, 6), np.uint8)
    f = RBFImageFeatures().fit([blank, blank, blank])
    assert f.gamma_ == pytest.approx(1.0 / (16 * 16 * 3))  # no pixel variance: fallback gamma
    assert f.landmarks_.shape[0] == 1  # duplicates are one landmark
    assert np.isfinite(f.transform(_images(3))).all()
    a, b = _images(2)
    nearly_a = a.copy()
    nearly_a[0, 0] ^= 1  # a near-duplicate: a tiny kernel eigenvalue, cut instead of amplified
    X = RBFImageFeatures().fit([a, nearly_a, b]).transform(_images(20, seed=3))
    assert np.abs(X).max() < 10


def test_rbf_features_landmark_cap_and_determinism():
    images = _images(60)
    f = RBFImageFeatures(max_landmarks=25, random_state=3).fit(images)
    assert f.landmarks_.shape[0] == 25 and f.n_features_out <= 25
    same = RBFImageFeatures(max_landmarks=25, random_state=3).fit(images)
    np.testing.assert_array_equal(f.transform(images[:5]), same.transform(images[:5]))
    other = RBFImageFeatures(max_landmarks=25, random_state=4).fit(images)
    assert not np.array_equal(other.landmarks_, f.landmarks_)
    # below the cap every (distinct) row is a landmark, whatever the seed and the row order
    full = RBFImageFeatures(random_state=1).fit(images)
    shuffled = RBFImageFeatures(random_state=2).fit(images[::-1])
    np.testing.assert_array_equal(full.transform(images[:5]), shuffled.transform(images[:5]))


@pytest.mark.parametrize(
    "param,value", [("max_landmarks", 0), ("max_landmarks", 2.5), ("gamma_scale", 0.0), ("rcond", 1.0)]
)
def test_rbf_features_bad_parameters(param, value):
    with pytest.raises(ValueError, match=param):
        RBFImageFeatures(**{param: value}).fit(_images(3))


def test_rbf_features_unfitted_and_empty():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RBFImageFeatures().transform(_images(1))
    with pytest.raises(ValueError, match="zero images"):
        RBFImageFeatures().fit([])
    with pytest.raises(ValueError, match="image 1"):
        RBFImageFeatures().fit([np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.float32)])


def test_rbf_features_beat_pixels_for_a_linear_model_on_digits():
    from sklearn.linear_model import LogisticRegression

    # 300 random training rows: 94.4 % on pixels, 96.6 % on RBF features
    images, labels = _digits(1797)
    train, test = slice(0, 300), slice(1000, 1797)
    scores = {}
    for name, f in {"pixels": PixelFeatures(), "rbf": RBFImageFeatures()}.items():
        f.fit(images[train])
        model = LogisticRegression(C=10.0, max_iter=1000).fit(f.transform(images[train]), labels[train])
        scores[name] = model.score(f.transform(images[test]), labels[test])
    assert scores["rbf"] > scores["pixels"] + 0.01


def test_rbf_features_transform_is_fast():
    images, _ = _digits(1000)
    f = RBFImageFeatures().fit(images)  # 1,000 landmarks: the cap
    best = min(_timed(f.transform, images) for _ in range(3))
    # ~40 ms on one core (pixels ~17 ms of it); the bound is loose for a busy CI box.
    assert best < 0.5


def test_rbf_features_round_trip_in_the_native_format():
    import io
    import zipfile

    from model import arrays_io

    images = _images(12)
    f = RBFImageFeatures(max_landmarks=8, random_state=0).fit(images)
    data = dumps(f)
    assert arrays_io.is_native(zipfile.ZipFile(io.BytesIO(data)).namelist())
    again = loads(data)
    assert again.get_params() == f.get_params()
    np.testing.assert_array_equal(again.transform(images), f.transform(images))
