"""skops files judged by the same allow list as pickles.

skops builds a tree of nodes from the archive's ``schema.json`` without importing anything,
then constructs the objects. Its own audit (:func:`skops.io.get_untrusted_types`) only
reports types outside skops' default-trusted set, and that set is broader than ours (every
numpy/scipy ufunc, ``builtins.map``, ...). So this module walks the node tree itself and
judges *every* node, defaults included:

* a node that constructs or names a class (objects, containers, arrays, reduce
  constructors, ``TypeNode``) needs an allow-listed class;
* a ``FunctionNode`` (a function reference kept on the model) needs an allow-listed
  function or class; guarded functions are refused (skops would hand out the raw one);
* ``MethodNode`` (``getattr(obj, name)`` of any name) and ``OperatorFuncNode``
  (``operator.attrgetter``/``methodcaller``/``itemgetter``) are always refused;
* a ``numpy.random.Generator`` node must name one of numpy's bit generators;
* numpy arrays come only from ``NdArrayNode`` (``numpy.ndarray``: ``np.load`` of the
  archive's ``.npy``, or an object array from its items) and ``MaskedArrayNode``
  (``numpy.ma.MaskedArray`` of an ``NdArrayNode``'s fresh array). Any other node naming an
  array class (:data:`~mlops.flavors.allowlist.ARRAY_CLASSES`) would construct it from a
  raw shape (``ListNode``/``SetNode`` call the class with a list, ``LossNode`` and
  ``ConstructorFromReduceNode`` with arguments: uninitialised memory, or ``buffer=``
  another array), and a ``MaskedArrayNode`` whose data node is not an ``NdArrayNode`` of
  its own (one shared with another attribute through its ``__id__``, a list, ...) would keep
  that object's memory (``MaskedArray(data)`` does not copy);
* node kinds this module does not know are refused;
* the literal state of every object and ``partial`` node is judged by the object-graph
  rules that the scan can decide (:mod:`mlops.flavors.static_state`): method names,
  vectorizer input, estimator slots, shadowed methods, classes and functions kept as
  values.

The file is then loaded with ``trusted=`` exactly the types found in it (all on our list),
never whole packages, and the loaded object is checked with
:func:`mlops.flavors.state_checks.validate_graph`.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from mlops.errors import FlavorError, UnsafeModel
from mlops.flavors.allowlist import CLASS, FUNCTION, array_class, canonical, kind_of, no_call
from mlops.flavors.pickle_compression import MAX_DECOMPRESSED_BYTES
from mlops.flavors.pickle_guards import BIT_GENERATOR_NAMES
from mlops.flavors.pickle_values import EDict, Global, Obj
from mlops.flavors.state_checks import validate_graph
from mlops.flavors.static_state import object_problems, partial_problems

__all__ = [
    "SkopsReport",
    "check_skops",
    "load_skops",
]

#: Node kinds that construct or name the class of their (module, class).
_CLASS_NODES = frozenset(
    ["ObjectNode", "ConstructorFromReduceNode", "ReduceNode", "TreeNode", "LossNode", "NdArrayNode", "MaskedArrayNode", "DTypeNode", "DictNode", "DefaultDictNode", "ListNode", "SetNode", "TupleNode", "SliceNode", "BytesNode", "BytearrayNode", "PartialNode", "SparseMatrixNode", "RandomStateNode", "RandomGeneratorNode", "TypeNode"]
)
_FUNCTION_NODES = frozenset({"FunctionNode"})
_ALWAYS_REFUSED = frozenset({"MethodNode", "OperatorFuncNode"})
#: Node kinds that call their class (or hand it out as a value) instead of cls.__new__.
_CALLING_NODES = frozenset({"ConstructorFromReduceNode", "ReduceNode", "TreeNode", "LossNode",
                            "TypeNode", "DictNode", "ListNode", "SetNode", "TupleNode",
                            "NdArrayNode", "RandomStateNode", "RandomGeneratorNode"})
_NO_TYPE_NODES = frozenset({"JsonNode", "CachedNode"})
#: The only node kinds that may build a numpy array, and the array class each builds.
_ARRAY_NODES = frozenset({("NdArrayNode", ("numpy", "ndarray")),
                          ("MaskedArrayNode", ("numpy.ma", "MaskedArray"))})


@dataclass(frozen=True)
class SkopsReport:
    """Types a skops file names, those refused, and the exact ``trusted`` list to load it."""

    types: tuple[str, ...]
    offending: tuple[str, ...]
    trusted: tuple[str, ...]


def _tree(data: bytes) -> Any:
    """skops' node tree of the archive (nothing imported or constructed)."""
    from skops.io._audit import get_tree

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        try:
            from skops.io._utils import read_schema
        except ImportError:  # pragma: no cover - skops < 0.16
            from skops.io._utils import LoadContext

            schema = json.loads(archive.read("schema.json"))
            context = LoadContext(src=archive, protocol=schema["protocol"])
        else:
            schema, context = read_schema(archive)
        return get_tree(schema, context, trusted=None)


def _nodes(root: Any) -> tuple[list[Any], dict[int, int]]:
    """Every node of the tree, and how many references to each (by id) the tree holds
    (skops hands out one node object for every occurrence of a memoized ``__id__``)."""
    from skops.io._audit import Node

    out, seen, todo = [], set(), [root]
    refs: dict[int, int] = {}
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        for child in node.children.values():
            values = child.values() if isinstance(child, dict) else \
                child if isinstance(child, list) else [child]
            for value in values:
                if isinstance(value, Node):
                    refs[id(value)] = refs.get(id(value), 0) + 1
                    todo.append(value)
    return out, refs


def _fresh_array(node: Any, refs: dict[int, int]) -> bool:
    """An NdArrayNode nothing else in the tree refers to (its array is new and unshared)."""
    return type(node).__name__ == "NdArrayNode" and refs.get(id(node), 0) == 1


def _judge(node: Any, refs: dict[int, int]) -> tuple[str | None, str | None]:
    """(type name, refusal reason or None) of one node; ``refs`` as :func:`_nodes`."""
    kind_name = type(node).__name__
    module, name = node.module_name, node.class_name
    dotted = f"{module}.{name}"
    if kind_name in _NO_TYPE_NODES:
        return None, None
    if kind_name in _ALWAYS_REFUSED:
        func = getattr(node, "func", None)
        return dotted, f"{dotted}.{func}" if isinstance(func, str) else dotted
    kind = kind_of(module, name)
    if kind_name in _FUNCTION_NODES:
        return dotted, None if kind in (FUNCTION, CLASS) else dotted
    if kind_name not in _CLASS_NODES:
        return dotted, f"<unsupported skops node {kind_name} for {dotted}>"
    if kind != CLASS:
        return dotted, dotted
    if kind_name in _CALLING_NODES and no_call(module, name):
        return dotted, f"<{dotted} called by a skops {kind_name}>"
    if array_class(module, name) and (kind_name, canonical(module, name)) not in _ARRAY_NODES:
        return dotted, (f"<{dotted} in a skops {kind_name} (only NdArrayNode and "
                        "MaskedArrayNode build numpy arrays; others build one from a raw "
                        "shape or over another array's memory)>")
    if kind_name == "MaskedArrayNode" and not _fresh_array(getattr(node, "data", None), refs):
        return dotted, (f"<{dotted} over another object of the file (a skops "
                        "MaskedArrayNode's data must be an array of its own: aliasing)>")
    if kind_name == "RandomGeneratorNode":
        bit_generator = getattr(node, "bit_generator_name", None)
        if bit_generator not in BIT_GENERATOR_NAMES:
            return dotted, f"numpy.random.{bit_generator}"
    return dotted, None


_UNKNOWN = Obj("skops node")
_MAX_DEPTH = 20


def _emulated(node: Any, depth: int = 0) -> Any:
    """A skops node as the pickle emulator's values (objects stay opaque: each object
    node is judged on its own)."""
    kind = type(node).__name__
    if depth > _MAX_DEPTH:
        return _UNKNOWN
    if kind == "JsonNode":
        try:
            return json.loads(node.content)
        except (TypeError, ValueError):
            return _UNKNOWN
    if kind in ("FunctionNode", "TypeNode"):
        return Global(node.module_name, node.class_name)
    if kind == "DictNode" and isinstance(getattr(node, "content", None), dict):
        return EDict([(k, _emulated(v, depth + 1)) for k, v in node.content.items()])
    if kind in ("ListNode", "TupleNode") and isinstance(getattr(node, "content", None), list):
        items = [_emulated(v, depth + 1) for v in node.content]
        return items if kind == "ListNode" else tuple(items)
    module, name = getattr(node, "module_name", None), getattr(node, "class_name", None)
    if isinstance(module, str) and isinstance(name, str) and kind != "CachedNode":
        return Obj(f"{module}.{name}", origin=Global(module, name))
    return _UNKNOWN


def _state_problems(node: Any) -> list[str]:
    """The static object-graph rules on one object or partial node."""
    kind = type(node).__name__
    if kind == "ObjectNode":
        attrs = _emulated(node.attrs) if node.attrs is not None else None
        if isinstance(attrs, EDict):
            return object_problems((node.module_name, node.class_name), attrs.pairs)
    elif kind == "PartialNode":
        parts = [_emulated(node.children.get(k)) for k in ("func", "args", "kwds", "namespace")]
        return partial_problems(*parts)
    return []


def _refuse_bomb(data: bytes) -> None:
    """An archive whose members decompress past :data:`MAX_DECOMPRESSED_BYTES` (the cap
    pickles have) is refused before any is read: 6 MB of deflated zeros is 6 GiB of
    "array". ``zipfile`` never reads a member past its declared size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FlavorError(f"skops cannot read the archive: {exc}.",
                          fix="Save it again with skops.io.dump().") from exc
    if total > MAX_DECOMPRESSED_BYTES:
        raise FlavorError(
            f"The skops archive decompresses to {total:,} bytes; the limit is "
            f"{MAX_DECOMPRESSED_BYTES:,}.",
            fix="A model that large is not a model file; save it again with skops.io.dump().")


def check_skops(data: bytes) -> SkopsReport:
    """Judge every node of a skops archive against the allow list (nothing is loaded)."""
    _refuse_bomb(data)
    try:
        root = _tree(data)
        nodes, refs = _nodes(root)
        skops_unsafe = root.get_unsafe_set()
    except Exception as exc:  # any damaged archive or schema: unreadable, not a crash
        raise FlavorError(f"skops cannot read the archive: {exc}.",
                          fix="Save it again with skops.io.dump().") from exc
    types: set[str] = set()
    offending: set[str] = set()
    for node in nodes:
        dotted, refusal = _judge(node, refs)
        if dotted is not None:
            types.add(dotted)
        if refusal is not None:
            offending.add(refusal)
        bit_generator = getattr(node, "bit_generator_name", None)
        if isinstance(bit_generator, str):
            types.add(f"numpy.random.{bit_generator}")
        if refusal is None:
            offending.update(f"<{problem}>" for problem in _state_problems(node))
    for dotted in skops_unsafe:  # skops' own findings, judged by our list too
        module, _, name = dotted.rpartition(".")
        bit_generator = module == "numpy.random" and name in BIT_GENERATOR_NAMES
        if not bit_generator and (not module or kind_of(module, name) is None):
            offending.add(dotted)
    trusted = tuple(sorted(types - offending))
    return SkopsReport(tuple(sorted(types)), tuple(sorted(offending)), trusted)


def load_skops(data: bytes, *, trust: bool = False, report: SkopsReport | None = None) -> Any:
    """Load a skops archive trusting exactly its allow-listed types.

    Refused types raise :class:`~mlops.errors.UnsafeModel` unless ``trust`` (the caller
    audited the file): then skops' own untrusted types are trusted as well.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    report = report or check_skops(data)
    if report.offending and not trust:
        raise UnsafeModel(f"The skops file uses or holds what the allow list refuses: "
                          f"{', '.join(report.offending)}.", offending=list(report.offending),
                          fix="Save the model with supported types only, or pass trust=True "
                              "if you audited the file (recorded in the audit log).")
    trusted = list(report.trusted)
    if trust:
        trusted = sorted(set(trusted) | set(report.types) | set(sio.get_untrusted_types(data=data)))
    try:
        obj = sio.loads(data, trusted=trusted)
    except UntrustedTypesFoundException as exc:  # skops found a type the walk did not
        raise UnsafeModel(f"skops refused the file: {exc}.", offending=[str(exc)],
                          fix="Save the model with supported types only.") from exc
    except UnsafeModel:
        raise
    except Exception as exc:
        raise FlavorError(f"skops cannot load the archive: {type(exc).__name__}: {exc}.",
                          fix="Save it again with skops.io.dump() and matching versions.") \
            from exc
    if not trust:
        validate_graph(obj)
    return obj
