"""Bring your own model: a user's scikit-learn classifier behind labelloop's estimator contract.

A project names a factory, ``path/to/file.py:make`` or ``package.module:make``, that returns an
unfitted classifier following scikit-learn's contract: ``fit(X, y)`` and ``predict_proba(X)``
(columns in the order of its ``classes_``); optionally ``transform(X)`` (features for the cluster
queue) and ``predict_proba_samples(X)`` (``(T, n, C)`` samples, for MC-dropout and committee
strategies). ``X`` is what labelloop reads from a task: a list of strings (text) or of ``(H, W)`` /
``(H, W, 3)`` uint8 arrays (images). ``y`` is a list of label names, or for multi-label projects a
0/1 matrix over the project's classes.

:class:`BringYourOwn` wraps it so every labelloop feature works unchanged: probabilities come out in
the label config's class order (classes the model never saw get 0), the cluster queue falls back to
probability space when the model has no ``transform``, and the kernel (:mod:`model.scoring`) scores it
like a built-in model.

A file is loaded under a private module name (``labelloop_custom.<stem>_<hash>``), so a user's
``model.py`` never shadows ours and two projects' files never collide. Loading a factory runs the
user's code: which factories may be named is the operator's decision (see the README), never a
request's.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

#: Parent of the private modules user files are loaded as.
PRIVATE_PACKAGE = "labelloop_custom"


class FactoryError(ValueError):
    """The named factory cannot be loaded or does not make a usable classifier; the message says why."""


def is_factory_spec(spec: str) -> bool:
    return ":" in spec


def private_module_name(path: Path) -> str:
    """The module name a user file is loaded as: stable across processes for the same file path."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem)
    return f"{PRIVATE_PACKAGE}.{stem}_{digest}"


def load_factory(spec: str) -> tuple[Callable[..., Any], str]:
    """Resolve ``spec`` to ``(factory, module name)``; raises :class:`FactoryError` naming the problem."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise FactoryError(f"model {spec!r}: expected 'path/to/file.py:function' or 'package.module:function'")
    try:
        module = _load_file(Path(target)) if target.endswith(".py") else importlib.import_module(target)
    except FactoryError:
        raise
    except Exception as exc:  # the user's module failed to import: say so, with its error
        raise FactoryError(f"model {spec!r}: importing {target} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise FactoryError(f"model {spec!r}: {target} has no function {attr!r}")
    return factory, module.__name__


def _load_file(path: Path) -> types.ModuleType:
    if not path.is_file():
        raise FactoryError(f"model file {path} does not exist (paths are relative to the server's directory)")
    name = private_module_name(path)
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    if PRIVATE_PACKAGE not in sys.modules:
        package = types.ModuleType(PRIVATE_PACKAGE)
        package.__path__ = []  # a namespace: only what we load lives in it
        sys.modules[PRIVATE_PACKAGE] = package
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise FactoryError(f"model file {path} cannot be loaded as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before exec: classes defined in it must resolve for persistence
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def make_user_estimator(spec: str, random_state: int | None = None, required: Sequence[str] = ("fit", "predict_proba"),
                        kind: str = "a scikit-learn classifier") -> Any:
    """Call the factory (with ``random_state`` when it takes one) and check the contract: the ``required``
    methods of ``kind`` (a classifier's by default; a span tagger's are ``fit`` and ``predict``)."""
    factory, _ = load_factory(spec)
    kwargs = {"random_state": random_state} if "random_state" in _parameters(factory) else {}
    try:
        estimator = factory(**kwargs)
    except Exception as exc:
        raise FactoryError(f"model {spec!r}: the factory raised {type(exc).__name__}: {exc}") from exc
    missing = [m for m in required if not callable(getattr(estimator, m, None))]
    if missing:
        raise FactoryError(f"model {spec!r}: the factory returned {type(estimator).__name__}, which has no "
                           f"{' / '.join(missing)} ({kind} is expected)")
    return estimator


def trusted_type_names(spec: str, declared: Sequence[str]) -> list[str]:
    """Declared trusted types as dotted names; a bare class name means one defined in the factory's file."""
    if not declared:
        return []
    _, module_name = load_factory(spec)
    return [name if "." in name else f"{module_name}.{name}" for name in declared]


def _parameters(func: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return set()


class BringYourOwn(ClassifierMixin, BaseEstimator):
    """A user's classifier (made by ``factory``) in the project's class order, single- or multi-label.

    Parameters
    ----------
    factory:
        ``path/to/file.py:function`` or ``package.module:function``.
    classes:
        The label config's classes; probabilities come out in this order.
    multi_label:
        Train on a 0/1 matrix over ``classes`` and read one probability per class.
    random_state:
        Passed to the factory when it takes a ``random_state`` argument.

    Attributes
    ----------
    estimator_:
        The fitted user estimator.
    classes_:
        ``classes`` as an array.
    """

    def __init__(self, factory: str = "", classes: Sequence[str] = (), multi_label: bool = False,
                 random_state: int | None = None) -> None:
        self.factory = factory
        self.classes = classes
        self.multi_label = multi_label
        self.random_state = random_state

    def fit(self, X: Sequence[Any], y: Sequence[Any]) -> BringYourOwn:
        self.classes_ = np.array([str(c) for c in self.classes])
        self.estimator_ = make_user_estimator(self.factory, self.random_state)
        self.estimator_.fit(list(X), self._encode(y))
        return self

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self._columns(self.estimator_.predict_proba(list(X)))

    def predict_proba_samples(self, X: Sequence[Any]) -> np.ndarray:
        """``(T, n, C)`` samples from the user's model; only when it has ``predict_proba_samples``."""
        check_is_fitted(self, "estimator_")
        sampler = getattr(self.estimator_, "predict_proba_samples", None)
        if not callable(sampler):
            raise FactoryError(f"model {self.factory!r} has no predict_proba_samples: choose a strategy that "
                               "needs one probability per class (margin, entropy, least_confidence)")
        return np.stack([self._columns(sample) for sample in sampler(list(X))])

    def transform(self, X: Sequence[Any]) -> Any:
        """The user's features when it has ``transform``; else its probabilities (for the cluster queue)."""
        check_is_fitted(self, "estimator_")
        transform = getattr(self.estimator_, "transform", None)
        return transform(list(X)) if callable(transform) else self.predict_proba(X)

    def _encode(self, y: Sequence[Any]) -> Any:
        if not self.multi_label:
            return np.array([str(label) for label in y])
        index = {name: i for i, name in enumerate(self.classes_)}
        out = np.zeros((len(y), len(index)), dtype=np.int64)
        for i, row in enumerate(y):
            out[i, [index[str(name)] for name in row]] = 1
        return out

    def _columns(self, proba: Any) -> np.ndarray:
        """The user's probabilities re-ordered to ``classes_`` (unseen classes get 0)."""
        if isinstance(proba, list):  # scikit-learn's multi-output form: one (n, 2) array per class
            proba = np.column_stack([np.asarray(p)[:, -1] for p in proba])
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2:
            raise FactoryError(f"model {self.factory!r}: predict_proba returned shape {proba.shape}, not (n, C)")
        if self.multi_label:
            if proba.shape[1] != len(self.classes_):
                raise FactoryError(f"model {self.factory!r}: multi-label predict_proba has {proba.shape[1]} "
                                   f"columns for {len(self.classes_)} classes")
            return proba
        own = [str(c) for c in getattr(self.estimator_, "classes_", [])]
        if len(own) != proba.shape[1]:
            raise FactoryError(f"model {self.factory!r}: predict_proba has {proba.shape[1]} columns but "
                               f"classes_ lists {len(own)}")
        out = np.zeros((proba.shape[0], len(self.classes_)))
        position = {name: i for i, name in enumerate(self.classes_)}
        for j, name in enumerate(own):
            if name not in position:
                raise FactoryError(f"model {self.factory!r} predicts class {name!r}, not in the label config")
            out[:, position[name]] = proba[:, j]
        return out
