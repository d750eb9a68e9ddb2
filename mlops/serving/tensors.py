"""One Open Inference Protocol input tensor, read and checked: its name, its shape, its
datatype, and its values, from JSON ``data`` (flat, or nested exactly as the shape says) or
from the bytes of the binary tensor extension.

:mod:`~mlops.serving.codecs` turns the tensors of a request into columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from mlops.errors import BadRequest, shown
from mlops.serving.binary import RawTensors, read_tensor
from mlops.serving.datatypes import NUMERIC, TYPES, check_json_values, json_array

__all__ = ["Tensor", "read_input"]

_MAX_VALUES = 50_000_000
_PLAIN = frozenset(t for t in NUMERIC if t != "BOOL")  # numbers that become float columns


@dataclass
class Tensor:
    """One checked V2 input: its values flat (a list from JSON, an array from bytes)."""

    name: str
    shape: list[int]
    datatype: str
    values: list[Any] | np.ndarray
    has_none: bool

    def array(self) -> np.ndarray:
        flat = self.values if isinstance(self.values, np.ndarray) else \
            json_array(self.datatype, self.values, self.has_none)
        return flat.reshape(self.shape)

    @property
    def plain_column(self) -> bool:
        """Numbers without gaps in one [N] or [N, 1] tensor: a dense-matrix column."""
        return self.datatype in _PLAIN and not self.has_none \
            and (len(self.shape) == 1 or self.shape[1] == 1)


def read_input(i: int, t: Any, raw: RawTensors | None) -> Tensor:
    """One input checked against its shape and datatype, its values from JSON or bytes."""
    if not isinstance(t, dict):
        raise BadRequest(f"inputs[{i}] must be an object.", fix="See the V2 protocol.")
    for key in ("name", "shape", "datatype"):
        if key not in t:
            raise BadRequest(f"inputs[{i}] is missing '{key}'.",
                             fix="Each input needs name, shape, datatype and data.")
    name, shape, datatype = t["name"], t["shape"], str(t["datatype"]).upper()
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{i}].name must be a non-empty string.",
                         fix="Name each input tensor.")
    label = name if len(name) <= 60 else f"{name[:60]}..."  # how messages name it
    if datatype not in TYPES:
        raise BadRequest(f"inputs[{i}] ({label}) has unknown datatype {shown(datatype)}.",
                         fix=f"Use one of {', '.join(sorted(TYPES))}.")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) \
            or not 1 <= len(shape) <= 2:
        raise BadRequest(f"inputs[{i}] ({label}) has shape {shown(shape)}; expected [N] or [N, F].",
                         fix="Give the shape as a list of non-negative integers.")
    expected = math.prod(shape)
    if expected > _MAX_VALUES or max(shape) > _MAX_VALUES:
        raise BadRequest(f"inputs[{i}] ({label}) has shape {shape}: too many values.",
                         fix="Send fewer rows per request.")
    where = f"inputs[{i}] ({label})"
    params = t.get("parameters")
    if isinstance(params, dict) and "binary_data_size" in params:
        if "data" in t:
            raise BadRequest(f"{where} has both 'data' and binary_data_size.",
                             fix="Send the values either in JSON or as binary data.")
        if raw is None:
            raise BadRequest(f"{where} has binary_data_size, but the request has no "
                             "Inference-Header-Content-Length header.",
                             fix="Send the JSON header's length in Inference-Header-"
                                 "Content-Length, or the values as JSON 'data'.")
        values = read_tensor(where, datatype, expected,
                             raw.take(where, params["binary_data_size"]), raw.fix)
        return Tensor(name, shape, datatype, values, False)
    if "data" not in t:
        raise BadRequest(f"inputs[{i}] is missing 'data'.",
                         fix="Each input needs name, shape, datatype and data.")
    flat = _flat_data(where, t["data"], shape)
    if len(flat) != expected:
        raise BadRequest(f"inputs[{i}] ({label}) has shape {shape} ({expected} values) but "
                         f"{len(flat)} values in data.", fix="Make shape and data agree.")
    return Tensor(name, shape, datatype, flat, check_json_values(where, datatype, flat))


def _flat_data(where: str, data: Any, shape: list[int]) -> list[Any]:
    """``data`` flat (row-major): as sent, or un-nested when its nesting is the shape."""
    if not isinstance(data, list):
        return [data]
    if data and type(data[0]) is list:
        if len(shape) != 2 or len(data) != shape[0] \
                or not all(type(row) is list and len(row) == shape[1] for row in data):
            raise BadRequest(f"{where} has nested data that does not match its shape {shape}.",
                             fix="Send data flat (row-major), or nested exactly as the shape "
                                 "says.")
        return list(chain.from_iterable(data))
    return data
