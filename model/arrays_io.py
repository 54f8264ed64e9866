"""labelloop's own model file format: a JSON manifest of the object tree plus .npy arrays, in one zip.

Why not skops any more: a fitted text model holds two tf-idf vocabularies, dicts of tens of
thousands of ``str -> numpy.int64`` entries. skops stores every numpy scalar as a separate
``.npy`` member of its zip, checking each new member's name against the list of all earlier
ones, so writing a model was quadratic in the vocabulary (138 s for 2,000 man pages, 70,000
members) and reading one parsed 70,000 array headers (12 s); see ``benchmarks/model_load.py``.
Here a vocabulary is two arrays (its keys as one UTF-8 buffer, its values as an int array), every
other numeric payload is one ``.npy`` member, and what remains -- parameters, attribute names,
the shape of the tree -- is a small JSON document. Loading is a JSON parse, one ``np.load`` per
array and one ``str.split``: milliseconds, and linear in the size of the model.

Safety is by construction: the reader never unpickles (``np.load(..., allow_pickle=False)``,
and object / structured dtypes are refused) and never calls anything named by the file except
``cls.__new__`` and ``__setstate__`` of classes the caller's ``resolve_class`` hands back --
every class name in the manifest is checked *before* any object is built, so a refused file
constructs nothing. Everything else is a fixed set of node kinds:

* JSON ``null``, booleans, numbers and strings are themselves; a JSON list is a Python list;
* every JSON object is a node tagged by its ``"$"`` key: ``tuple``, ``set``, ``frozenset``,
  ``dict`` (parallel ``k`` / ``v`` lists, so keys need not be strings), ``strmap`` (a large
  ``str -> int`` dict stored as arrays), ``array``, ``scalar`` and ``dtype`` (numpy, plain
  numeric / string dtypes only), ``type`` (a numpy scalar type or a builtin scalar type, e.g.
  a TfidfVectorizer's ``dtype=np.float64``), ``sparse`` (scipy CSR / CSC / COO from their
  component arrays, through the constructor), and ``object`` (a class name plus its state,
  rebuilt as pickle does: ``cls.__new__(cls)`` then ``__setstate__(state)`` or ``__dict__``).

:func:`dumps` raises :class:`UnsupportedObject` for anything else (a function, an object array,
a shared or cyclic reference, a class ``class_allowed`` refuses); callers fall back to another
format then.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

#: Name of the manifest member; its presence is what identifies the format.
MANIFEST = "labelloop-model.json"
FORMAT = "labelloop-model"
VERSION = 1

#: numpy dtype kinds an array, scalar or dtype may have: bool, ints, floats, complex, str, bytes.
#: Not "O" (objects: would need pickle) nor "V" (structured / void).
ARRAY_KINDS = frozenset("biufcUS")

#: dicts with at least this many entries, all ``str -> int``, are stored as arrays (``strmap``).
#: Smaller ones are cheaper to read as JSON than as two zip members.
STRMAP_MIN_SIZE = 64

#: Separator candidates for the keys of a ``strmap``: the first one that occurs in no key is used.
#: tf-idf tokens never contain a newline (the analyzers split on / normalise whitespace).
_SEPARATORS = ("\n", "\x00", "\x1f", "\ufdd0", "\U0010fffe")

_BUILTIN_TYPES: dict[str, type] = {f"builtins.{t.__name__}": t for t in (bool, int, float, complex, str, bytes)}
_SPARSE_TYPES: dict[str, type] = {
    t.__name__: t for t in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.csc_array, sp.coo_array)
}


class UntrustedModelError(ValueError):
    """A model file references types outside the allowlist; it was not loaded."""

    def __init__(self, types: list[str]):
        self.types = types
        super().__init__(f"refusing to load model: untrusted type(s) {', '.join(types)}")


class UnsupportedObject(TypeError):
    """:func:`dumps` met something this format cannot express; the caller may use another one."""


def class_name(cls: type) -> str:
    """The dotted name a class is written under: its defining module plus qualified name."""
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- writing


def dumps(obj: Any, class_allowed: Callable[[type], bool]) -> bytes:
    """Serialise ``obj`` (an estimator, or any tree of supported nodes) to bytes.

    ``class_allowed(cls)`` decides which classes may be stored as ``object`` nodes; they must be
    loadable by the reader's ``resolve_class``. Raises :class:`UnsupportedObject`.
    """
    encoder = _Encoder(class_allowed)
    manifest = {"format": FORMAT, "version": VERSION, "arrays": 0, "root": encoder.encode(obj)}
    manifest["arrays"] = len(encoder.arrays)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, separators=(",", ":")), compress_type=zipfile.ZIP_DEFLATED)
        for i, array in enumerate(encoder.arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            zf.writestr(_member(i), buffer.getbuffer(), compress_type=_compression(array), compresslevel=1)
    return out.getvalue()


def _member(index: int) -> str:
    return f"arrays/{index}.npy"


def _compression(array: np.ndarray) -> int:
    """Deflate (level 1) integer, bool and text arrays: vocabulary keys and values shrink 3x and
    inflate fast. Store float arrays as they are. Measured on a 1,000-man-page model: deflate saves
    7 % of an MLP's float32 first layer (34 MB; 2 s to compress, 0.3 s to inflate) and 40 % of a
    logistic regression's float64 coefficients (4 MB; 150 ms / 40 ms) -- load time is what this
    format is for, and the files are already no larger than skops' deflated ones (text: 1-3x smaller)."""
    return zipfile.ZIP_STORED if array.dtype.kind in "fc" else zipfile.ZIP_DEFLATED


class _Encoder:
    """Turns an object tree into JSON nodes, collecting numeric payloads in ``arrays``."""

    def __init__(self, class_allowed: Callable[[type], bool]) -> None:
        self.class_allowed = class_allowed
        self.arrays: list[np.ndarray] = []
        # ids of the mutable objects already written; ``_keep`` holds them so an id is not reused.
        self._seen: set[int] = set()
        self._keep: list[Any] = []

    def encode(self, x: Any) -> Any:
        kind = type(x)
        if x is None or kind in (bool, int, float, str):
            return x
        if kind in (tuple, frozenset):  # immutable: sharing one (a default ngram_range) is harmless
            return {"$": kind.__name__, "v": [self.encode(v) for v in x]}
        if kind in (list, set):
            items = [self.encode(v) for v in self._once(x)]
            return items if kind is list else {"$": "set", "v": items}
        if kind is dict:
            return self._dict(self._once(x))
        if kind is np.ndarray:
            return {"$": "array", "i": self._array(self._once(x))}
        if isinstance(x, np.generic):
            return self._scalar(x)
        if isinstance(x, np.dtype):
            return {"$": "dtype", "v": _checked_dtype(x).str}
        if isinstance(x, type):
            return {"$": "type", "v": _type_name(x)}
        if kind.__name__ in _SPARSE_TYPES and _SPARSE_TYPES[kind.__name__] is kind:
            return self._sparse(self._once(x))
        return self._object(self._once(x))

    def _once(self, x: Any) -> Any:
        """``x``, after checking it was not written before: this format has no references, so a
        shared object would come back as two copies (and a cycle would never end)."""
        if id(x) in self._seen:
            raise UnsupportedObject(f"{type(x).__name__} referenced twice (shared or cyclic)")
        self._seen.add(id(x))
        self._keep.append(x)
        return x

    def _array(self, array: np.ndarray) -> int:
        _checked_dtype(array.dtype)
        self.arrays.append(array)
        return len(self.arrays) - 1

    def _dict(self, d: dict[Any, Any]) -> dict[str, Any]:
        if len(d) >= STRMAP_MIN_SIZE:
            node = self._strmap(d)
            if node is not None:
                return node
        return {"$": "dict", "k": [self.encode(k) for k in d], "v": [self.encode(v) for v in d.values()]}

    def _strmap(self, d: dict[Any, Any]) -> dict[str, Any] | None:
        """``d`` as keys-buffer + values-array, or None if it is not a ``str -> int`` dict."""
        if not all(type(k) is str for k in d):
            return None
        value_type = type(next(iter(d.values())))
        if not (value_type is int or issubclass(value_type, np.integer)):
            return None
        if not all(type(v) is value_type for v in d.values()):
            return None
        try:
            values = np.fromiter(d.values(), dtype=np.int64 if value_type is int else value_type, count=len(d))
        except OverflowError:
            return None
        for sep in _SEPARATORS:
            joined = sep.join(d)
            if joined.count(sep) == len(d) - 1:  # no key contains the separator
                break
        else:
            return None
        keys = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        return {
            "$": "strmap",
            "n": len(d),
            "sep": sep,
            "keys": self._array(keys),
            "values": self._array(values),
            "numpy": value_type is not int,
        }

    def _scalar(self, x: np.generic) -> dict[str, Any]:
        dtype = _checked_dtype(x.dtype)
        if dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8):
            return {"$": "scalar", "dtype": dtype.str, "v": x.item()}
        return {"$": "scalar", "i": self._array(np.asarray(x))}  # complex, long double, str: exact via .npy

    def _sparse(self, m: Any) -> dict[str, Any]:
        node: dict[str, Any] = {"$": "sparse", "class": type(m).__name__, "shape": [int(n) for n in m.shape]}
        parts = ("data", "row", "col") if m.format == "coo" else ("data", "indices", "indptr")
        for part in parts:
            node[part] = self._array(np.asarray(getattr(m, part)))
        return node

    def _object(self, x: Any) -> dict[str, Any]:
        cls = type(x)
        if not self.class_allowed(cls):
            raise UnsupportedObject(f"class {class_name(cls)} is not storable in this format")
        if cls.__reduce_ex__ is not object.__reduce_ex__ or cls.__reduce__ is not object.__reduce__:
            raise UnsupportedObject(f"class {class_name(cls)} customises pickling; its state is not its __dict__")
        getstate = getattr(x, "__getstate__", None)
        state = getstate() if getstate is not None else x.__dict__  # Python 3.10: no object.__getstate__
        if type(state) is not dict or not all(type(k) is str for k in state):
            raise UnsupportedObject(f"state of {class_name(cls)} is not a dict of attributes")
        return {"$": "object", "class": class_name(cls), "state": self.encode(state)}


def _checked_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsupportedObject(f"numpy dtype {dtype} is not storable (objects, structured dtypes)")
    return dtype


def _type_name(t: type) -> str:
    """The name of a type stored as a *value* (e.g. ``dtype=np.float64``): scalar types only."""
    for name, builtin in _BUILTIN_TYPES.items():
        if t is builtin:
            return name
    if isinstance(t, type) and issubclass(t, np.generic):
        try:
            dtype = np.dtype(t)
        except TypeError:  # abstract, e.g. np.floating
            dtype = None
        if dtype is not None and dtype.kind in ARRAY_KINDS and np.dtype(dtype.name).type is t:
            return f"numpy.{dtype.name}"
    raise UnsupportedObject(f"type {t!r} as a value: only numpy and builtin scalar types are storable")


# --------------------------------------------------------------------------- reading


def is_native(names: list[str]) -> bool:
    """True if a zip with these member names is a file of this format."""
    return MANIFEST in names


def loads(data: bytes, resolve_class: Callable[[str], type | None]) -> Any:
    """Rebuild the object written by :func:`dumps`.

    ``resolve_class(name)`` returns the class an ``object`` node names, or None to refuse it.
    All class and type names are checked, and all arrays read and their dtypes checked, before
    anything is built. Raises :class:`UntrustedModelError` (naming what was refused) or
    ``ValueError`` for a truncated, corrupted or malformed file.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            manifest = _read_manifest(zf)
            classes, types = _resolved_names(manifest["root"], resolve_class)
            arrays = [_read_array(zf, i) for i in range(manifest["arrays"])]
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, NotImplementedError) as exc:
        raise ValueError(f"corrupt or truncated model file: {type(exc).__name__}: {exc}") from exc
    try:
        return _Decoder(arrays, classes, types).decode(manifest["root"])
    except UntrustedModelError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ValueError(f"malformed model file: {type(exc).__name__}: {exc}") from exc


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read(MANIFEST))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, absurd nesting
        raise ValueError(f"corrupt model file: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "root" not in manifest:
        raise ValueError(f"corrupt model file: {MANIFEST} is not a {FORMAT} manifest")
    version, n_arrays = manifest.get("version"), manifest.get("arrays")
    if type(version) is not int or type(n_arrays) is not int or n_arrays < 0:
        raise ValueError("corrupt model file: bad version or array count in the manifest")
    if version > VERSION:
        raise ValueError(f"model file format version {version} is newer than this labelloop reads ({VERSION})")
    return manifest


def _resolved_names(root: Any, resolve_class: Callable[[str], type | None]) -> tuple[dict[str, type], dict[str, type]]:
    """Every class (``object`` nodes) and type (``type`` nodes) the tree names, resolved; raises
    :class:`UntrustedModelError` listing those refused. Every JSON object in the tree is a node,
    so a plain walk finds them all, including in dict keys."""
    classes: dict[str, type] = {}
    types: dict[str, type] = {}
    refused: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        tag = node.get("$")
        if tag not in ("object", "type"):
            continue
        name = node.get("class" if tag == "object" else "v")
        if not isinstance(name, str):
            raise ValueError(f"malformed model file: {tag} node without a name")
        resolved = resolve_class(name) if tag == "object" else _scalar_type(name)
        if resolved is None:
            refused.add(name)
        else:
            (classes if tag == "object" else types)[name] = resolved
    if refused:
        raise UntrustedModelError(sorted(refused))
    return classes, types


def _scalar_type(name: str) -> type | None:
    """The builtin or numpy scalar type ``name`` denotes (the only types storable as values)."""
    if name in _BUILTIN_TYPES:
        return _BUILTIN_TYPES[name]
    short = name.removeprefix("numpy.")
    if short == name or not short.isalnum():
        return None
    try:
        dtype = np.dtype(short)
    except TypeError:
        return None
    return dtype.type if dtype.kind in ARRAY_KINDS and dtype.name == short else None


def _read_array(zf: zipfile.ZipFile, index: int) -> np.ndarray:
    """Array ``index``, its dtype checked from the .npy header before the data is read."""
    fp = io.BytesIO(zf.read(_member(index)))
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        _, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        _, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"corrupt model file: unsupported .npy version {version} in {_member(index)}")
    if dtype.hasobject or dtype.kind not in ARRAY_KINDS or dtype.fields is not None:
        raise UntrustedModelError([f"numpy array of dtype {dtype} ({_member(index)})"])
    fp.seek(0)
    return np.lib.format.read_array(fp, allow_pickle=False)


class _Decoder:
    """Builds the object tree from checked JSON nodes; the inverse of :class:`_Encoder`."""

    def __init__(self, arrays: list[np.ndarray], classes: dict[str, type], types: dict[str, type]) -> None:
        self.arrays = arrays
        self.classes = classes
        self.types = types
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "tuple": lambda node: tuple(self._items(node)),
            "set": lambda node: set(self._items(node)),
            "frozenset": lambda node: frozenset(self._items(node)),
            "dict": self._dict,
            "strmap": self._strmap,
            "array": lambda node: self._array(node["i"]),
            "scalar": self._scalar,
            "dtype": lambda node: _parsed_dtype(node["v"]),
            "type": lambda node: self.types[node["v"]],
            "sparse": self._sparse,
            "object": self._object,
        }

    def decode(self, node: Any) -> Any:
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self.decode(v) for v in node]
        handler = self.handlers.get(node.get("$")) if type(node) is dict else None
        if handler is None:
            raise ValueError(f"unknown node {str(node)[:80]}")
        return handler(node)

    def _items(self, node: dict[str, Any]) -> list[Any]:
        if type(node["v"]) is not list:
            raise ValueError(f"{node['$']} node without a list of items")
        return [self.decode(v) for v in node["v"]]

    def _array(self, index: Any) -> np.ndarray:
        if type(index) is not int or not 0 <= index < len(self.arrays):
            raise ValueError(f"array index {index!r} out of range")
        return self.arrays[index]

    def _dict(self, node: dict[str, Any]) -> dict[Any, Any]:
        keys, values = node["k"], node["v"]
        if type(keys) is not list or type(values) is not list or len(keys) != len(values):
            raise ValueError("dict node with mismatched keys and values")
        return {self.decode(k): self.decode(v) for k, v in zip(keys, values, strict=True)}

    def _strmap(self, node: dict[str, Any]) -> dict[str, Any]:
        n, sep = node["n"], node["sep"]
        keys, values = self._array(node["keys"]), self._array(node["values"])
        if type(n) is not int or type(sep) is not str or len(sep) != 1 or keys.dtype != np.uint8:
            raise ValueError("malformed strmap node")
        if values.dtype.kind not in "iu" or values.shape != (n,):
            raise ValueError(f"strmap values of shape {values.shape} and dtype {values.dtype}, expected ({n},) ints")
        names = keys.tobytes().decode("utf-8", "surrogatepass").split(sep) if n else []
        if len(names) != n:
            raise ValueError(f"strmap with {len(names)} keys, expected {n}")
        # Iterating the array keeps numpy scalars (what sklearn's vocabularies hold); tolist() gives ints.
        return dict(zip(names, values if node["numpy"] is True else values.tolist(), strict=True))

    def _scalar(self, node: dict[str, Any]) -> Any:
        if "i" in node:
            array = self._array(node["i"])
            if array.ndim != 0:
                raise ValueError("scalar node pointing at a non-scalar array")
            return array[()]
        dtype, value = _parsed_dtype(node["dtype"]), node["v"]
        if dtype.kind not in "biuf" or type(value) not in (bool, int, float):
            raise ValueError(f"scalar node of dtype {dtype} with value {value!r}")
        return dtype.type(value)

    def _sparse(self, node: dict[str, Any]) -> Any:
        cls, shape = _SPARSE_TYPES[node["class"]], tuple(node["shape"])
        if len(shape) != 2 or not all(type(n) is int for n in shape):
            raise ValueError(f"sparse matrix of shape {shape!r}")
        data = self._array(node["data"])
        if node["class"].startswith("coo"):
            return cls((data, (self._array(node["row"]), self._array(node["col"]))), shape=shape)
        return cls((data, self._array(node["indices"]), self._array(node["indptr"])), shape=shape)

    def _object(self, node: dict[str, Any]) -> Any:
        cls, state = self.classes[node["class"]], self.decode(node["state"])
        if type(state) is not dict or not all(type(k) is str for k in state):
            raise ValueError(f"state of {node['class']} is not a dict of attributes")
        obj = cls.__new__(cls)
        # As pickle does: __setstate__ where the class has one (sklearn's checks the version,
        # ChoiceClassifier's fills in parameters added since), else the attributes as they are.
        if hasattr(obj, "__setstate__"):
            obj.__setstate__(state)
        else:
            obj.__dict__.update(state)
        return obj


def _parsed_dtype(text: Any) -> np.dtype:
    if type(text) is not str:
        raise ValueError(f"dtype {text!r} is not a string")
    dtype = np.dtype(text)
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UntrustedModelError([f"numpy dtype {dtype}"])
    return dtype
