"""The torch MLP behind ChoiceClassifier(model="mlp") and its Monte-Carlo dropout samples."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from model.estimators import ChoiceClassifier
from model.torch_mlp import MLPParams, _dropout_mask, batch_bounds
from model.uncertainty import uncertainty_for
from tests.support.corpus import CLASSES, HELD_OUT, LABELS, TEXTS

DIGIT_CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def text_mlp():
    return ChoiceClassifier(classes=CLASSES, model="mlp", n_samples=8).fit(TEXTS, LABELS)


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = list(np.round(data.images * (255.0 / 16.0)).astype(np.uint8))
    return images, [str(t) for t in data.target]


@pytest.fixture(scope="module")
def digits_mlp(digits):
    images, labels = digits
    return ChoiceClassifier(modality="image", classes=DIGIT_CLASSES, model="mlp").fit(images[:400], labels[:400])


def test_text_mlp_learns_and_keeps_contract(text_mlp):
    assert text_mlp.kind_ == "mlp"
    assert text_mlp.predict_labels(TEXTS) == [[label] for label in LABELS]
    held_texts, held_labels = zip(*HELD_OUT, strict=True)
    assert text_mlp.predict(list(held_texts)).tolist() == list(held_labels)
    proba = text_mlp.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), len(CLASSES)) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(proba[:, 3], 0.0)  # "weather" never labelled
    assert text_mlp.labels_from_proba(proba) == text_mlp.predict_labels(TEXTS)


def test_digits_mlp_accuracy_above_chance(digits, digits_mlp):
    images, labels = digits
    predicted = digits_mlp.predict(images[1000:1400])
    assert np.mean(predicted == np.array(labels[1000:1400])) > 0.8  # chance is 0.1


def test_mc_dropout_shapes_and_sample_properties(digits, digits_mlp):
    images, _ = digits
    samples = digits_mlp.predict_proba_samples(images[:30])
    assert samples.shape == (20, 30, 10) and samples.dtype == np.float64
    np.testing.assert_allclose(samples.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    # the T passes are stochastic: samples differ from each other and from the deterministic pass
    assert np.abs(samples - samples[0]).max() > 1e-3
    assert np.abs(samples.std(axis=0)).mean() > 1e-4
    # ... yet centred on it: the MC mean is close to the dropout-off prediction
    assert np.abs(samples.mean(axis=0) - digits_mlp.predict_proba(images[:30])).mean() < 0.05
    assert digits_mlp.predict_proba_samples([]).shape == (20, 0, 10)


def test_mc_dropout_deterministic_under_seed(digits, digits_mlp):
    images, labels = digits
    again = digits_mlp.predict_proba_samples(images[:25])
    np.testing.assert_array_equal(again, digits_mlp.predict_proba_samples(images[:25]))
    twin = ChoiceClassifier(modality="image", classes=DIGIT_CLASSES, model="mlp").fit(images[:400], labels[:400])
    np.testing.assert_array_equal(twin.net_["w0"], digits_mlp.net_["w0"])
    np.testing.assert_array_equal(twin.predict_proba_samples(images[:25]), again)
    other = ChoiceClassifier(modality="image", classes=DIGIT_CLASSES, model="mlp", random_state=1)
    other.fit(images[:400], labels[:400])
    assert not np.array_equal(other.predict_proba_samples(images[:25]), again)


def test_a_tasks_mc_samples_do_not_depend_on_its_batch(digits, digits_mlp, monkeypatch):
    # /predict scores a task the same whichever tasks share its request or its memory chunk.
    import model.mlp_inference as mlp_inference

    # The tolerance is float32 BLAS's, not the masks': a dense float32 product may sum in another order
    # for another batch shape (4e-6 apart, measured with OpenBLAS); another task's mask moves a
    # probability by 1e-2 or more.
    images, _ = digits
    together = digits_mlp.predict_proba_samples(images[:50])
    np.testing.assert_allclose(digits_mlp.predict_proba_samples(images[10:20]), together[:, 10:20], atol=1e-4)
    monkeypatch.setattr(mlp_inference, "MC_CHUNK_ELEMENTS", 128 * 20 * 7)  # 7 rows per chunk
    np.testing.assert_allclose(digits_mlp.predict_proba_samples(images[:50]), together, atol=1e-4)


def test_global_torch_rng_untouched(digits):
    images, labels = digits
    state = torch.random.get_rng_state()
    clf = ChoiceClassifier(modality="image", classes=DIGIT_CLASSES, model="mlp", epochs=1).fit(images[:50], labels[:50])
    clf.predict_proba_samples(images[:5])
    assert torch.equal(state, torch.random.get_rng_state())


def test_n_samples_is_read_at_predict_time(text_mlp):
    assert text_mlp.predict_proba_samples(TEXTS[:3]).shape == (8, 3, 4)
    text_mlp.set_params(n_samples=3)
    try:
        assert text_mlp.predict_proba_samples(TEXTS[:3]).shape == (3, 3, 4)
        text_mlp.set_params(n_samples=0)
        with pytest.raises(ValueError, match="n_samples"):
            text_mlp.predict_proba_samples(TEXTS[:3])
    finally:
        text_mlp.set_params(n_samples=8)


def test_chunking_gives_the_same_samples_shapes(digits, digits_mlp, monkeypatch):
    # Chunks bound memory; the deterministic pass must not depend on the chunk size.
    import model.mlp_inference as mlp_inference

    images, _ = digits
    full = digits_mlp.predict_proba(images[:50])
    monkeypatch.setattr(mlp_inference, "MC_CHUNK_ELEMENTS", 128 * 20 * 7)  # 7 rows per chunk
    np.testing.assert_allclose(digits_mlp.predict_proba(images[:50]), full, rtol=0, atol=1e-6)
    assert digits_mlp.predict_proba_samples(images[:50]).shape == (20, 50, 10)


def test_single_seen_class_is_constant():
    clf = ChoiceClassifier(classes=CLASSES, model="mlp").fit(TEXTS[:3], ["sports"] * 3)
    assert clf.net_ is None
    np.testing.assert_array_equal(clf.predict_proba(["anything", "the senate"]), [[1.0, 0.0, 0.0, 0.0]] * 2)
    samples = clf.predict_proba_samples(["anything"])
    assert samples.shape == (20, 1, 4)
    np.testing.assert_array_equal(samples, np.tile([1.0, 0.0, 0.0, 0.0], (20, 1, 1)))


def test_multi_label_mlp_with_constant_columns():
    classes = ["sports", "politics", "tech", "news", "weather"]
    y = [[label, "news"] for label in LABELS]  # "news" always positive, "weather" never
    clf = ChoiceClassifier(classes=classes, multi_label=True, model="mlp", n_samples=6).fit(TEXTS, y)
    assert clf.label_varies_.tolist() == [True, True, True, False, False]
    proba = clf.predict_proba(TEXTS)
    n = len(TEXTS)
    np.testing.assert_allclose(proba[:, 4], 1 / (n + 2))
    np.testing.assert_allclose(proba[:, 3], (n + 1) / (n + 2))
    assert clf.predict_labels(TEXTS) == [[label, "news"] for label in LABELS]
    samples = clf.predict_proba_samples(TEXTS)
    assert samples.shape == (6, n, 5)
    np.testing.assert_allclose(samples[..., 4], 1 / (n + 2))
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    probs, u = uncertainty_for(clf, "bald", TEXTS)
    assert probs.shape == (n, 5) and u.shape == (n,) and (u >= 0).all() and (u <= 1).all()


def test_uncertainty_for_mlp_shapes(digits, digits_mlp):
    images, _ = digits
    probs, u = uncertainty_for(digits_mlp, "bald", images[:40])
    np.testing.assert_allclose(probs, digits_mlp.predict_proba_samples(images[:40]).mean(axis=0))
    assert u.shape == (40,) and u.min() >= 0.0 and u.max() <= 1.0
    probs2, u2 = uncertainty_for(digits_mlp, "entropy", images[:40])
    np.testing.assert_array_equal(probs2, digits_mlp.predict_proba(images[:40]))
    assert u2.shape == (40,)


@pytest.mark.parametrize(
    "param,value",
    [("dropout", 1.0), ("dropout", -0.1), ("hidden_size", 0), ("epochs", 0), ("lr", 0.0), ("batch_size", 0)],
)
def test_bad_hyper_parameters_raise(param, value):
    with pytest.raises(ValueError, match=param):
        ChoiceClassifier(classes=["a", "b"], model="mlp", **{param: value}).fit(["x", "y"], ["a", "b"])


def test_dropout_mask_rate_and_scale():
    generator = torch.Generator().manual_seed(0)
    mask = _dropout_mask((200, 500), 0.5, generator, torch.device("cpu"))
    assert set(torch.unique(mask).tolist()) == {0.0, 2.0}
    assert abs((mask == 0).float().mean().item() - 0.5) < 0.01
    assert abs(mask.mean().item() - 1.0) < 0.02  # inverted dropout keeps the expectation
    mask = _dropout_mask((200, 500), 0.1, generator, torch.device("cpu"))
    assert abs((mask == 0).float().mean().item() - 26 / 256) < 0.01


def test_defaults_match_mlp_params():
    clf = ChoiceClassifier()
    defaults = MLPParams()
    for name in ("hidden_size", "dropout", "epochs", "lr", "weight_decay", "batch_size"):
        assert getattr(clf, name) == getattr(defaults, name)


def test_refit_as_another_kind_drops_old_state():
    clf = ChoiceClassifier(classes=CLASSES).fit(TEXTS, LABELS)
    assert clf.model_ is not None
    clf.set_params(model="mlp", epochs=1).fit(TEXTS, LABELS)
    assert clf.kind_ == "mlp" and not hasattr(clf, "model_")
    assert clf.predict_proba_samples(TEXTS[:2]).shape == (20, 2, 4)


@pytest.mark.parametrize("n", [1, 2, 5, 63, 64, 65, 127, 128, 129, 130, 200, 256, 257, 258, 260, 1000])
@pytest.mark.parametrize("batch_size", [1, 3, 64, 128])
def test_batch_bounds_cover_every_row_without_short_batches(n, batch_size):
    bounds = batch_bounds(n, batch_size)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # contiguous: each row once
    sizes = [stop - start for start, stop in bounds]
    assert len(sizes) == -(-n // batch_size)  # as many steps as plain slicing takes
    assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
    assert min(sizes) >= min(batch_size, n) // 2


@pytest.mark.parametrize("n", [129, 130, 258])
def test_no_optimiser_step_on_a_tiny_trailing_batch(digits, n, monkeypatch):
    # n = k * 128 + 1 or + 2 used to end every epoch with a step on 1-2 rows.
    import model.torch_mlp as torch_mlp

    sizes = []
    original = torch_mlp.F.cross_entropy

    def recording(logits, target, *args, **kwargs):
        sizes.append(logits.shape[0])
        return original(logits, target, *args, **kwargs)

    monkeypatch.setattr(torch_mlp.F, "cross_entropy", recording)
    images, labels = digits
    ChoiceClassifier(modality="image", classes=DIGIT_CLASSES, model="mlp", epochs=1).fit(images[:n], labels[:n])
    assert sizes and sum(sizes) % n == 0  # whole epochs: every row used equally often
    assert min(sizes) >= 128 // 2


def test_row_adam_is_sparse_adams_update_on_the_touched_rows():
    """RowAdam must train w0 exactly as torch's SparseAdam did: same moments, bias correction, lazy rows."""
    import scipy.sparse as sp

    from model.torch_mlp import RowAdam, _gathered_input, _hidden, _sparse_input

    rng = np.random.default_rng(0)
    start = torch.tensor(rng.normal(size=(40, 6)), dtype=torch.float32)
    b0 = torch.zeros(6)
    reference = start.clone().requires_grad_()
    sparse_adam = torch.optim.SparseAdam([reference], lr=0.01)
    rows = start.clone()
    row_adam = RowAdam(rows, lr=0.01)
    for step in range(12):  # each batch touches a few of the first 30 columns; the last 10 never
        batch = sp.random(5, 30, density=0.1, format="csr", random_state=step, dtype=np.float32)
        batch.resize((5, 40))
        target = torch.tensor(rng.normal(size=(5, 6)), dtype=torch.float32)
        sparse_adam.zero_grad()
        indices, offsets, values = _sparse_input(batch, torch.device("cpu"))
        pre = torch.nn.functional.embedding_bag(indices, reference, offsets, mode="sum",
                                                per_sample_weights=values, sparse=True)
        ((torch.relu(pre + b0) - target) ** 2).sum().backward()
        sparse_adam.step()
        x, touched = _gathered_input(batch, torch.device("cpu"))
        w0 = rows.index_select(0, touched).requires_grad_()
        ((_hidden(x, w0, b0) - target) ** 2).sum().backward()
        row_adam.step(touched, w0.grad)
    untouched = (rows == start).all(dim=1)
    assert bool(untouched[30:].all()) and not bool(untouched[:30].all())  # rows outside every batch stay
    torch.testing.assert_close(rows, reference.detach(), rtol=1e-5, atol=1e-6)


def test_numpy_inference_is_the_torch_forward(digits, digits_mlp, text_mlp):
    """Serving scores in numpy (no torch import); the GPU path (torch) must give the same probabilities."""
    from model.mlp_inference import mlp_proba_numpy
    from model.torch_mlp import mlp_proba

    images, _ = digits
    cases = [(digits_mlp, digits_mlp.features_.transform(images[:40])),
             (text_mlp, text_mlp.features_.transform(TEXTS[:12]))]
    for model, features in cases:
        for n_samples in (None, 20):
            kwargs = {"multi_label": False, "n_samples": n_samples, "dropout": model.net_dropout_,
                      "seed": model.mc_seed_}
            np.testing.assert_allclose(mlp_proba_numpy(model.net_, features, **kwargs),
                                       mlp_proba(model.net_, features, device=torch.device("cpu"), **kwargs),
                                       rtol=0, atol=1e-5)


def test_a_serving_process_scores_an_mlp_without_importing_torch(tmp_path):
    """torch costs a worker ~180 MB: loading and scoring a saved text MLP must not import it (nor may any
    label family's model modules, which a serving worker imports to load model files)."""
    import subprocess
    import sys

    from model import persistence

    clf = ChoiceClassifier(modality="text", classes=CLASSES, model="mlp", epochs=2).fit(TEXTS, LABELS)
    path = tmp_path / "model.bin"
    path.write_bytes(persistence.dumps(clf))
    script = ("import sys; from pathlib import Path; from model import persistence; "
              "from backend.labelstudio.families import import_model_modules; import_model_modules(); "
              f"m = persistence.loads(Path({str(path)!r}).read_bytes()); "
              "print(m.predict_proba_samples(['a great film']).shape, 'torch' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "LABELLOOP_DEVICE"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert done.stdout.split()[-1] == "False", done.stdout + done.stderr
