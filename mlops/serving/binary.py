"""Triton's binary tensor data extension of the V2 HTTP protocol (``tritonclient.http``
uses it by default).

A request body is a JSON header, ``Inference-Header-Content-Length`` bytes long, followed
by the raw bytes of each input that carries ``parameters.binary_data_size``, in the order
of the inputs: little-endian, row-major, no padding; BOOL is one byte (0 or 1); a BYTES
element is a 4-byte little-endian length and then its bytes. A response uses the same
layout for the outputs asked for in binary (``binary_data`` on an output, or
``binary_data_output`` on the request).

This module frames and unframes bytes; :mod:`~mlops.serving.codecs` decodes the tensors
into columns with the same checks as JSON.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from mlops.errors import BadRequest, shown
from mlops.serving.datatypes import numpy_dtype

__all__ = ["HEADER", "RawTensors", "binary_outputs", "read_tensor", "split_body",
           "tensor_bytes"]

HEADER = "inference-header-content-length"
_LENGTH = struct.Struct("<I")
_FIX = "Send the JSON header, then each binary input's bytes, as tritonclient does."


class RawTensors:
    """The bytes after the JSON header, handed to the binary inputs in their order."""

    def __init__(self, tail: memoryview, fix: str = _FIX) -> None:
        self.tail = tail
        self.offset = 0
        self.fix = fix  # how to frame the bytes, for errors (gRPC says it its own way)

    def take(self, where: str, size: Any) -> memoryview:
        """The next ``size`` bytes, for the input described by ``where``."""
        if type(size) is not int or size < 0:
            raise BadRequest(f"{where} has binary_data_size {shown(size)}; it must be a "
                             "non-negative integer (bytes).", fix=self.fix)
        end = self.offset + size
        if end > len(self.tail):
            raise BadRequest(f"{where} has binary_data_size {size}, but only "
                             f"{len(self.tail) - self.offset} bytes of the body are left.",
                             fix=self.fix)
        chunk = self.tail[self.offset:end]
        self.offset = end
        return chunk

    def finish(self) -> None:
        """Every byte after the header belongs to an input, or the body is refused."""
        extra = len(self.tail) - self.offset
        if extra:
            raise BadRequest(f"The body has {extra} bytes after the JSON header that no "
                             "input's binary_data_size accounts for.",
                             fix="Make the binary_data_size values add up to the bytes sent "
                                 "after the header.")


def split_body(body: bytes, header_length: str) -> tuple[memoryview, RawTensors]:
    """The JSON header and the raw tensor bytes of a body whose header is
    ``header_length`` (the ``Inference-Header-Content-Length`` value) bytes long."""
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise BadRequest(f"Inference-Header-Content-Length is {header_length[:40]!r}; it must "
                         "be the JSON header's length in bytes.", fix=_FIX)
    size = int(text)
    if size == 0 or size > len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {size}, but the body has "
                         f"{len(body)} bytes.", fix=_FIX)
    view = memoryview(body)
    return view[:size], RawTensors(view[size:])


def read_tensor(where: str, datatype: str, count: int, chunk: memoryview,
                fix: str = _FIX) -> np.ndarray:
    """``count`` elements of ``datatype`` from exactly the bytes of ``chunk``: numbers as
    their numpy type, BYTES as text (UTF-8); ``fix`` says how to frame bytes, in errors."""
    if datatype == "BYTES":
        return _read_text(where, count, chunk, fix)
    dtype = numpy_dtype(datatype)
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(f"{where} is {datatype} with {count} values ({count * dtype.itemsize} "
                         f"bytes), but its binary_data_size is {len(chunk)}.",
                         fix="Make binary_data_size = values in the shape x bytes per value.")
    if datatype == "BOOL" and count and int(np.frombuffer(chunk, np.uint8).max()) > 1:
        raise BadRequest(f"{where} is BOOL but holds bytes other than 0 and 1.",
                         fix="Send one byte per value: 1 for true, 0 for false.")
    return np.frombuffer(chunk, dtype).copy()  # owned, writable, not a view of the body


def _read_text(where: str, count: int, chunk: memoryview, fix: str) -> np.ndarray:
    data = bytes(chunk)
    end = len(data)
    if count * _LENGTH.size > end:
        raise BadRequest(f"{where} is BYTES with {count} values, but its {end} bytes cannot "
                         "hold their 4-byte length prefixes.", fix=fix)
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + _LENGTH.size > end:
            raise BadRequest(f"{where}: the length prefix of BYTES value {i} is cut off.",
                             fix="Precede each value with its length (4 bytes, little-endian).")
        (size,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + size > end:
            raise BadRequest(f"{where}: BYTES value {i} says {size} bytes, but only "
                             f"{end - pos} are left.", fix=fix)
        try:
            out[i] = data[pos:pos + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{where}: BYTES value {i} is not UTF-8 text.",
                             fix="Send text encoded as UTF-8.") from exc
        pos += size
    if pos != end:
        raise BadRequest(f"{where} has {end - pos} bytes after its {count} BYTES values.",
                         fix="Make binary_data_size match the values in the shape.")
    return out


def tensor_bytes(values: np.ndarray, datatype: str) -> bytes:
    """An output tensor in the binary layout: numbers little-endian, text length-prefixed."""
    if datatype != "BYTES":
        return np.ascontiguousarray(values, dtype=numpy_dtype(datatype)).tobytes()
    parts: list[bytes] = []
    for value in values.ravel().tolist():
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def binary_outputs(doc: Any, default: list[str]) -> frozenset[str]:
    """The outputs to answer in binary: ``binary_data`` on a requested output, else the
    request's ``binary_data_output`` (which covers ``default``, the outputs sent when none
    are named)."""
    if not isinstance(doc, dict):
        return frozenset()
    params = doc.get("parameters")
    fallback = _flag(params, "binary_data_output", "The request's parameters") \
        if isinstance(params, dict) else False
    outputs = doc.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return frozenset(default) if fallback else frozenset()
    names = set()
    for i, out in enumerate(outputs):
        if not isinstance(out, dict):
            continue
        own = out.get("parameters")
        flag = _flag(own, "binary_data", f"outputs[{i}].parameters") \
            if isinstance(own, dict) and "binary_data" in own else fallback
        if flag:
            names.add(str(out.get("name")))
    return frozenset(names)


def _flag(params: dict[str, Any], key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{where}.{key} is {shown(value)}; it must be true or false.",
                         fix=f"Send \"{key}\": true or false.")
    return value
