"""Serialise fitted estimators to bytes and back with skops -- never pickle.

Model blobs end up in a database and may be copied between deployments, so loading must not
be able to run code. skops reconstructs objects without pickle and tells us, before loading,
which types in a file it does not trust by default; :func:`loads` only accepts those that are
classes from an allowlist of packages, and refuses everything else.
"""

from __future__ import annotations

import sys
import zipfile
from typing import Any

import skops.io as sio

# Imported for their side effect: the classes our blobs contain must be loaded for the
# allowlist check below, which only resolves names among already imported modules.
import model.calibration  # noqa: F401  (ProbabilityCalibrator, inside calibrated estimators)
import model.estimators  # noqa: F401
import model.features  # noqa: F401

#: Top-level packages whose *classes* may appear in a model file. skops already trusts
#: plain containers, numpy arrays and scikit-learn estimators on its own; today our own
#: estimators add nothing but ``model.*`` classes. The other roots are the ones our
#: estimators are built from, so a future attribute (say a scipy sparse matrix or a
#: ``collections.OrderedDict``) does not break loading.
ALLOWED_ROOTS = ("model", "sklearn", "numpy", "scipy", "builtins", "collections")


class UntrustedModelError(ValueError):
    """A model file references types outside the allowlist; it was not loaded."""

    def __init__(self, types: list[str]):
        self.types = types
        super().__init__(f"refusing to load model: untrusted type(s) {', '.join(types)}")


def dumps(estimator: Any) -> bytes:
    """Serialise ``estimator`` with skops (zip-deflated: tf-idf vocabularies compress well)."""
    return sio.dumps(estimator, compression=zipfile.ZIP_DEFLATED)


def loads(data: bytes) -> Any:
    """Load an estimator written by :func:`dumps`, refusing files with non-allowlisted types.

    Raises :class:`UntrustedModelError` naming the offending types, or ``ValueError`` if
    ``data`` is not a skops file at all.
    """
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"not a skops model file: {exc}") from exc
    offending = [name for name in untrusted if not is_allowed(name)]
    if offending:
        raise UntrustedModelError(offending)
    return sio.loads(data, trusted=untrusted)


def is_allowed(name: str) -> bool:
    """True if ``name`` (as reported by skops) is a class under one of :data:`ALLOWED_ROOTS`.

    Two rules beyond the package prefix:

    * it must be a *class*. skops also reports functions (``builtins.eval``, ``numpy.load``);
      a stored function is called later by whatever holds it -- e.g. a TfidfVectorizer whose
      ``analyzer`` is ``builtins.eval`` would evaluate task text -- so none is accepted.
    * it is looked up only in modules that are already imported, never imported here: an
      import runs module code chosen by the file's author (``numpy.f2py.__main__`` runs a
      CLI), and everything our estimators are made of is imported by loading this module.
    """
    if not any(name.startswith(root + ".") for root in ALLOWED_ROOTS):
        return False
    return isinstance(_lookup(name), type)


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
