"""Structural checks of XGBoost and LightGBM model files, before their libraries read them.

Both libraries trust their files: a split on feature 100,000,000, a child index past the
end of the tree, a LightGBM ``tree_sizes`` that does not match the trees, or a JSON/UBJSON
document nested two million deep makes them read out of bounds or overflow the stack, and
the process dies (a segfault, or ``std::terminate``) at registration or at the first
prediction. These checks read the file as data first and refuse, naming the problem:

- XGBoost JSON and UBJSON (decoded here, nested at most :data:`MAX_DEPTH` deep): every tree
  has as many entries as nodes in each per-node array; each child is another node of the
  tree, no node is the child of two nodes and the root of none, so a prediction walks down
  from the root and ends; internal nodes split on a feature the model has; categorical
  splits point inside the category lists; a linear booster has its weights.
- LightGBM text: ``tree_sizes`` matches the trees' blocks; in each tree the internal nodes
  and leaves are referenced as above, splits use features up to ``max_feature_idx``,
  categorical thresholds index ``cat_boundaries``, which index ``cat_threshold``; linear
  leaves use known features.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np
import orjson

from mlops.errors import FlavorError

__all__ = ["MAX_DEPTH", "check_lightgbm", "xgboost_document"]

#: The deepest nesting a booster document may have (XGBoost's own is under 10).
MAX_DEPTH = 64


class _Bad(ValueError):
    """A structural problem found in a booster file (reported as a FlavorError)."""


# ---------------------------------------------------------------------- XGBoost
def xgboost_document(data: bytes) -> dict[str, Any]:
    """The model document of an XGBoost JSON or UBJSON file, checked (see the module);
    a :class:`FlavorError` naming the problem otherwise."""
    try:
        if data.lstrip()[:1] == b"{" and _looks_like_json(data):
            doc = orjson.loads(data)  # orjson refuses nesting past 1,024
            _depth(doc, 0)
        else:
            doc, end = _ubj_value(memoryview(data), 0, 0)
            if end != len(data):
                raise _Bad(f"{len(data) - end} bytes follow the document")
        if not isinstance(doc, dict) or not isinstance(doc.get("learner"), dict):
            raise _Bad("there is no 'learner' object")
        _check_learner(doc["learner"])
    except (_Bad, orjson.JSONDecodeError, IndexError, KeyError, TypeError,
            struct.error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise FlavorError(f"The XGBoost model is malformed: {exc}.",
                          fix="Save the model again with Booster.save_model('model.json') "
                              "or ('model.ubj').") from exc
    return doc


def _looks_like_json(data: bytes) -> bool:
    head = data.lstrip()[:2]
    return head in (b'{"', b"{}") or head[1:2].isspace()


def _depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Bad(f"it is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, dict | list):
                _depth(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list):
                _depth(v, depth + 1)


_UBJ_SCALARS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q", b"d": ">f",
                b"D": ">d"}


def _ubj_length(buf: memoryview, pos: int) -> tuple[int, int]:
    marker = bytes(buf[pos:pos + 1])
    if marker not in _UBJ_SCALARS or marker in (b"d", b"D"):
        raise _Bad(f"a length has marker {marker!r}")
    n, pos = _ubj_scalar(buf, pos + 1, marker)
    if n < 0 or n > len(buf):
        raise _Bad(f"a length of {n}")
    return int(n), pos


def _ubj_scalar(buf: memoryview, pos: int, marker: bytes) -> tuple[Any, int]:
    fmt = _UBJ_SCALARS[marker]
    size = struct.calcsize(fmt)
    return struct.unpack_from(fmt, buf, pos)[0], pos + size


def _ubj_value(buf: memoryview, pos: int, depth: int, marker: bytes | None = None
               ) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise _Bad(f"it is nested deeper than {MAX_DEPTH} levels")
    if marker is None:
        marker = bytes(buf[pos:pos + 1])
        pos += 1
    if marker in _UBJ_SCALARS:
        return _ubj_scalar(buf, pos, marker)
    if marker in (b"S", b"H"):
        n, pos = _ubj_length(buf, pos)
        if pos + n > len(buf):
            raise _Bad("a string runs past the end")
        return bytes(buf[pos:pos + n]).decode("utf-8"), pos + n
    if marker == b"C":
        return bytes(buf[pos:pos + 1]).decode("ascii"), pos + 1
    if marker in (b"T", b"F", b"Z"):
        return {b"T": True, b"F": False, b"Z": None}[marker], pos
    if marker in (b"[", b"{"):
        return _ubj_container(buf, pos, depth, marker == b"{")
    raise _Bad(f"unknown UBJSON marker {marker!r} at byte {pos - 1}")


def _ubj_container(buf: memoryview, pos: int, depth: int, is_object: bool) -> tuple[Any, int]:
    kind = count = None
    if buf[pos:pos + 1] == b"$":
        kind = bytes(buf[pos + 1:pos + 2])
        pos += 2
        if buf[pos:pos + 1] != b"#":
            raise _Bad("a typed container has no count")
    if buf[pos:pos + 1] == b"#":
        count, pos = _ubj_length(buf, pos + 1)
    if not is_object and kind in _UBJ_SCALARS and count is not None:  # a typed array
        dtype = np.dtype(_UBJ_SCALARS[kind])
        end = pos + count * dtype.itemsize
        if end > len(buf):
            raise _Bad("an array runs past the end")
        return np.frombuffer(buf[pos:end], dtype=dtype).tolist(), end
    items: list[Any] = []
    out: dict[str, Any] = {}
    while True:
        if count is None:
            if buf[pos:pos + 1] == (b"}" if is_object else b"]"):
                return (out if is_object else items), pos + 1
            if pos >= len(buf):
                raise _Bad("a container is not closed")
        elif (len(out) if is_object else len(items)) == count:
            return (out if is_object else items), pos
        if is_object:
            n, pos = _ubj_length(buf, pos)
            key = bytes(buf[pos:pos + n]).decode("utf-8")
            value, pos = _ubj_value(buf, pos + n, depth + 1, kind)
            out[key] = value
        else:
            value, pos = _ubj_value(buf, pos, depth + 1, kind)
            items.append(value)


def _check_learner(learner: dict[str, Any]) -> None:
    params = learner.get("learner_model_param", {})
    n_features = int(params.get("num_feature", "0"))
    booster = learner.get("gradient_booster")
    if not isinstance(booster, dict):
        raise _Bad("there is no gradient_booster")
    name = booster.get("name")
    if name == "dart":
        booster = booster.get("gbtree", {})
        name = booster.get("name", "gbtree")
    if name == "gblinear":
        weights = booster.get("model", {}).get("weights", [])
        groups = max(int(params.get("num_class", "0")), int(params.get("num_target", "1")), 1)
        if len(weights) != (n_features + 1) * groups:
            raise _Bad(f"the linear booster has {len(weights)} weights for {n_features} "
                       f"features and {groups} outputs")
        return
    if name != "gbtree":
        raise _Bad(f"gradient_booster is {name!r}")
    trees = booster.get("model", {}).get("trees")
    if not isinstance(trees, list):
        raise _Bad("the model has no trees list")
    info = booster.get("model", {}).get("tree_info", [])
    if len(info) != len(trees):
        raise _Bad(f"{len(trees)} trees but {len(info)} tree_info entries")
    for t, tree in enumerate(trees):
        _check_xgb_tree(t, tree, n_features)


def _check_xgb_tree(t: int, tree: dict[str, Any], n_features: int) -> None:
    n = int(tree["tree_param"]["num_nodes"])
    if n < 1:
        raise _Bad(f"tree {t} has {n} nodes")
    for key in ("left_children", "right_children", "split_indices", "split_conditions",
                "default_left", "split_type"):
        if len(tree.get(key, ())) != n:
            raise _Bad(f"tree {t} has {n} nodes but {len(tree.get(key, ()))} {key}")
    if len(tree.get("base_weights", ())) < n:
        raise _Bad(f"tree {t} has fewer base_weights than nodes")
    left = np.asarray(tree["left_children"], dtype=np.int64)
    right = np.asarray(tree["right_children"], dtype=np.int64)
    internal = left != -1
    if not np.array_equal(internal, right != -1):
        raise _Bad(f"tree {t} has a node with one child")
    _check_children(f"tree {t}", np.concatenate([left[internal], right[internal]]), n)
    split = np.asarray(tree["split_indices"], dtype=np.int64)[internal]
    if split.size and (split.min() < 0 or split.max() >= n_features):
        raise _Bad(f"tree {t} splits on feature {int(split.max())}; the model has "
                   f"{n_features}")
    nodes = np.asarray(tree.get("categories_nodes", ()), dtype=np.int64)
    segments = np.asarray(tree.get("categories_segments", ()), dtype=np.int64)
    sizes = np.asarray(tree.get("categories_sizes", ()), dtype=np.int64)
    n_categories = len(tree.get("categories", ()))
    if not len(nodes) == len(segments) == len(sizes):
        raise _Bad(f"tree {t}'s categorical split lists differ in length")
    if len(nodes) and (nodes.min() < 0 or nodes.max() >= n or segments.min() < 0
                       or sizes.min() < 0 or (segments + sizes).max() > n_categories):
        raise _Bad(f"tree {t} has a categorical split outside its category lists")
    categorical = np.asarray(tree["split_type"], dtype=np.int64)[internal] != 0
    if categorical.sum() > len(nodes):
        raise _Bad(f"tree {t} has categorical splits without categories")


def _check_children(where: str, children: np.ndarray, n: int) -> None:
    """Every child is a node of the tree other than the root, and no node has two parents:
    a walk down from the root then visits each node at most once and ends."""
    if children.size == 0:
        return
    if children.min() < 1 or children.max() >= n:
        raise _Bad(f"{where} has a child index outside 1..{n - 1}")
    if np.bincount(children, minlength=n).max() > 1:
        raise _Bad(f"{where} has a node that is the child of two nodes")


# ---------------------------------------------------------------------- LightGBM
_TREE = re.compile(rb"^Tree=\d+\n", re.MULTILINE)


def check_lightgbm(data: bytes) -> None:
    """Refuse a LightGBM text model whose structure would make LightGBM read out of bounds
    (see the module); a :class:`FlavorError` naming the problem."""
    try:
        _check_lightgbm(data.replace(b"\r\n", b"\n"))
    except (_Bad, ValueError, KeyError) as exc:
        raise FlavorError(f"The LightGBM model is malformed: {exc}.",
                          fix="Save the model again with Booster.save_model('model.txt').") \
            from exc


def _fields(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("utf-8").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _ints(fields: dict[str, str], key: str) -> np.ndarray:
    text = fields.get(key, "")
    return np.array([int(v) for v in text.split()], dtype=np.int64) if text \
        else np.empty(0, dtype=np.int64)


def _check_lightgbm(data: bytes) -> None:
    starts = [m.start() for m in _TREE.finditer(data)]
    if not starts:
        return  # no trees: LightGBM refuses it itself
    header = _fields(data[:starts[0]])
    max_feature = int(header["max_feature_idx"])
    end_trees = data.find(b"\nend of trees", starts[-1])
    bounds = [*starts[1:], end_trees + 1 if end_trees >= 0 else len(data)]
    blocks = [data[a:b] for a, b in zip(starts, bounds, strict=True)]
    sizes = header.get("tree_sizes")
    if sizes is not None:
        declared = [int(v) for v in sizes.split()]
        actual = [len(b) for b in blocks]
        if declared != actual:
            raise _Bad(f"tree_sizes says {declared[:5]}... but the trees take {actual[:5]}...")
    for t, block in enumerate(blocks):
        _check_lgb_tree(t, _fields(block), max_feature)


def _check_lgb_tree(t: int, f: dict[str, str], max_feature: int) -> None:
    leaves = int(f["num_leaves"])
    if leaves < 1:
        raise _Bad(f"tree {t} has {leaves} leaves")
    if len(f.get("leaf_value", "").split()) != leaves:
        raise _Bad(f"tree {t} has {leaves} leaves but a different number of leaf values")
    if leaves == 1:
        return
    internal = leaves - 1
    split = _ints(f, "split_feature")
    left, right = _ints(f, "left_child"), _ints(f, "right_child")
    decision = _ints(f, "decision_type")
    threshold = f.get("threshold", "").split()
    if not len(split) == len(left) == len(right) == len(decision) == len(threshold) \
            == internal:
        raise _Bad(f"tree {t} has {leaves} leaves but not {internal} entries in each of "
                   "split_feature, threshold, decision_type, left_child and right_child")
    if split.min() < 0 or split.max() > max_feature:
        raise _Bad(f"tree {t} splits on feature {int(split.max())}; max_feature_idx is "
                   f"{max_feature}")
    children = np.concatenate([left, right])
    nodes, leaf_refs = children[children >= 0], ~children[children < 0]
    _check_children(f"tree {t}", nodes, internal)
    if leaf_refs.size != leaves or leaf_refs.min() < 0 or leaf_refs.max() >= leaves \
            or np.bincount(leaf_refs, minlength=leaves).max() > 1:
        raise _Bad(f"tree {t} does not reference each of its {leaves} leaves once")
    n_cat = int(f.get("num_cat", "0"))
    categorical = (decision & 1) == 1
    if categorical.any():
        bounds, cats = _ints(f, "cat_boundaries"), _ints(f, "cat_threshold")
        index = np.array([int(float(v)) for v in np.asarray(threshold)[categorical]])
        if len(bounds) != n_cat + 1 or (n_cat and (bounds[0] != 0
                                                   or np.any(np.diff(bounds) < 0)
                                                   or bounds[-1] != len(cats))) \
                or index.min() < 0 or index.max() >= n_cat:
            raise _Bad(f"tree {t} has a categorical split outside cat_boundaries")
    if f.get("is_linear", "0") == "1":
        used = _ints(f, "leaf_features")
        if used.size and (used.min() < 0 or used.max() > max_feature):
            raise _Bad(f"tree {t} has a linear leaf on feature {int(used.max())}")
