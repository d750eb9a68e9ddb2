"""Consistency checks for allow-listed objects whose native code trusts their state.

An allow list stops a file from *calling* anything unexpected, but some allowed classes
keep indices or flags that their C/Cython code uses without bounds checks. A file that
builds such an object with crafted state gets memory corruption instead of a function
call, for example:

* a ``numpy.dtype`` whose pickled flags say "no Python objects" for an object dtype makes
  ``ndarray.__setstate__``/``frombuffer`` read raw bytes as object pointers; a structured
  dtype with a field offset past its item size reads and writes out of bounds;
* a pandas ``BlockManager`` whose block placement points past its columns, or a
  ``Categorical``/``MultiIndex`` whose codes point past its categories or levels;
* a scikit-learn ``Tree``, HistGradientBoosting ``TreePredictor``, ``KDTree``/``BallTree``
  or a scipy sparse matrix whose child/feature/row indices point outside their arrays.

:func:`validate` runs the check of an object's class (by ``(module, qualname)`` along its
MRO); the restricted unpickler calls it after every object construction and BUILD, and
:func:`validate_graph` walks every loaded object (pickle, joblib or skops), also applying
the rules on what allowed objects may hold (:mod:`mlops.flavors.graph_policy`).
:func:`flags_problem` is the dtype flag rule the static scanner applies to emulated dtypes
too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from mlops.errors import UnsafeModel

__all__ = [
    "check_dtype",
    "flags_problem",
    "validate",
    "validate_graph",
]

_REFCOUNT, _LIST_PICKLE, _IS_POINTER = 0x01, 0x02, 0x04
_FIX = "Save the model again with the library that produced it; do not edit model files."


def _refuse(what: str, reason: str) -> UnsafeModel:
    return UnsafeModel(f"The model file holds a {what} with inconsistent state ({reason}); "
                       "refused.", offending=[f"<inconsistent {what}>"], fix=_FIX)


def flags_problem(structural_object: bool, flags: int) -> str | None:
    """Why numpy dtype ``flags`` disagree with whether the layout holds objects (None: ok).

    numpy trusts pickled flags: object-ness bits missing on an object layout turn raw file
    bytes into object pointers; present on a plain layout they make numpy refcount raw data.
    """
    refcount, listpickle = bool(flags & _REFCOUNT), bool(flags & _LIST_PICKLE)
    if refcount != structural_object or listpickle != structural_object:
        return f"flags {flags} disagree with {'an object' if structural_object else 'a plain'} " \
               "layout"
    if not structural_object and flags & _IS_POINTER:
        return f"flags {flags} mark plain data as pointers"
    return None


def _structural_object(d: np.dtype) -> bool:
    if d.kind == "O":
        return True
    if d.subdtype is not None:
        return _structural_object(d.subdtype[0])
    if d.names:
        return any(_structural_object(d.fields[n][0]) for n in d.names)  # type: ignore[index]
    return False


def check_dtype(d: np.dtype) -> None:
    """Refuse a dtype whose flags, field offsets or sub-array size are inconsistent."""
    if d.kind == "T":
        raise _refuse("numpy dtype", "variable-width string dtypes are not supported")
    structural = _structural_object(d)
    problem = flags_problem(structural, int(d.flags))
    if problem:
        raise _refuse("numpy dtype", problem)
    if d.subdtype is not None:
        base, shape = d.subdtype
        check_dtype(base)
        if base.itemsize * int(np.prod(shape, dtype=np.int64)) != d.itemsize:
            raise _refuse("numpy dtype", "sub-array size differs from the item size")
    if d.names:
        spans = []
        for name in d.names:
            field, offset = d.fields[name][:2]  # type: ignore[index]
            check_dtype(field)
            if offset < 0 or offset + field.itemsize > d.itemsize:
                raise _refuse("numpy dtype", f"field {name!r} lies outside the item")
            spans.append((offset, offset + field.itemsize))
        if structural:
            spans.sort()
            if any(a_end > b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans)):
                raise _refuse("numpy dtype", "fields overlap next to Python objects")


def _in_range(values: Any, low: int, high: int) -> bool:
    arr = np.asarray(values)
    if arr.size == 0:
        return True
    if arr.dtype.kind not in "iu":
        return False
    return int(arr.min()) >= low and int(arr.max()) < high


def _check_tree(tree: Any) -> None:
    """sklearn.tree._tree.Tree: children after their parent, features within range."""
    n = int(tree.node_count)
    if n == 0:
        return
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise _refuse("decision tree", "a node has exactly one child")
    inner = np.flatnonzero(~leaf)
    if inner.size:
        lo = np.minimum(left[inner], right[inner]) - inner
        hi = np.maximum(left[inner], right[inner])
        if int(lo.min()) <= 0 or int(hi.max()) >= n:
            raise _refuse("decision tree", "child index out of range")
        if not _in_range(np.asarray(tree.feature)[inner], 0, int(tree.n_features)):
            raise _refuse("decision tree", "feature index out of range")
    if np.asarray(tree.value).shape[0] < n:
        raise _refuse("decision tree", "fewer values than nodes")


def _check_predictor(pred: Any) -> None:
    """HistGradientBoosting TreePredictor: children and bitset indices within range."""
    nodes = getattr(pred, "nodes", None)
    if not isinstance(nodes, np.ndarray) or nodes.dtype.names is None:
        return  # still being built (BUILD comes later)
    n = len(nodes)
    inner = nodes["is_leaf"] == 0
    index = np.arange(n)
    for side in ("left", "right"):
        child = nodes[side][inner].astype(np.int64)
        if not (np.all(child > index[inner]) and _in_range(child, 0, n)):
            raise _refuse("gradient boosting tree", "child index out of range")
    cat = inner & (nodes["is_categorical"] != 0)
    bitsets = getattr(pred, "raw_left_cat_bitsets", None)
    if cat.any() and not (isinstance(bitsets, np.ndarray)
                          and _in_range(nodes["bitset_idx"][cat], 0, len(bitsets))):
        raise _refuse("gradient boosting tree", "bitset index out of range")
    if not _in_range(nodes["feature_idx"][inner], 0, 2**31):
        raise _refuse("gradient boosting tree", "negative feature index")


def _check_hist_gradient_boosting(est: Any) -> None:
    n_features = getattr(est, "n_features_in_", None)
    for per_iter in getattr(est, "_predictors", None) or ():
        for pred in per_iter:
            nodes = getattr(pred, "nodes", None)
            if n_features is None or not isinstance(nodes, np.ndarray):
                continue
            inner = nodes["is_leaf"] == 0
            if not _in_range(nodes["feature_idx"][inner], 0, int(n_features)):
                raise _refuse("gradient boosting tree", "feature index out of range")


def _check_binary_tree(tree: Any) -> None:
    """KDTree/BallTree: sample indices and node ranges within their arrays."""
    state = tree.__getstate__()
    data, idx, node_data, bounds = (np.asarray(a) for a in state[:4])
    if data.ndim != 2 or data.shape[0] == 0:
        return  # an unbuilt tree holds no arrays
    n_nodes = len(node_data)
    if not _in_range(idx, 0, data.shape[0]) or len(idx) != data.shape[0]:
        raise _refuse("neighbours tree", "sample index out of range")
    start, end = node_data["idx_start"], node_data["idx_end"]
    if not (_in_range(start, 0, len(idx) + 1) and _in_range(end, 0, len(idx) + 1)
            and np.all(start <= end)):
        raise _refuse("neighbours tree", "node range out of bounds")
    inner = np.flatnonzero(node_data["is_leaf"] == 0)
    if inner.size and int(inner.max()) * 2 + 2 >= n_nodes:
        raise _refuse("neighbours tree", "child node out of range")
    if bounds.ndim != 3 or bounds.shape[1] != n_nodes or bounds.shape[2] != data.shape[1]:
        raise _refuse("neighbours tree", "node bounds do not match the nodes")


def _check_sparse_compressed(matrix: Any) -> None:
    if hasattr(matrix, "indptr"):
        try:
            matrix.check_format(full_check=True)
        except Exception as exc:
            raise _refuse("sparse matrix", str(exc)) from exc


def _check_sparse_coo(matrix: Any) -> None:
    if hasattr(matrix, "coords"):
        try:
            matrix._check()
        except Exception as exc:
            raise _refuse("sparse matrix", str(exc)) from exc


def _check_block_manager(mgr: Any) -> None:
    """pandas BlockManager: every column placed exactly once, within the columns axis."""
    axes, blocks = getattr(mgr, "axes", None), getattr(mgr, "blocks", None)
    if not axes or blocks is None:
        return
    n = len(axes[0])
    placed: list[np.ndarray] = []
    for block in blocks:
        locs = np.asarray(block.mgr_locs.as_array, dtype=np.int64)
        shape: tuple[int, ...] = tuple(getattr(block.values, "shape", ()))
        rows = len(axes[1]) if mgr.ndim == 2 else n
        columns = shape[0] if len(shape) == 2 else 1  # extension arrays are 1-D
        if len(shape) not in (1, 2) or shape[-1] != rows or (mgr.ndim == 2
                                                             and columns != len(locs)):
            raise _refuse("pandas data", "block shape does not match its axes")
        placed.append(locs)
    if mgr.ndim == 2:
        every = np.concatenate(placed) if placed else np.empty(0, np.int64)
        if len(every) != n or not np.array_equal(np.sort(every), np.arange(n)):
            raise _refuse("pandas frame", "block placement does not cover the columns exactly")


def _check_categorical(cat: Any) -> None:
    codes = getattr(cat, "_ndarray", None)
    dtype = getattr(cat, "_dtype", None)
    if codes is None or dtype is None:
        return
    if not _in_range(codes, -1, len(dtype.categories)):
        raise _refuse("pandas categorical", "code out of range")


def _check_multiindex(index: Any) -> None:
    levels, codes = getattr(index, "_levels", None), getattr(index, "_codes", None)
    if levels is None or codes is None:
        return
    if len(levels) != len(codes):
        raise _refuse("pandas MultiIndex", "levels and codes differ in number")
    for level, code in zip(levels, codes, strict=True):
        if not _in_range(code, -1, len(level)):
            raise _refuse("pandas MultiIndex", "code out of range")


#: Checked while loading, right after each construction or BUILD: classes whose state other
#: library code may use before loading ends (numpy builds arrays with a dtype at once,
#: pandas reads placements and codes as soon as a frame is touched). The others are only
#: used at predict time and are checked once, on the finished object (their state before
#: BUILD may be uninitialised memory).
_IMMEDIATE = frozenset({("numpy", "dtype"),
                        ("pandas.core.internals.managers", "BaseBlockManager"),
                        ("pandas", "Categorical"), ("pandas", "MultiIndex")})

_VALIDATORS: dict[tuple[str, str], Callable[[Any], None]] = {
    ("numpy", "dtype"): check_dtype,
    ("sklearn.tree._tree", "Tree"): _check_tree,
    ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor"): _check_predictor,
    ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
     "BaseHistGradientBoosting"): _check_hist_gradient_boosting,
    ("sklearn.neighbors._kd_tree", "KDTree"): _check_binary_tree,
    ("sklearn.neighbors._ball_tree", "BallTree"): _check_binary_tree,
    ("scipy.sparse._compressed", "_cs_matrix"): _check_sparse_compressed,
    ("scipy.sparse._coo", "_coo_base"): _check_sparse_coo,
    ("pandas.core.internals.managers", "BaseBlockManager"): _check_block_manager,
    ("pandas", "Categorical"): _check_categorical,
    ("pandas", "MultiIndex"): _check_multiindex,
}


def validate(obj: Any, *, final: bool = False) -> None:
    """Run the consistency check of ``obj``'s class, if it has one; raise UnsafeModel.

    While a file is still loading (``final`` false) the classes whose state is only
    meaningful after their BUILD are skipped; :func:`validate_graph` checks them at the end.
    """
    found = _validator_of(type(obj))
    if found is not None and (final or found[0] in _IMMEDIATE):
        found[1](obj)


_Found = tuple[tuple[str, str], Callable[[Any], None]] | None
_BY_TYPE: dict[type, _Found] = {}


def _validator_of(cls: type) -> _Found:
    if cls in _BY_TYPE:
        return _BY_TYPE[cls]
    found: _Found = None
    for klass in cls.__mro__:
        key = (klass.__module__, klass.__qualname__)
        check = _VALIDATORS.get(key)
        if check is not None:
            found = key, check
            break
    if len(_BY_TYPE) < 10_000:
        _BY_TYPE[cls] = found
    return found


def validate_graph(root: Any, limit: int = 2_000_000) -> None:
    """:func:`validate` (final) every object reachable from ``root`` through attributes,
    slots, containers, object arrays and partials, and judge each by the object-graph rules
    of :mod:`mlops.flavors.graph_policy` (what allowed objects may hold): run on every
    loaded model, pickle or skops."""
    from mlops.flavors.graph_policy import GraphChecker

    checker = GraphChecker()
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        if len(seen) > limit:
            raise _refuse("model", "too many objects to check")
        validate(obj, final=True)
        todo.extend(checker.visit(obj))
