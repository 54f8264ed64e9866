"""Serialise fitted estimators to bytes and back -- never with pickle.

Model blobs end up in a database and may be copied between deployments, so loading must not be
able to run code. Two formats, told apart by the bytes themselves (both are zips):

* **native** (:mod:`model.arrays_io`, written by :func:`dumps` for labelloop's estimators): a
  JSON manifest plus .npy arrays. It loads in milliseconds where skops took 10-45 s for a text
  model (its tf-idf vocabularies became one zip member per entry; see that module). Its
  ``object`` nodes may only name scikit-learn estimator classes (:class:`sklearn.base.BaseEstimator`
  subclasses) defined under :data:`ALLOWED_ROOTS`: ours, scikit-learn's.
* **skops**: what every model file was before, and what :func:`dumps` still writes for an
  object the native format cannot express (a user's own estimator, say). skops tells us,
  before loading, which types in a file it does not trust by default; :func:`loads` accepts
  those that are classes from :data:`ALLOWED_ROOTS` or named by the caller in ``trusted``.

Every class name is checked against the class it resolves to: the *defining* module of that
class (``cls.__module__``) must be allowed, not only the dotted path written in the file --
``sklearn.datasets._openml.Request`` is a valid path to ``urllib.request.Request``.

Names resolve only among modules already imported: the caller imports the modules whose classes
its files hold (the backend's registry of label families declares them, ``model_modules``).
"""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Sequence
from typing import Any

from sklearn.base import BaseEstimator

from model import arrays_io
from model.arrays_io import UntrustedModelError, class_name

__all__ = ["ALLOWED_ROOTS", "UntrustedModelError", "dumps", "is_allowed", "loads"]

#: Top-level packages whose *classes* may appear in a model file. skops already trusts
#: plain containers, numpy arrays and scikit-learn estimators on its own; today our own
#: estimators add nothing but ``model.*`` classes. The other roots are the ones our
#: estimators are built from, so a future attribute (say a scipy sparse matrix or a
#: ``collections.OrderedDict``) does not break loading.
ALLOWED_ROOTS = ("model", "sklearn", "numpy", "scipy", "builtins", "collections")

#: Roots whose estimator classes the native format stores (numpy / scipy / builtins values
#: have node kinds of their own there; anything else goes to skops).
NATIVE_ROOTS = ("model", "sklearn")


def dumps(estimator: Any) -> bytes:
    """Serialise ``estimator``: the native format when it can express it, else skops.

    skops files are zip-deflated (tf-idf vocabularies compress well).
    """
    try:
        return arrays_io.dumps(estimator, class_allowed=_native_class)
    except arrays_io.UnsupportedObject:
        return _skops().dumps(estimator, compression=zipfile.ZIP_DEFLATED)


def loads(data: bytes, trusted: Sequence[str] = ()) -> Any:
    """Load an estimator written by :func:`dumps` (either format; old skops files included).

    ``trusted``: extra class names a skops file may contain, for estimators that are not
    labelloop's (e.g. ``["mypackage.models.MyClassifier"]``). Their modules must already be
    imported; a name is accepted if the class it resolves to is itself named in ``trusted``,
    or if it is named there and defined under the same top-level package. They do not widen
    what the native format accepts: :func:`dumps` writes such objects with skops.

    Raises :class:`UntrustedModelError` naming the offending types, or ``ValueError`` if
    ``data`` is not a model file, or is truncated or corrupted.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ValueError(f"not a labelloop model file (native or skops), or truncated: {exc}") from exc
    if arrays_io.is_native(names):
        return arrays_io.loads(data, resolve_class=_native_class_named)
    if "schema.json" in names:
        return _loads_skops(data, trusted)
    raise ValueError(f"not a labelloop model file: a zip with neither {arrays_io.MANIFEST} nor schema.json")


def _loads_skops(data: bytes, trusted: Sequence[str]) -> Any:
    try:
        untrusted = _skops().get_untrusted_types(data=data)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"corrupt skops model file: {exc}") from exc
    offending = [name for name in untrusted if not is_allowed(name) and not _trusted_by_caller(name, trusted)]
    if offending:
        raise UntrustedModelError(offending)
    return _skops().loads(data, trusted=untrusted)


def _skops() -> Any:
    """skops, imported only for the files that need it (old ones, bring-your-own models the native format
    cannot express): importing it scans scikit-learn and pulls in torch, seconds and ~200 MB per worker."""
    import skops.io

    return skops.io


def is_allowed(name: str) -> bool:
    """True if ``name`` (as reported by skops) is a class defined under one of :data:`ALLOWED_ROOTS`.

    Rules beyond the package prefix of ``name``:

    * it must be a *class*. skops also reports functions (``builtins.eval``, ``numpy.load``);
      a stored function is called later by whatever holds it -- e.g. a TfidfVectorizer whose
      ``analyzer`` is ``builtins.eval`` would evaluate task text -- so none is accepted.
    * the class's own module must be allowed too: a package re-exports foreign classes
      (``sklearn.datasets._openml.Request`` is ``urllib.request.Request``), and skops builds
      whatever the path resolves to.
    * it is looked up only in modules that are already imported, never imported here: an
      import runs module code chosen by the file's author (``numpy.f2py.__main__`` runs a
      CLI), and the caller imports the modules its estimators come from (see the module docstring).
    """
    if not _under(name, ALLOWED_ROOTS):
        return False
    cls = _lookup(name)
    return isinstance(cls, type) and _under(cls.__module__, ALLOWED_ROOTS)


def _trusted_by_caller(name: str, trusted: Sequence[str]) -> bool:
    """Is ``name`` a class the caller trusts? Its real name must be in ``trusted``, or ``name``
    itself with the class defined under the same top-level package (so trusting a re-export
    path does not trust a foreign class behind it)."""
    if not trusted:
        return False
    cls = _lookup(name)
    if not isinstance(cls, type):
        return False
    if class_name(cls) in trusted:
        return True
    return name in trusted and _under(cls.__module__, (name.split(".")[0],))


def _native_class(cls: type) -> bool:
    """May the native format store instances of ``cls``? Estimator classes under
    :data:`NATIVE_ROOTS`, findable again under their own name by :func:`_native_class_named`."""
    return _native_class_named(class_name(cls)) is cls


def _native_class_named(name: str) -> type | None:
    """The class an ``object`` node of a native file names, or None to refuse it.

    Restricted to :class:`sklearn.base.BaseEstimator` subclasses: the loader calls their
    ``__new__`` and ``__setstate__``, and those of estimators only set attributes (scikit-learn
    also checks the version it was saved with), whereas other classes of the same packages
    have arbitrary ``__setstate__`` code.
    """
    if not _under(name, NATIVE_ROOTS):
        return None
    cls = _lookup(name)
    if isinstance(cls, type) and issubclass(cls, BaseEstimator) and _under(cls.__module__, NATIVE_ROOTS):
        return cls
    return None


def _under(name: str, roots: Sequence[str]) -> bool:
    """``name`` is one of ``roots`` or inside one (a prefix must end at a package boundary)."""
    return any(name == root or name.startswith(root + ".") for root in roots)


def _lookup(name: str) -> Any:
    """Resolve a dotted name among ``sys.modules`` without importing; None if not found.

    Walks ``__dict__`` rather than ``getattr`` so that a package's lazy ``__getattr__``
    (numpy and scipy have them) cannot be made to import anything either.
    """
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        obj: Any = module
        for attr in parts[split:]:
            try:
                obj = vars(obj).get(attr)
            except TypeError:  # no __dict__ (e.g. a slotted instance): not a class path
                return None
            if obj is None:
                return None
        return obj
    return None
