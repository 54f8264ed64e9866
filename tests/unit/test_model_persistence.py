import collections
import fractions
import hashlib
import io
import json
import math
import pickle
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.datasets._openml  # noqa: F401  (imported so its re-export of urllib's Request resolves)
import skops.io as sio
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import FunctionTransformer

from backend.store.artifacts import ModelStore
from model import arrays_io
from model.arrays_io import class_name
from model.estimators import ChoiceClassifier
from model.persistence import UntrustedModelError, dumps, is_allowed, loads

TEXTS = ["good film", "great movie", "bad film", "awful movie", "fine I guess"]
QUERIES = TEXTS + ["unseen words", "y"]
SINGLE = ["pos", "pos", "neg", "neg", "meh"]
MULTI = [["a"], ["a", "b"], [], ["b"], ["a"]]


def is_native(data: bytes) -> bool:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return arrays_io.is_native(zf.namelist())


def images(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8) for _ in range(n)]


def assert_same_predictions(again: ChoiceClassifier, clf: ChoiceClassifier, X: list) -> None:
    assert type(again) is ChoiceClassifier and again.get_params() == clf.get_params()
    np.testing.assert_array_equal(again.classes_, clf.classes_)
    assert again.n_train_ == clf.n_train_ and again.kind_ == clf.kind_
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    # MC-dropout samples are seeded by the stored mc_seed_: identical, not only alike.
    np.testing.assert_array_equal(again.predict_proba_samples(X), clf.predict_proba_samples(X))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("model", ["logreg", "mlp", "committee"])
@pytest.mark.parametrize(
    "classes,y",
    [
        (["pos", "neg", "meh", "unused"], SINGLE),
        (["pos", "neg"], ["pos"] * 5),  # one class: constant model, no network / regression
        (list("abc"), MULTI),
    ],
    ids=["single", "one-class", "multi"],
)
def test_text_round_trip_identical(model, classes, y):
    kw = {"committee_size": 3} if model == "committee" else {"n_samples": 5} if model == "mlp" else {}
    clf = ChoiceClassifier(classes=classes, multi_label=isinstance(y[2], list), model=model, **kw).fit(TEXTS, y)
    data = dumps(clf)
    assert isinstance(data, bytes) and is_native(data)
    assert_same_predictions(loads(data), clf, QUERIES)


@pytest.mark.parametrize("model", ["logreg", "mlp", "committee"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_image_round_trip_identical(model, multi_label):
    X = images()
    y = [["x"], ["x", "y"], ["y"]] * 2 if multi_label else ["x", "y"] * 3
    clf = ChoiceClassifier(modality="image", classes=["x", "y"], multi_label=multi_label, model=model, epochs=1)
    clf.fit(X, y)
    data = dumps(clf)
    assert is_native(data)
    again = loads(data)
    assert_same_predictions(again, clf, X)
    np.testing.assert_array_equal(again.features_.landmarks_, clf.features_.landmarks_)
    assert again.features_.landmarks_.dtype == np.uint8 and again.features_.projection_.dtype == np.float32


def test_short_texts_without_a_word_block_round_trip():
    # word block dropped: no token of two word characters in the training texts
    clf = ChoiceClassifier(classes=["pos", "neg"]).fit(["y", "n", "y!", "n?"], ["pos", "neg", "pos", "neg"])
    assert_same_predictions(loads(dumps(clf)), clf, QUERIES)


def _calibration_data(n=60):
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(n):
        label = ["pos", "neg", "meh"][i % 3]
        texts.append(f"{label}{rng.integers(4)} common{rng.integers(6)} common{rng.integers(6)}")
        labels.append(label if rng.random() > 0.3 else "pos")
    return texts, labels


@pytest.mark.parametrize("calibration", ["temperature", "sigmoid", "isotonic"])
def test_calibrated_round_trip_identical(calibration):
    texts, labels = _calibration_data()
    clf = ChoiceClassifier(classes=["pos", "neg", "meh", "unused"], calibration=calibration).fit(texts, labels)
    assert clf.calibration_ == calibration
    data = dumps(clf)
    assert is_native(data)
    again = loads(data)
    assert (again.calibration_, again.calibration_reason_) == (clf.calibration_, clf.calibration_reason_)
    assert type(again.calibrator_) is type(clf.calibrator_)
    assert_same_predictions(again, clf, texts + ["unseen words", "pos1"])


def test_vocabulary_comes_back_equal_with_its_value_types():
    texts = [" ".join(f"{chr(97 + j % 26)}{i * j % 97}x" for j in range(8)) for i in range(100)]
    clf = ChoiceClassifier(classes=["pos", "neg"]).fit(texts, ["pos", "neg"] * 50)
    again = loads(dumps(clf))
    for (_, before), (_, after) in zip(clf.features_.transformer_list, again.features_.transformer_list, strict=True):
        assert len(before.vocabulary_) >= arrays_io.STRMAP_MIN_SIZE  # stored as arrays, not JSON
        assert list(after.vocabulary_.items()) == list(before.vocabulary_.items())  # same order too
        assert {type(v) for v in after.vocabulary_.values()} == {type(v) for v in before.vocabulary_.values()}
        assert after.dtype is before.dtype  # a type as a value (np.float64)


def test_value_nodes_round_trip_exactly():
    keys = [f"k{i}" for i in range(100)]
    tree = {
        "csr": sp.random(5, 7, density=0.3, format="csr", random_state=0),
        "csc": sp.csc_array(np.eye(3)),
        "coo": sp.coo_matrix(np.arange(6.0).reshape(2, 3)),
        "scalars": [np.float32(1.1), np.int8(-3), np.uint64(2**64 - 1), np.bool_(True), np.complex128(1 + 2j)],
        "more": (np.str_("naïve"), np.longdouble(1) / 3, math.nan, -0.0, 10**30, None, True),
        "types": [np.float64, np.int32, np.str_, float, str],
        "dtypes": [np.dtype("<U7"), np.dtype(np.float32), np.dtype(bool)],
        "containers": ({1, 2}, frozenset({"a"}), {(1, 2): "tuple key", 3: [4]}, []),
        "arrays": [
            np.arange(6, dtype=np.int16).reshape(2, 3),
            np.asfortranarray(np.ones((2, 3))),  # Fortran order kept
            np.array(["x", "yz"]),
        ],
        "vocabulary": {k: np.int64(i) for i, k in enumerate(keys)},
        "python_ints": {k: i for i, k in enumerate(keys)},
        "int32": {k: np.int32(i) for i, k in enumerate(keys)},
        "odd_keys": {**{f"line\n{i}": i for i in range(70)}, "\x00": 1, "\ud800 surrogate": 2, "": 3},
    }
    again = loads(dumps(tree))
    for name in ("csr", "csc", "coo"):
        assert type(again[name]) is type(tree[name])
        np.testing.assert_array_equal(again[name].toarray(), tree[name].toarray())
    for before, after in zip(tree["scalars"] + list(tree["more"]), again["scalars"] + list(again["more"]), strict=True):
        assert type(after) is type(before)
        assert after == before or (before != before and after != after)  # NaN
    assert math.copysign(1.0, again["more"][3]) == -1.0
    assert again["types"] == tree["types"] and again["dtypes"] == tree["dtypes"]
    assert again["containers"] == tree["containers"] and type(again["containers"][1]) is frozenset
    for before, after in zip(tree["arrays"], again["arrays"], strict=True):
        np.testing.assert_array_equal(after, before)
        assert after.dtype == before.dtype and after.flags.f_contiguous == before.flags.f_contiguous
    for name in ("vocabulary", "python_ints", "int32", "odd_keys"):
        assert list(again[name].items()) == list(tree[name].items())
        assert [type(v) for v in again[name].values()] == [type(v) for v in tree[name].values()]


def test_model_files_from_before_the_new_parameters_still_load():
    clf = ChoiceClassifier(classes=["pos", "neg"]).fit(TEXTS, ["pos", "pos", "neg", "neg", "pos"])
    expected = clf.predict_proba(TEXTS)
    # what an old file holds: no model / n_samples / MLP parameters, no kind_
    added = ("model", "n_samples", "committee_size", "hidden_size", "dropout", "epochs", "lr", "weight_decay")
    for name in (*added, "batch_size", "kind_"):
        delattr(clf, name)
    for data in (dumps(clf), sio.dumps(clf)):  # __setstate__ fills them in, in either format
        again = loads(data)
        assert again.get_params() == ChoiceClassifier(classes=["pos", "neg"]).get_params()
        assert again.kind_ == "logreg"
        np.testing.assert_array_equal(again.predict_proba(TEXTS), expected)


def test_model_files_from_before_calibration_still_load():
    clf = ChoiceClassifier(classes=["pos", "neg"]).fit(TEXTS, ["pos", "pos", "neg", "neg", "pos"])
    expected = clf.predict_proba(TEXTS)
    for name in ("calibration", "calibration_", "calibration_reason_", "calibrator_"):
        delattr(clf, name)
    again = loads(dumps(clf))
    assert again.calibration == "none" and again.calibration_ == "none" and again.calibrator_ is None
    np.testing.assert_array_equal(again.predict_proba(TEXTS), expected)


# ----------------------------------------------------------------------- old (skops) files


@pytest.mark.parametrize("model", ["logreg", "mlp", "committee"])
def test_skops_files_written_before_the_native_format_still_load(model):
    clf = ChoiceClassifier(classes=["pos", "neg", "meh", "unused"], model=model, committee_size=3).fit(TEXTS, SINGLE)
    old = sio.dumps(clf, compression=zipfile.ZIP_DEFLATED)  # exactly what dumps wrote before
    assert not is_native(old)
    assert_same_predictions(loads(old), clf, QUERIES)


class NotAllowed:
    """A class from a module outside the allowlist (this test module)."""

    def __init__(self):
        self.value = 1


class OwnEstimator(BaseEstimator):
    """A user's own ("bring your own model") estimator: not under the allowlisted packages."""

    def __init__(self, scale: float = 2.0):
        self.scale = scale

    def fit(self, X, y=None):
        self.offset_ = np.asarray(X, dtype=float).mean()
        return self


@pytest.mark.parametrize(
    "payload,offender",
    [
        (NotAllowed(), "test_model_persistence.NotAllowed"),
        ({"f": fractions.Fraction(1, 3)}, "fractions.Fraction"),
        # A function is not a type, even from an allowed package: a stored callable runs later.
        (FunctionTransformer(func=eval), "builtins.eval"),
        (TfidfVectorizer(analyzer=np.load), "numpy.load"),
    ],
)
def test_skops_files_with_disallowed_types_are_refused(payload, offender):
    data = sio.dumps(payload)
    with pytest.raises(UntrustedModelError, match=offender) as info:
        loads(data)
    assert isinstance(info.value, ValueError)
    assert any(offender in t for t in info.value.types)


def skops_with_reexported_request() -> bytes:
    """A skops file naming ``sklearn.datasets._openml.Request``: a valid path to urllib's Request."""
    src = zipfile.ZipFile(io.BytesIO(sio.dumps({"x": NotAllowed()})))
    schema = json.loads(src.read("schema.json"))
    node = schema["content"]["x"]
    node["__module__"], node["__class__"] = "sklearn.datasets._openml", "Request"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in src.infolist():
            zf.writestr(info, json.dumps(schema) if info.filename == "schema.json" else src.read(info))
    return out.getvalue()


def test_skops_file_with_a_reexported_foreign_class_is_refused():
    data = skops_with_reexported_request()
    with pytest.raises(UntrustedModelError, match=r"sklearn\.datasets\._openml\.Request"):
        loads(data)
    # Trusting the re-export path does not trust the foreign class behind it.
    with pytest.raises(UntrustedModelError):
        loads(data, trusted=["sklearn.datasets._openml.Request"])


def test_skops_extra_types_load():
    data = sio.dumps({"counts": collections.Counter("abca")})
    assert loads(data) == {"counts": collections.Counter("abca")}


def test_objects_the_native_format_cannot_express_fall_back_to_skops():
    own = OwnEstimator().fit([1.0, 2.0, 3.0])
    data = dumps(own)
    assert not is_native(data)
    with pytest.raises(UntrustedModelError, match="OwnEstimator"):
        loads(data)
    again = loads(data, trusted=[class_name(OwnEstimator)])
    assert type(again) is OwnEstimator and again.offset_ == own.offset_ and again.scale == 2.0
    # Functions cannot be declared trusted.
    with pytest.raises(UntrustedModelError, match="builtins.eval"):
        loads(sio.dumps(FunctionTransformer(func=eval)), trusted=["builtins.eval"])


USER_MODEL = """
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


class Prior(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_, counts = np.unique(y, return_counts=True)
        self.prior_ = counts / counts.sum()
        return self

    def predict_proba(self, X):
        return np.tile(self.prior_, (len(X), 1))


def pipeline():
    return make_pipeline(TfidfVectorizer(), LogisticRegression())


def prior():
    return Prior()
"""


def test_bring_your_own_models_round_trip(tmp_path):
    from model.custom import BringYourOwn, trusted_type_names

    (tmp_path / "user_model.py").write_text(USER_MODEL)
    # Made of scikit-learn estimators only: the native format stores it.
    spec = f"{tmp_path / 'user_model.py'}:pipeline"
    byo = BringYourOwn(factory=spec, classes=["pos", "neg", "meh"]).fit(TEXTS, SINGLE)
    data = dumps(byo)
    assert is_native(data)
    np.testing.assert_array_equal(loads(data).predict_proba(QUERIES), byo.predict_proba(QUERIES))
    # A class of the user's own: skops, loadable once the project declares it trusted.
    spec = f"{tmp_path / 'user_model.py'}:prior"
    byo = BringYourOwn(factory=spec, classes=["pos", "neg", "meh"]).fit(TEXTS, SINGLE)
    data = dumps(byo)
    assert not is_native(data)
    with pytest.raises(UntrustedModelError, match="Prior"):
        loads(data)
    again = loads(data, trusted=trusted_type_names(spec, ["Prior"]))
    np.testing.assert_array_equal(again.predict_proba(QUERIES), byo.predict_proba(QUERIES))


def test_shared_references_fall_back_to_skops():
    clf = ChoiceClassifier(classes=["pos", "neg", "meh"]).fit(TEXTS, SINGLE)
    clf.extra_ = clf.seen_  # the same array twice: the native format has no references
    data = dumps(clf)
    assert not is_native(data)
    assert_same_predictions(loads(data), clf, QUERIES)


def test_is_allowed_rules():
    assert is_allowed("model.estimators.ChoiceClassifier")
    assert is_allowed("model.features.PixelFeatures")
    assert is_allowed("collections.OrderedDict")
    assert not is_allowed("model.persistence.loads")  # function
    assert not is_allowed("numpyevil.Thing")  # prefix must end at a package boundary
    assert not is_allowed("os.system")
    assert not is_allowed("numpy.f2py.__main__.main")  # never imported on our behalf
    assert not is_allowed("model.missing.Thing")
    assert not is_allowed("sklearn.datasets._openml.Request")  # urllib.request.Request, re-exported


# ------------------------------------------------------------------- hostile native files


def native_file(root, arrays=(), fields=None) -> bytes:
    """A native model file with a hand-written manifest (what an attacker controls); ``fields``
    override the manifest's top-level entries. Arrays are written as given, object dtypes included."""
    document = {"format": arrays_io.FORMAT, "version": 1, "arrays": len(arrays), "root": root, **(fields or {})}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(arrays_io.MANIFEST, json.dumps(document))
        for i, array in enumerate(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=True)
            zf.writestr(f"arrays/{i}.npy", buffer.getvalue())
    return out.getvalue()


CALLS: list[str] = []


def record_call(*args):
    CALLS.append("called")
    return "executed"


class Spy(BaseEstimator):
    """Records construction; defined outside the allowlist."""

    def __setstate__(self, state):
        CALLS.append("Spy.__setstate__")


def obj(name: str, state=None) -> dict:
    state = state or {}
    return {"$": "object", "class": name, "state": {"$": "dict", "k": list(state), "v": list(state.values())}}


@pytest.fixture
def no_calls(monkeypatch):
    """Fails the test if anything was built: ChoiceClassifier.__setstate__ or Spy ran, or a pickle was loaded."""
    CALLS.clear()
    monkeypatch.setattr(ChoiceClassifier, "__setstate__", lambda self, state: CALLS.append("setstate"))
    yield
    assert CALLS == []


@pytest.mark.parametrize(
    "name",
    [
        "builtins.eval",  # a function
        "os.system",  # outside the allowlist (and a function)
        "numpy.load",  # a function in an allowed package
        "model.persistence.loads",
        "sklearn.datasets._openml.Request",  # resolves, but to urllib.request.Request
        "collections.OrderedDict",  # a class of an allowed package, but not an estimator
        "numpy.random.Generator",
        f"{Spy.__module__}.Spy",  # an estimator outside the allowlist
        "model.missing.Thing",
    ],
)
def test_hostile_class_names_are_refused_before_anything_is_built(name, no_calls):
    # An allowed object first, the hostile one nested inside: the check precedes all construction.
    root = obj("model.estimators.ChoiceClassifier", {"inner": [{"$": "tuple", "v": [obj(name)]}]})
    with pytest.raises(UntrustedModelError, match=name.replace(".", r"\.")) as info:
        loads(native_file(root))
    assert info.value.types == [name]


@pytest.mark.parametrize("name", ["builtins.eval", "os.system", "numpy.load", "builtins.object", "numpy.ndarray"])
def test_hostile_type_values_are_refused(name, no_calls):
    with pytest.raises(UntrustedModelError, match=name.replace(".", r"\.")):
        loads(native_file(obj("model.estimators.ChoiceClassifier", {"dtype": {"$": "type", "v": name}})))


def test_object_arrays_are_refused_without_unpickling(no_calls):
    class Payload:
        def __reduce__(self):
            return (record_call, ())

    hostile = np.array([Payload()], dtype=object)
    assert pickle.loads(pickle.dumps(Payload())) == "executed" and CALLS.pop() == "called"  # the payload works
    with pytest.raises(UntrustedModelError, match="dtype object"):
        loads(native_file({"$": "array", "i": 0}, arrays=[hostile]))
    structured = np.zeros(2, dtype=[("a", "O"), ("b", "f8")])
    with pytest.raises(UntrustedModelError):
        loads(native_file({"$": "array", "i": 0}, arrays=[structured]))
    with pytest.raises(UntrustedModelError, match="dtype object"):
        loads(native_file({"$": "dtype", "v": "O"}))


@pytest.mark.parametrize(
    "root,arrays",
    [
        ({"$": "no-such-node"}, []),
        ({"$": "array", "i": 3}, []),  # index out of range
        ({"$": "array", "i": True}, [np.zeros(1)]),
        ({"$": "dict", "k": [1, 2], "v": [3]}, []),
        ({"$": "dict", "k": [[1]], "v": [3]}, []),  # unhashable key
        ({"$": "scalar", "dtype": "<f8", "v": "1.5"}, []),
        (
            {"$": "strmap", "n": 5, "sep": "\n", "keys": 0, "values": 1, "numpy": True},
            [np.zeros(3, np.uint8), np.arange(5)],  # 1 key for 5 values
        ),
        ({"$": "sparse", "class": "dia_matrix", "shape": [1, 1], "data": 0}, [np.zeros(1)]),
        (obj("model.estimators.ChoiceClassifier") | {"state": [1, 2]}, []),  # state is not a dict
        ({"$": "object"}, []),
    ],
)
def test_malformed_manifests_raise_value_error(root, arrays):
    with pytest.raises(ValueError, match="malformed|corrupt") as info:
        loads(native_file(root, arrays))
    assert not isinstance(info.value, UntrustedModelError)


def test_bad_manifest_documents_raise_value_error():
    for data, message in [
        (native_file(1, fields={"format": "other"}), "not a labelloop-model manifest"),
        (native_file(1, fields={"version": 99}), "newer"),
        (native_file(1, fields={"arrays": -1}), "array count"),
        (native_file({"$": "array", "i": 0}, fields={"arrays": 1}), "corrupt or truncated"),  # member missing
        (zip_with_manifest(b'{"format": "labelloop-model", "version": 1, "arrays": 0}'), "not a labelloop-model"),
        (zip_with_manifest(b"{not json"), "unreadable manifest"),
        (zip_with_manifest(b"[" * 100_000 + b"]" * 100_000), "unreadable manifest"),
    ]:
        with pytest.raises(ValueError, match=message):
            loads(data)


def zip_with_manifest(document: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(arrays_io.MANIFEST, document)
    return out.getvalue()


# ------------------------------------------------------------------ corrupted / truncated


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return dumps(ChoiceClassifier(classes=["pos", "neg", "meh"], model="mlp", epochs=1).fit(TEXTS, SINGLE))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_files_raise_value_error(model_bytes, keep):
    with pytest.raises(ValueError, match="truncated|corrupt"):
        loads(model_bytes[: int(len(model_bytes) * keep)])


def test_corrupted_bytes_raise_value_error(model_bytes):
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
        infos = zf.infolist()
    for info in infos:  # one flipped byte inside each member's data (manifest and arrays)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        position = start + info.compress_size // 2
        data = bytearray(model_bytes)
        data[position] ^= 0xFF
        with pytest.raises(ValueError, match="corrupt|malformed|truncated"):
            loads(bytes(data))


def test_garbage_bytes_raise_value_error():
    with pytest.raises(ValueError, match="not a labelloop model file"):
        loads(b"definitely not a zip file")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("something.txt", "hello")
    with pytest.raises(ValueError, match="neither"):
        loads(out.getvalue())


# ------------------------------------------------------------------------------ ModelStore


def test_model_store_round_trip_and_old_skops_records(tmp_path):
    clf = ChoiceClassifier(classes=["pos", "neg", "meh"]).fit(TEXTS, SINGLE)
    records = {}
    store = SimpleNamespace(artifact=lambda iteration_id: records.get(iteration_id),
                            artifact_digest=lambda iteration_id: getattr(records.get(iteration_id), "sha256", None))

    def record(data: bytes) -> SimpleNamespace:
        return SimpleNamespace(data=data, sha256=hashlib.sha256(data).hexdigest())

    models = ModelStore(store, tmp_path)
    data, name = models.save(1, "it-1", clf)
    assert is_native(data) and name == "it-1.model" and models.path(1, "it-1").read_bytes() == data
    records[1] = record(data)
    np.testing.assert_array_equal(models.load(1, "it-1", 1).predict_proba(TEXTS), clf.predict_proba(TEXTS))

    # A version trained before the native format: its database record holds skops bytes.
    records[2] = record(sio.dumps(clf, compression=zipfile.ZIP_DEFLATED))
    again = ModelStore(store, tmp_path).load(1, "it-0", 2)
    np.testing.assert_array_equal(again.predict_proba(TEXTS), clf.predict_proba(TEXTS))
    assert models.path(1, "it-0").read_bytes() == records[2].data  # cached locally, as before


def test_a_good_local_copy_is_loaded_without_reading_the_blob(tmp_path):
    # The database's bytes are read only when the local copy is missing or stale (checked by digest).
    clf = ChoiceClassifier(classes=["pos", "neg", "meh"]).fit(TEXTS, SINGLE)
    blob_reads = []
    models = ModelStore(SimpleNamespace(), tmp_path)
    data, _ = models.save(1, "it-1", clf)
    digest = hashlib.sha256(data).hexdigest()
    models.store = SimpleNamespace(artifact=lambda i: blob_reads.append(i) or SimpleNamespace(data=data, sha256=digest),
                                   artifact_digest=lambda i: digest)
    np.testing.assert_array_equal(models.load(1, "it-1", 1).predict_proba(TEXTS), clf.predict_proba(TEXTS))
    assert blob_reads == []
    models.path(1, "it-2").write_bytes(b"stale")  # a stale copy: the blob is read and the copy replaced
    ModelStore(models.store, tmp_path).load(1, "it-2", 2)
    assert blob_reads == [2] and models.path(1, "it-2").read_bytes() == data
