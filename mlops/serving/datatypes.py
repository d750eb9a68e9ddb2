"""Open Inference Protocol datatypes: their numpy types and ranges, the check of a
tensor's JSON values against its datatype, and the datatype of a column or an output.

The JSON form and the binary form (:mod:`~mlops.serving.binary`) read through the same
table, so an ``INT8`` is an ``int8`` whichever way it arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops.errors import BadRequest, shown

__all__ = [
    "NUMERIC",
    "TYPES",
    "check_json_values",
    "json_array",
    "numpy_dtype",
    "v2_datatype",
    "v2_output_type",
    "v2_type_name",
]

_INTEGERS = {"UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
             "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8"}
_FLOATS = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
_DTYPES: dict[str, np.dtype[Any]] = {
    **{k: np.dtype(v) for k, v in _INTEGERS.items()},
    **{k: np.dtype(v) for k, v in _FLOATS.items()},
    "BOOL": np.dtype("?"),
}
NUMERIC = frozenset(_DTYPES)
TYPES = NUMERIC | {"BYTES"}

# the Python types that JSON values of each datatype may have (None, a missing value, is
# allowed everywhere: the column's nullability decides)
_ALLOWED: dict[str, frozenset[type]] = {
    **{k: frozenset({int}) for k in _INTEGERS},
    **{k: frozenset({int, float}) for k in _FLOATS},
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str}),
}
_RANGES: dict[str, tuple[int | float, int | float]] = {  # integers exact, floats finite
    **{k: (int(np.iinfo(v).min), int(np.iinfo(v).max)) for k, v in _INTEGERS.items()},
    **{k: (-float(np.finfo(v).max), float(np.finfo(v).max)) for k, v in _FLOATS.items()},
}
_NONE = type(None)


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The little-endian numpy dtype of a numeric V2 datatype (BOOL: one byte)."""
    return _DTYPES[datatype]


def check_json_values(where: str, datatype: str, flat: Sequence[Any]) -> bool:
    """Refuse values that ``datatype`` cannot hold (text in a number tensor, a float or an
    out-of-range integer in an integer tensor, anything but true/false in BOOL, anything
    but text in BYTES); True when some values are missing (null)."""
    types = set(map(type, flat))
    allowed = _ALLOWED[datatype]
    has_none = False
    if not types <= allowed:
        has_none = _NONE in types
        types.discard(_NONE)
        if not types <= allowed:
            _refuse(where, datatype, next(v for v in flat if v is not None
                                          and type(v) not in allowed))
    limits = _RANGES.get(datatype)
    # a JSON float is an FP64 already (orjson refuses the infinities); integers may not be
    if limits is not None and types and (datatype != "FP64" or int in types):
        values = [v for v in flat if v is not None] if has_none else flat
        low, high = min(values), max(values)
        if low < limits[0] or high > limits[1]:
            bad = str(low if low < limits[0] else high)
            shown = bad if len(bad) <= 24 else f"{bad[:12]}...({len(bad)} digits)"
            low_s, high_s = (f"{x}" if isinstance(x, int) else f"{x:.7g}" for x in limits)
            raise BadRequest(f"{where} is {datatype}: {shown} is outside its range "
                             f"[{low_s}, {high_s}].",
                             fix=f"Send values that fit {datatype}, or a wider datatype.")
    return has_none


def _refuse(where: str, datatype: str, value: Any) -> None:
    if isinstance(value, list | dict):
        raise BadRequest(f"{where} has nested data that does not match its shape.",
                         fix="Send data flat (row-major), or nested exactly as the shape says.")
    if datatype == "BYTES":
        raise BadRequest(f"{where} is BYTES but holds {shown(value)}; BYTES takes only strings.",
                         fix="Send text as strings, or numbers with a numeric datatype.")
    if datatype == "BOOL":
        raise BadRequest(f"{where} is BOOL but holds {shown(value)}; BOOL takes only true and "
                         "false.", fix="Send true or false, or use a numeric datatype.")
    if isinstance(value, str):
        raise BadRequest(f"{where} is {datatype} but holds text ({shown(value)}).",
                         fix="Use datatype BYTES for text, or send numbers.")
    if isinstance(value, bool):
        raise BadRequest(f"{where} is {datatype} but holds booleans.",
                         fix="Use datatype BOOL for true/false, or send numbers.")
    raise BadRequest(f"{where} is {datatype} but holds {shown(value)}, which is not an integer.",
                     fix=f"Send whole numbers for {datatype}, or use FP64.")


def json_array(datatype: str, flat: Sequence[Any], has_none: bool) -> np.ndarray:
    """Checked JSON values as an array: integers as their own type, floats as float64
    (a JSON number is one), text and anything with missing values as objects."""
    if has_none or datatype == "BYTES":
        return np.asarray(flat, dtype=object)
    if datatype in _FLOATS:
        return np.asarray(flat, dtype=np.float64)
    return np.asarray(flat, dtype=_DTYPES[datatype])


def v2_datatype(arr: np.ndarray) -> str:
    """The V2 datatype of an output array."""
    kind = arr.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP32" if arr.dtype == np.float32 else "FP64"
    return "BYTES"


def v2_type_name(dtype: str) -> str:
    """The V2 datatype of a signature column's dtype (text and anything else: BYTES)."""
    return {"float64": "FP64", "float32": "FP32", "int64": "INT64", "bool": "BOOL"}.get(
        dtype, "BYTES")


def v2_output_type(classes: Sequence[Any] | None) -> str:
    """The V2 datatype of ``predict`` for a model with these classes (None: a regressor)."""
    if classes is not None and any(isinstance(c, str) for c in classes):
        return "BYTES"
    if classes is not None and all(isinstance(c, int) for c in classes):
        return "INT64"
    return "FP64"
