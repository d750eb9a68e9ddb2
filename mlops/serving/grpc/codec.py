"""``ModelInferRequest`` -> the V2 request that the HTTP path decodes; predictions ->
``ModelInferResponse``; gateway statuses -> gRPC status codes.

A gRPC request carries each input's values either typed (``contents``: one repeated field
per datatype) or raw (``raw_input_contents``: one entry per input, in the byte layout of
Triton's binary tensor extension, which ``tritonclient.grpc`` uses by default). Both become
the V2 request document that :func:`~mlops.serving.codecs.decode_v2` reads: typed values
as ``data`` (checked against the datatype like JSON values), raw bytes as binary tensors
(read by :mod:`~mlops.serving.binary`). One decoder, one set of checks, for both transports.
Answers always go back raw (``raw_output_contents``), as Triton answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import grpc

from mlops.errors import BadRequest
from mlops.serving.batching import Prediction
from mlops.serving.binary import RawTensors
from mlops.serving.codecs import Columns, decode_v2, encode_v2
from mlops.serving.datatypes import NUMERIC, numpy_dtype
from mlops.serving.grpc.proto import grpc_predict_v2_pb2 as pb
from mlops.serving.routing import ServedModel

__all__ = ["GrpcRequest", "decode", "encode", "read_request", "status_code", "wants_proba"]

#: the typed field of ``InferTensorContents`` that holds each datatype's values (FP16 has
#: none: it travels raw)
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}

_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
          429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.RESOURCE_EXHAUSTED,
          504: grpc.StatusCode.DEADLINE_EXCEEDED}
_RAW_FIX = ("Send each input's values in its raw_input_contents entry, as tritonclient "
            "does: little-endian, row-major; BYTES values each after a 4-byte little-endian "
            "length.")
_MIXED_FIX = ("Send every input's values in raw_input_contents (one entry per input, in "
              "order), or every input's in its typed contents.")


@dataclass(frozen=True, slots=True)
class GrpcRequest:
    """A ``ModelInferRequest`` as the V2 document (inputs, requested outputs) and the raw
    input bytes joined in input order (each input's ``binary_data_size`` is its share)."""

    doc: dict[str, Any]
    raw: bytes | None
    id: str  # the request's own ``id`` field, echoed in the response ("" when absent)


def status_code(status: int) -> grpc.StatusCode:
    """The gRPC code of a gateway status: bad input is never UNKNOWN or INTERNAL."""
    return _CODES.get(status, grpc.StatusCode.INTERNAL)


def read_request(message: Any) -> GrpcRequest:
    """The V2 document of a ``ModelInferRequest``; a :class:`BadRequest` when typed and raw
    values are mixed or the raw entries do not match the inputs one to one."""
    inputs = list(message.inputs)
    raw = list(message.raw_input_contents)
    if not inputs:
        raise BadRequest("The request has no inputs.",
                         fix="Send one [N, F] input, or one [N] input per column.")
    if raw and len(raw) != len(inputs):
        raise BadRequest(f"The request has {len(inputs)} inputs but {len(raw)} "
                         "raw_input_contents entries.", fix=_MIXED_FIX)
    tensors: list[dict[str, Any]] = []
    for i, tensor in enumerate(inputs):
        item: dict[str, Any] = {"name": tensor.name, "shape": list(tensor.shape),
                                "datatype": tensor.datatype}
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"inputs[{i}] ({tensor.name}) has typed contents, but the "
                                 "request sends raw_input_contents.", fix=_MIXED_FIX)
            _check_raw_size(i, tensor, len(raw[i]))
            item["parameters"] = {"binary_data_size": len(raw[i])}
        else:
            item["data"] = _typed_values(i, tensor)
        tensors.append(item)
    doc: dict[str, Any] = {"inputs": tensors}
    if message.outputs:
        doc["outputs"] = [{"name": o.name} for o in message.outputs]
    return GrpcRequest(doc, b"".join(raw) if raw else None, message.id)


def _check_raw_size(i: int, tensor: Any, size: int) -> None:
    """A numeric input's raw entry holds exactly its shape's values (the tensor checks say
    the same in the HTTP extension's words, ``binary_data_size``)."""
    datatype, shape = tensor.datatype.upper(), list(tensor.shape)
    if datatype not in NUMERIC or not 1 <= len(shape) <= 2 or min(shape) < 0:
        return  # BYTES, an unknown datatype or a bad shape: the tensor checks name it
    expected = math.prod(shape) * numpy_dtype(datatype).itemsize
    if size != expected:
        raise BadRequest(f"inputs[{i}] ({tensor.name}) is {datatype} with shape {shape} "
                         f"({expected} bytes), but its raw_input_contents entry has {size} "
                         "bytes.", fix="Send each input's values raw: little-endian, "
                                       "row-major, the shape's values x bytes per value.")


def _typed_values(i: int, tensor: Any) -> list[Any]:
    """The values of one input from its typed ``contents``: from the field of its datatype
    only, text decoded as UTF-8. An unknown datatype is named by the tensor checks."""
    where = f"inputs[{i}] ({tensor.name})"
    datatype = tensor.datatype.upper()
    field = CONTENTS.get(datatype)
    if datatype == "FP16":
        raise BadRequest(f"{where} is FP16, which has no typed contents field.",
                         fix="Send FP16 values in raw_input_contents (tritonclient does).")
    filled = [f.name for f, _ in tensor.contents.ListFields()]
    wrong = [name for name in filled if name != field]
    if field is not None and wrong:
        raise BadRequest(f"{where} is {datatype}, but its values are in {', '.join(wrong)}; "
                         f"{datatype} values go in {field}.",
                         fix=f"Put the values in contents.{field}, or send them raw.")
    if field is None:
        return []
    values = getattr(tensor.contents, field)
    if datatype != "BYTES":
        return list(values)
    text = []
    for j, value in enumerate(values):
        try:
            text.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{where}: BYTES value {j} is not UTF-8 text.",
                             fix="Send text encoded as UTF-8.") from exc
    return text


def decode(body: GrpcRequest, served: ServedModel) -> tuple[Columns, Any]:
    """Columns for ``served``, and (the requested outputs, the request's id) for
    :func:`encode`. Raw bytes are read afresh on every call (a re-routed or shadow request
    decodes again)."""
    raw = RawTensors(memoryview(body.raw), _RAW_FIX) if body.raw is not None else None
    columns, requested = decode_v2(body.doc, served.schema, raw)
    return columns, (requested, body.id)


def wants_proba(extra: Any) -> bool:
    requested = extra[0]
    return bool(requested) and "predict_proba" in requested


def encode(served: ServedModel, prediction: Prediction, request_id: str, extra: Any) -> Any:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents``; its ``id`` is
    the request's own, else the id the prediction log knows the request by."""
    requested, own_id = extra
    names = requested or ["predict"]
    outputs, blobs = encode_v2(prediction.values, prediction.proba, names,
                               f"{served.name} {served.version}", frozenset(names))
    response = pb.ModelInferResponse(model_name=served.name, model_version=served.version,
                                     id=own_id or request_id, raw_output_contents=blobs)
    for output in outputs:
        response.outputs.add(name=output["name"], datatype=output["datatype"],
                             shape=output["shape"])
    return response
