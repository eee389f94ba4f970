"""Stored models without pickle: the versioned envelope behind ``Detector.to_bytes`` / ``load_detector``.

Why: a model version is a database row that a worker loads. Unpickling runs whatever the bytes name, so a
pickled model is code; this format holds data only, and loading it never imports or calls a name taken
from the data.

Layout (format version 1)::

    b"ANOMALOOP-MODEL\\n"            magic, 16 bytes
    <header>\\n                       one line of strict JSON (UTF-8; no NaN/Infinity tokens)
    <payload>                        the blobs, back to back, in the order the header lists them

The header is an object::

    {"format": 1,                    format version; a reader refuses versions it does not know
     "name": "iforest",              the registered detector name
     "params": {...},                constructor keyword arguments (encoded as the state, JSON-only)
     "state": {...},                 the learned state, encoded as below
     "blobs": [{"kind": "npy", "size": 1234}, ...],
     "payload_sha256": "...",        of the whole payload (catches truncation and corruption, not an attacker)
     "libraries": {"numpy": "2.4.6", "scikit-learn": "1.9.1", ...}}   informative only

The state is a tree of JSON values. A value JSON cannot hold is an object with a ``"__t"`` tag:

===================  =========================================================================================
``__t``              holds
===================  =========================================================================================
``"float"``          a non-finite float: ``{"value": "nan" | "inf" | "-inf"}``
``"tuple"``          ``{"items": [...]}``
``"dict"``           a dict whose keys are not all strings, or that has a ``"__t"`` key: ``{"items": [[k, v]...]}``
``"bytes"``          raw bytes: ``{"blob": i}`` (e.g. ``torch.save`` weights a detector loads itself with
                     ``weights_only=True``, or a member detector's own ``to_bytes()``)
``"ndarray"``        a numpy array or scalar: ``{"blob": i, "dtype": "<f4", "shape": [n, c], "scalar": false}``;
                     the blob is a ``.npy`` file read with ``allow_pickle=False`` (structured dtypes without
                     object fields are fine; object arrays are refused when saving)
``"tensor"``         a torch tensor: ``{"blob": i, "dtype": "torch.float32", "shape": [...]}``; the blob is
                     ``torch.save`` output read with ``torch.load(weights_only=True)`` onto the CPU
``"detector"``       a nested fitted detector: ``{"name": "iforest", "blob": i}``; the blob is its own envelope
``"object"``         an instance of a class in :data:`VALUE_CLASSES`: ``{"class": "Scaler", "fields": {...}}``
                     (dataclasses rebuilt by their constructor; scikit-learn estimators rebuilt from their
                     attributes, and ``"version"`` records the scikit-learn that wrote them)
``"sklearn_tree"``   a fitted ``sklearn.tree._tree.Tree``: its constructor arguments and
                     ``__getstate__()`` (node and value arrays), checked before ``__setstate__`` (below)
===================  =========================================================================================

Only the classes listed in :data:`VALUE_CLASSES` can be rebuilt; the ``"class"`` in the data is looked up
in that fixed table, never imported. To store a new small value class, add it there (a dataclass whose
fields are storable values).

scikit-learn's IsolationForest (``iforest`` and RLAD's warm-up) is stored as its attributes and its trees'
node arrays rather than through ``skops.io``. Both end in the same place (``skops`` also rebuilds a tree
with ``Tree.__setstate__``), but skops is a new dependency whose trusted-type lists change between releases,
while this needs three allow-listed classes and a copy of each estimator's ``__dict__``, so a scikit-learn
that adds or renames a private attribute still round-trips. Tree node arrays are validated before they
reach scikit-learn's Cython (children after their parent and inside the tree, features inside the input),
because that code reads them without bounds checks. The round trip gives identical scores (a test).

Old versions (format 0: a pickle of ``{"name", "params", "state"}``) are refused by :func:`loads` with
:data:`LEGACY_MESSAGE`. :func:`convert_legacy` converts one, and only when an operator calls it: it does
unpickle, through an allow-list of the classes those versions held, so run it only on a database you trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import math
import pickle
import sys
import threading
import warnings
from typing import Any, cast

import numpy as np

MAGIC = b"ANOMALOOP-MODEL\n"
FORMAT_VERSION = 1

VALUE_CLASSES: dict[str, tuple[str, str]] = {
    # name in the data -> (module:qualname, how it is rebuilt). A fixed table: loading never imports a name
    # read from the data, only the entry that name selects here.
    "Scaler": ("app.core.windows:Scaler", "dataclass"),
    "FeedbackResult": ("app.core.feedback:FeedbackResult", "dataclass"),
    "IsolationForest": ("sklearn.ensemble:IsolationForest", "estimator"),
    "ExtraTreeRegressor": ("sklearn.tree:ExtraTreeRegressor", "estimator"),
}
"""The only classes a stored state may hold instances of (besides nested detectors)."""

LEGACY_MESSAGE = (
    "this model version was stored in the old pickle format, which is no longer loaded because unpickling "
    "stored bytes could run code; retrain the project to store a new version, or have an operator convert the "
    "stored versions once with app.core.persist.convert_legacy (it unpickles them: only on a database you trust)"
)

NPY_HEADER_LOCK = threading.Lock()
"""Held while ``np.load`` parses a stored array's header (with ``ast.literal_eval``). In CPython 3.11 the ast
module's recursion counter is shared by all threads (python/cpython#106905 and the reports around it), so two threads
parsing at once can fail with ``SystemError: AST constructor recursion depth mismatch``: seen here as a 500 when
several requests loaded a model at once. A header is a few hundred bytes; holding the lock costs nothing measurable."""

_TAG = "__t"
_LEAF, _UNDEFINED = -1, -2  # scikit-learn's TREE_LEAF (no child) and TREE_UNDEFINED (a leaf's feature)


class ModelFormatError(ValueError):
    """The bytes are not a model this version can load (old pickle, foreign data, tampered or truncated)."""


class LegacyModelError(ModelFormatError):
    """The bytes are a model stored in the old pickle format (see :data:`LEGACY_MESSAGE`)."""


# -- the envelope ----------------------------------------------------------------------------------


def dumps(name: str, params: dict[str, Any], state: dict[str, Any]) -> bytes:
    """The envelope of one detector: ``name``, constructor ``params`` and learned ``state``.

    Raises ``TypeError`` naming the value that cannot be stored safely (e.g. an arbitrary object).
    """
    blobs: list[tuple[str, bytes]] = []
    header = {
        "format": FORMAT_VERSION,
        "name": name,
        "params": _encode(params, None, "params"),
        "state": _encode(state, blobs, "state"),
    }
    payload = b"".join(b for _, b in blobs)
    header["blobs"] = [{"kind": kind, "size": len(b)} for kind, b in blobs]
    header["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    header["libraries"] = _libraries()
    line = json.dumps(header, allow_nan=False, separators=(",", ":"), ensure_ascii=True).encode()
    return MAGIC + line + b"\n" + payload


def read_header(data: bytes) -> dict[str, Any]:
    """The JSON header of an envelope, checked for shape and version (blobs not read)."""
    return _split(data)[0]


def loads(data: bytes) -> dict[str, Any]:
    """``{"name", "params", "state"}`` decoded from :func:`dumps` output (what ``Detector.from_state`` takes).

    Raises :class:`LegacyModelError` for the old pickle format and :class:`ModelFormatError` for anything
    else that is not an intact envelope; nothing in ``data`` is ever unpickled or imported.
    """
    header, payload = _split(data)
    blobs = _blobs(header, payload)
    try:
        params = _decode(header["params"], None)
        state = _decode(header["state"], blobs)
    except ModelFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ModelFormatError(f"stored {header['name']!r} model has a malformed state: {exc}") from exc
    if not isinstance(params, dict) or not isinstance(state, dict):
        raise ModelFormatError("stored model's params and state must be objects")
    return {"name": header["name"], "params": params, "state": state}


def is_legacy(data: bytes) -> bool:
    """Whether ``data`` looks like a model stored in the old pickle format (protocol 2 to 5 header)."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    data = bytes(data)
    if not data.startswith(MAGIC):
        if is_legacy(data):
            raise LegacyModelError(LEGACY_MESSAGE)
        raise ModelFormatError("these bytes are not a stored anomaloop model (no ANOMALOOP-MODEL header)")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise ModelFormatError("stored model is truncated: its header line has no end")
    try:
        header = json.loads(data[len(MAGIC) : end], parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; RecursionError: deep nesting
        raise ModelFormatError(f"stored model's header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ModelFormatError("stored model's header is not a JSON object")
    version = header.get("format")
    if type(version) is not int or version != FORMAT_VERSION:  # not bool: True == 1
        raise ModelFormatError(
            f"stored model has format version {version!r}; this anomaloop reads "
            f"version {FORMAT_VERSION} (a newer release may have written it)"
        )
    missing = [k for k in ("name", "params", "state", "blobs", "payload_sha256") if k not in header]
    if missing:
        raise ModelFormatError(f"stored model's header lacks {missing}")
    if not isinstance(header["name"], str) or not isinstance(header["blobs"], list):
        raise ModelFormatError("stored model's header has a malformed name or blob list")
    return header, data[end + 1 :]


def _refuse_constant(token: str) -> float:
    raise ValueError(f"non-standard JSON constant {token}")


def _blobs(header: dict[str, Any], payload: bytes) -> list[tuple[str, bytes]]:
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise ModelFormatError("stored model's payload does not match its checksum (truncated or altered)")
    out, at = [], 0
    for entry in header["blobs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise ModelFormatError(f"stored model's blob entry {entry!r} is malformed")
        out.append((str(entry.get("kind")), payload[at : at + entry["size"]]))
        at += entry["size"]
    if at != len(payload):
        raise ModelFormatError(f"stored model's blobs cover {at} bytes of a {len(payload)}-byte payload")
    return out


def _libraries() -> dict[str, str]:
    found = {"numpy": np.__version__}
    for module, label in (("sklearn", "scikit-learn"), ("torch", "torch")):
        if module in sys.modules:  # record what is in use; never import torch just to name its version
            found[label] = str(getattr(sys.modules[module], "__version__", "?"))
    return found


# -- encoding --------------------------------------------------------------------------------------


def _encode(value: Any, blobs: list[tuple[str, bytes]] | None, where: str) -> Any:
    """``value`` as JSON with tagged objects; binary values are appended to ``blobs`` (``None``: JSON only)."""
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
    if type(value) is list:
        return [_encode(v, blobs, f"{where}[{i}]") for i, v in enumerate(value)]
    if type(value) is tuple:
        return {_TAG: "tuple", "items": [_encode(v, blobs, f"{where}[{i}]") for i, v in enumerate(value)]}
    if type(value) is dict:
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: _encode(v, blobs, f"{where}.{k}") for k, v in value.items()}
        return {
            _TAG: "dict",
            "items": [[_encode(k, blobs, where), _encode(v, blobs, f"{where}[{k!r}]")] for k, v in value.items()],
        }
    if blobs is None:
        raise TypeError(
            f"{where} is a {type(value).__name__}; detector parameters must be JSON values "
            "(None, bool, int, float, str, list, tuple, dict)"
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_TAG: "bytes", "blob": _add(blobs, "bytes", bytes(value))}
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"{where} is a numpy array of Python objects, which cannot be stored without pickle")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return {
            _TAG: "ndarray",
            "blob": _add(blobs, "npy", buf.getvalue()),
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "scalar": isinstance(value, np.generic),
        }
    torch = sys.modules.get("torch")  # a tensor exists only if torch is imported: never import it here
    if torch is not None and isinstance(value, torch.Tensor):
        buf = io.BytesIO()
        torch.save(value.detach().cpu(), buf)
        return {
            _TAG: "tensor",
            "blob": _add(blobs, "torch", buf.getvalue()),
            "dtype": str(value.dtype),
            "shape": list(value.shape),
        }
    from app.core.detectors.base import Detector  # here, not at the top: base imports this module

    if isinstance(value, Detector):
        return {_TAG: "detector", "name": value.name, "blob": _add(blobs, "model", value.to_bytes())}
    if type(value).__name__ == "Tree" and type(value).__module__ == "sklearn.tree._tree":
        n_features, n_classes, n_outputs = value.__reduce__()[1]
        return {
            _TAG: "sklearn_tree",
            "n_features": int(n_features),
            "n_outputs": int(n_outputs),
            "n_classes": _encode(np.asarray(n_classes), blobs, f"{where}.n_classes"),
            "state": _encode(value.__getstate__(), blobs, f"{where}.state"),
        }
    name = type(value).__name__
    if name in VALUE_CLASSES and _value_class(name) is type(value):
        kind = VALUE_CLASSES[name][1]
        if kind == "dataclass":
            assert dataclasses.is_dataclass(value)  # VALUE_CLASSES lists it as one
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return {_TAG: "object", "class": name, "fields": _encode(fields, blobs, f"{where}.{name}")}
        import sklearn

        return {
            _TAG: "object",
            "class": name,
            "version": sklearn.__version__,
            "fields": _encode(dict(vars(value)), blobs, f"{where}.{name}"),
        }
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a stored model "
        "cannot hold; store its arrays/fields, or add a dataclass to app.core.persist.VALUE_CLASSES"
    )


def _add(blobs: list[tuple[str, bytes]], kind: str, data: bytes) -> int:
    blobs.append((kind, data))
    return len(blobs) - 1


def _value_class(name: str) -> type[Any]:
    target = VALUE_CLASSES[name][0]
    module_name, qualname = target.split(":")
    return cast("type[Any]", getattr(importlib.import_module(module_name), qualname))


# -- decoding --------------------------------------------------------------------------------------


def _decode(value: Any, blobs: list[tuple[str, bytes]] | None) -> Any:
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [_decode(v, blobs) for v in value]
    if type(value) is not dict:
        raise ModelFormatError(f"unexpected JSON value {value!r}")
    if _TAG not in value:
        return {k: _decode(v, blobs) for k, v in value.items()}
    tag = value[_TAG]
    if tag == "float":
        if value["value"] not in ("nan", "inf", "-inf"):
            raise ModelFormatError(f"non-finite float {value['value']!r} is not nan, inf or -inf")
        return float(value["value"])
    if tag == "tuple":
        return tuple(_decode(v, blobs) for v in _list(value["items"]))
    if tag == "dict":
        return {_hashable(_decode(k, blobs)): _decode(v, blobs) for k, v in _pairs(value["items"])}
    if blobs is None:
        raise ModelFormatError(f"stored parameters hold a {tag!r} value; parameters must be JSON values")
    if tag == "bytes":
        return _blob(blobs, value, "bytes")
    if tag == "ndarray":
        return _decode_array(value, blobs)
    if tag == "tensor":
        return _decode_tensor(value, blobs)
    if tag == "detector":
        from app.core.detectors.registry import load_detector  # here: the registry imports base, base this

        nested = load_detector(_blob(blobs, value, "model"))
        if nested.name != value.get("name"):
            raise ModelFormatError(f"nested model is a {nested.name!r}, its tag says {value.get('name')!r}")
        return nested
    if tag == "sklearn_tree":
        return _decode_tree(value, blobs)
    if tag == "object":
        return _decode_object(value, blobs)
    raise ModelFormatError(f"stored state holds an unknown value tag {tag!r}")


def _list(items: Any) -> list[Any]:
    if type(items) is not list:
        raise ModelFormatError(f"expected a list, got {type(items).__name__}")
    return items


def _pairs(items: Any) -> list[list[Any]]:
    pairs = _list(items)
    if not all(type(p) is list and len(p) == 2 for p in pairs):
        raise ModelFormatError("a stored dict's items must be [key, value] pairs")
    return pairs


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        raise ModelFormatError(f"stored dict key {key!r} is not hashable") from None
    return key


def _blob(blobs: list[tuple[str, bytes]], value: dict[str, Any], kind: str) -> bytes:
    index = value.get("blob")
    if type(index) is not int or not 0 <= index < len(blobs):
        raise ModelFormatError(f"stored value refers to blob {index!r}, the payload has {len(blobs)}")
    found, data = blobs[index]
    if found != kind:
        raise ModelFormatError(f"blob {index} is {found!r}, the state expects {kind!r}")
    return data


def _decode_array(value: dict[str, Any], blobs: list[tuple[str, bytes]]) -> Any:
    try:
        with NPY_HEADER_LOCK:
            arr = np.load(io.BytesIO(_blob(blobs, value, "npy")), allow_pickle=False)
    except ModelFormatError:
        raise
    except Exception as exc:  # np.load's errors on a corrupt file vary (ValueError, EOFError, ...)
        raise ModelFormatError(f"stored array {value.get('blob')} is not a readable .npy: {exc}") from exc
    if arr.dtype.str != value.get("dtype") or list(arr.shape) != value.get("shape"):
        raise ModelFormatError(
            f"stored array is {arr.dtype.str} {list(arr.shape)}, its header says "
            f"{value.get('dtype')} {value.get('shape')}"
        )
    if value.get("scalar"):
        if arr.ndim != 0:
            raise ModelFormatError("a stored numpy scalar must be a 0-d array")
        return arr[()]
    return arr


def _decode_tensor(value: dict[str, Any], blobs: list[tuple[str, bytes]]) -> Any:
    import torch  # only a state that holds tensors needs torch

    try:
        tensor = torch.load(io.BytesIO(_blob(blobs, value, "torch")), map_location="cpu", weights_only=True)
    except ModelFormatError:
        raise
    except Exception as exc:  # weights_only refusals and corrupt archives raise several types
        raise ModelFormatError(f"stored tensor {value.get('blob')} could not be read safely: {exc}") from exc
    if (
        not isinstance(tensor, torch.Tensor)
        or str(tensor.dtype) != value.get("dtype")
        or list(tensor.shape) != value.get("shape")
    ):
        raise ModelFormatError("stored tensor does not match its header's dtype and shape")
    return tensor


def _decode_object(value: dict[str, Any], blobs: list[tuple[str, bytes]]) -> Any:
    name = value.get("class")
    if name not in VALUE_CLASSES:
        raise ModelFormatError(
            f"stored state holds a {name!r}, which is not an allowed value class ({', '.join(sorted(VALUE_CLASSES))})"
        )
    cls, kind = _value_class(name), VALUE_CLASSES[name][1]
    fields = _decode(value.get("fields"), blobs)
    if type(fields) is not dict or not all(type(k) is str for k in fields):
        raise ModelFormatError(f"stored {name} fields must be an object")
    if kind == "dataclass":
        declared = {f.name: f for f in dataclasses.fields(cls)}
        if set(fields) != set(declared):
            raise ModelFormatError(f"stored {name} has fields {sorted(fields)}, the class {sorted(declared)}")
        obj = cls(**{k: v for k, v in fields.items() if declared[k].init})
        for k, v in fields.items():
            if not declared[k].init:
                object.__setattr__(obj, k, v)
        return obj
    import sklearn

    if value.get("version") != sklearn.__version__:
        warnings.warn(
            f"stored {name} was written by scikit-learn {value.get('version')}, this is "
            f"{sklearn.__version__}; scores may differ",
            stacklevel=2,
        )
    # scikit-learn's own unpickling does the same: no __init__, then the attributes. (The ignore: mypy reads
    # `__new__` on a `type[Any]` as the metaclass's, `type.__new__`.)
    obj = cls.__new__(cls)  # type: ignore[call-overload]
    obj.__dict__.update(fields)
    if name == "IsolationForest":
        _check_forest(obj)
    return obj


def _decode_tree(value: dict[str, Any], blobs: list[tuple[str, bytes]]) -> Any:
    from sklearn.tree._tree import Tree

    n_features, n_outputs = value.get("n_features"), value.get("n_outputs")
    n_classes = _decode(value.get("n_classes"), blobs)
    state = _decode(value.get("state"), blobs)
    if type(n_features) is not int or type(n_outputs) is not int or n_features < 1 or n_outputs < 1:
        raise ModelFormatError("stored tree has a malformed feature or output count")
    if not isinstance(n_classes, np.ndarray) or n_classes.dtype.kind not in "iu" or n_classes.shape != (n_outputs,):
        raise ModelFormatError("stored tree's class counts must be an integer array, one per output")
    if type(state) is not dict or not isinstance(state.get("nodes"), np.ndarray):
        raise ModelFormatError("stored tree state lacks its node array")
    _check_nodes(state["nodes"], state.get("node_count"), n_features)
    tree = Tree(n_features, n_classes.astype(np.intp), n_outputs)
    tree.__setstate__(state)  # checks the node dtype and the value array's shape itself
    return tree


def _check_nodes(nodes: np.ndarray, node_count: Any, n_features: int) -> None:
    """Nodes scikit-learn's Cython may walk without bounds checks: each internal node's children lie inside
    the tree and after it (so every walk ends at a leaf), and its feature is a column of the input."""
    names = nodes.dtype.names or ()
    if nodes.ndim != 1 or not {"left_child", "right_child", "feature"} <= set(names):
        raise ModelFormatError("stored tree nodes are not a 1-D structured array with children and features")
    if type(node_count) is not int or node_count != len(nodes) or node_count < 1:
        raise ModelFormatError(f"stored tree has node_count {node_count!r} for {len(nodes)} nodes")
    left, right, feature = (np.asarray(nodes[k], dtype=np.int64) for k in ("left_child", "right_child", "feature"))
    leaf = left == _LEAF
    own = np.arange(len(nodes))
    inner = ~leaf
    ok = bool((right[leaf] == _LEAF).all())  # a node has both children or none
    ok = ok and bool(((left[inner] > own[inner]) & (left[inner] < len(nodes))).all())
    ok = ok and bool(((right[inner] > own[inner]) & (right[inner] < len(nodes))).all())
    ok = ok and bool(((feature[inner] >= 0) & (feature[inner] < n_features)).all())
    if not ok:
        raise ModelFormatError("stored tree has nodes whose children or features fall outside the tree")


def _check_forest(forest: Any) -> None:
    """The trees of a rebuilt IsolationForest see exactly the columns their node features index: scoring
    passes each tree ``X[:, features]`` (or ``X`` itself) with ``check_input=False``."""
    trees, features = getattr(forest, "estimators_", None), getattr(forest, "estimators_features_", None)
    n_in = getattr(forest, "n_features_in_", None)
    if type(trees) is not list or type(features) is not list or len(trees) != len(features) or type(n_in) is not int:
        raise ModelFormatError("stored IsolationForest lacks matching estimators_ / estimators_features_")
    whole = getattr(forest, "_max_features", n_in) == n_in
    for tree, cols in zip(trees, features, strict=True):
        inner = getattr(tree, "tree_", None)
        if inner is None or not isinstance(cols, np.ndarray) or cols.ndim != 1 or cols.dtype.kind not in "iu":
            raise ModelFormatError("stored IsolationForest has a tree without nodes or feature indices")
        if len(cols) and not (cols.min() >= 0 and cols.max() < n_in):
            raise ModelFormatError("stored IsolationForest tree uses features outside the input")
        if inner.n_features != (n_in if whole else len(cols)) or getattr(tree, "n_features_in_", None) != (
            n_in if whole else len(cols)
        ):
            raise ModelFormatError("stored IsolationForest tree does not fit the number of input features")


# -- the old pickle format: an explicit, one-shot conversion ---------------------------------------

_LEGACY_GLOBALS = {
    # Everything the pickled versions of format 0 referenced (numpy arrays and scalars, the forest and its
    # trees, the project's value classes and RLAD's nested forest detector); nothing else is resolved.
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("sklearn.ensemble._iforest", "IsolationForest"),
    ("sklearn.tree._classes", "ExtraTreeRegressor"),
    ("sklearn.tree._tree", "Tree"),
    ("app.core.windows", "Scaler"),
    ("app.core.feedback", "FeedbackResult"),
    ("app.core.detectors.iforest", "IForestDetector"),
}


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _LEGACY_GLOBALS:
            raise ModelFormatError(f"old model refers to {module}.{name}, which the conversion does not allow")
        return super().find_class(module, name)


def convert_legacy(data: bytes) -> bytes:
    """Convert one model stored in the old pickle format (format 0) into the current envelope.

    An operator step, never called implicitly: it unpickles ``data`` (through an allow-list of the classes
    old versions held, which refuses anything else, but unpickling is still only as safe as those classes'
    own state restoring), rebuilds the detector (nested old-format members, e.g. an ensemble's, are
    converted first) and returns its ``to_bytes()``, checked to load. Raises :class:`ModelFormatError` if
    ``data`` is not an old-format model.
    """
    from app.core.detectors.registry import detector_class, load_detector  # the registry imports base, base this

    payload = _legacy_payload(data)
    payload["state"] = _convert_nested(payload["state"])
    converted = detector_class(payload["name"]).from_state(payload).to_bytes()
    load_detector(converted)  # fails here, not later in a worker, if the conversion lost something
    return converted


def _legacy_payload(data: bytes) -> dict[str, Any]:
    if not is_legacy(data):
        raise ModelFormatError("these bytes are not an old (pickled) anomaloop model")
    try:
        payload = _LegacyUnpickler(io.BytesIO(bytes(data))).load()
    except ModelFormatError:
        raise
    except Exception as exc:  # a corrupt pickle raises many types
        raise ModelFormatError(f"old model could not be read: {exc}") from exc
    if type(payload) is not dict or not {"name", "params", "state"} <= set(payload):
        raise ModelFormatError("old model is not a {name, params, state} record")
    return payload


def _convert_nested(value: Any) -> Any:
    """``value`` with every nested old-format model (bytes holding one) converted to the envelope."""
    if isinstance(value, bytes) and is_legacy(value):
        try:
            _legacy_payload(value)
        except ModelFormatError:
            return value  # pickle-looking bytes that are not a model (torch.save writes zip files, not these)
        return convert_legacy(value)
    if type(value) is list:
        return [_convert_nested(v) for v in value]
    if type(value) is tuple:
        return tuple(_convert_nested(v) for v in value)
    if type(value) is dict:
        return {k: _convert_nested(v) for k, v in value.items()}
    return value


__all__ = [
    "FORMAT_VERSION",
    "LEGACY_MESSAGE",
    "MAGIC",
    "VALUE_CLASSES",
    "LegacyModelError",
    "ModelFormatError",
    "convert_legacy",
    "dumps",
    "is_legacy",
    "loads",
    "read_header",
]
