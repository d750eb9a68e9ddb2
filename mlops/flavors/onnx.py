"""ONNX models through onnxruntime."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from mlops.errors import FlavorError
from mlops.flavors.base import LoadedModel

__all__ = ["BOUNDED_OPS", "PROBE_SECONDS", "load_onnx", "refuse_external_data"]

#: How long loading may run the graph on one row of zeros to read its class labels.
PROBE_SECONDS = 10.0
#: Operators whose output size and run time follow from their inputs' shapes, not their
#: values (what skl2onnx and onnxmltools write for linear, tree, SVM and MLP models). A graph
#: with any other operator (``Loop``, ``Scan``, or ``Expand``, ``Tile``, ``Range``,
#: ``ConstantOfShape``, ``OneHot``, ``Pad``, ``Resize``: sized by a value read from the
#: input) never predicts on the gateway's event loop, where nothing could stop it.
BOUNDED_OPS = frozenset({
    # ai.onnx.ml
    "TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "LinearClassifier",
    "LinearRegressor", "SVMClassifier", "SVMRegressor", "Scaler", "Normalizer", "Binarizer",
    "Imputer", "LabelEncoder", "ArrayFeatureExtractor", "FeatureVectorizer", "ZipMap",
    # element-wise
    "Identity", "Cast", "CastLike", "Abs", "Neg", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt",
    "Exp", "Log", "Reciprocal", "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh",
    "Softmax", "LogSoftmax", "Softplus", "Erf", "Floor", "Ceil", "Round", "Sign", "Clip",
    "Max", "Min", "Sum", "Mean", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
    "Not", "And", "Or", "Xor", "Where", "IsNaN", "IsInf",
    # reductions, shapes and products sized by their inputs
    "ArgMax", "ArgMin", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
    "ReduceSumSquare", "ReduceLogSumExp", "ReduceL1", "ReduceL2", "Concat", "Flatten",
    "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Shape", "Size", "Gather",
    "GatherElements", "Slice", "Split", "TopK", "MatMul", "Gemm", "Constant", "Dropout",
    "BatchNormalization",
})

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def load_onnx(data: bytes) -> LoadedModel:
    """Load an ONNX graph with one tabular input ``[N, F]``.

    Outputs named like skl2onnx's (``label``/``output_label`` and ``probabilities``) map to
    ``predict`` and ``predict_proba``; otherwise the first output is the prediction.
    """
    import onnxruntime as ort

    ops = refuse_external_data(data)
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(data, sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise FlavorError(f"onnxruntime cannot load the model: {exc}.",
                          fix="Check that the file is a valid ONNX model.") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise FlavorError(
            f"The ONNX model has {len(inputs)} inputs; mlops serves graphs with one [N, F] input.",
            fix="Export the model with a single tabular input (skl2onnx does by default).",
        )
    inp = inputs[0]
    dtype = _ORT_TYPES.get(inp.type, np.float32)
    outputs = [o.name for o in session.get_outputs()]
    label = next((o for o in outputs if o in {"label", "output_label"}), outputs[0])
    proba = next((o for o in outputs if o in {"probabilities", "output_probability"}), None)

    bounded = ops <= BOUNDED_OPS
    runs = None if bounded else _Runs(ort)  # a graph that may run on can be stopped
    run: Callable[..., Any] = session.run if runs is None \
        else functools.partial(runs.run, session)

    def predict(x: np.ndarray) -> np.ndarray:
        result = run([label], {inp.name: x})[0]
        arr = np.asarray(result)
        return arr.ravel() if arr.ndim == 2 and arr.shape[1] == 1 else arr

    def predict_proba(x: np.ndarray) -> np.ndarray:
        result: Any = run([proba], {inp.name: x})[0]
        if isinstance(result, list):  # ZipMap output: list of {class: p}
            return np.array([[row[k] for k in sorted(row)] for row in result])
        return np.asarray(result)

    classes = None
    if proba is not None:
        sample = np.zeros((1, inp.shape[1] if isinstance(inp.shape[1], int) else 1), dtype=dtype)
        out: Any = _probe(session, ort, proba, {inp.name: sample})
        if isinstance(out, list) and out:
            classes = sorted(out[0])
    n_features = inp.shape[1] if len(inp.shape) == 2 and isinstance(inp.shape[1], int) else None
    return LoadedModel(
        flavor="onnx", raw=session, predict_fn=predict,
        proba_fn=predict_proba if proba is not None else None, classes=classes,
        input_dtype=np.dtype(dtype),
        info={"input_name": inp.name, "n_features": n_features, "outputs": outputs},
        bounded=bounded, stop_fn=runs.stop if runs is not None else None,
    )


class _Runs:
    """The calls of a graph in progress, each with its own ``RunOptions``: :meth:`stop`
    sets their ``terminate`` flag, and onnxruntime ends them between two operators (a
    ``Loop`` between two turns) with an error."""

    def __init__(self, ort: Any) -> None:
        self._ort = ort
        self._lock = threading.Lock()
        self._active: list[Any] = []

    def run(self, session: Any, outputs: list[str], feed: dict[str, np.ndarray]) -> Any:
        options = self._ort.RunOptions()
        with self._lock:
            self._active.append(options)
        try:
            return session.run(outputs, feed, options)
        finally:
            with self._lock:
                self._active.remove(options)

    def stop(self) -> int:
        """Stop every call in progress; returns how many there were."""
        with self._lock:
            for options in self._active:
                options.terminate = True
            return len(self._active)


def _probe(session: Any, ort: Any, output: str, feed: dict[str, np.ndarray]) -> Any:
    """``output`` for one row of zeros (the class labels of a ZipMap), or None when the
    graph fails on it; a graph still running after :data:`PROBE_SECONDS` (a ``Loop`` of
    10^15 turns) is stopped and refused: loading must not hang."""
    options = ort.RunOptions()
    options.log_severity_level = 4  # its "terminate flag" error is ours to report
    stopped = threading.Event()  # the timer's own flag: a clock read here could be early

    def stop() -> None:
        stopped.set()
        options.terminate = True

    timer = threading.Timer(PROBE_SECONDS, stop)
    timer.start()
    try:
        return session.run([output], feed, run_options=options)[0]
    except Exception:
        if stopped.is_set():
            raise FlavorError(
                f"The ONNX model did not predict one row within {PROBE_SECONDS:g} s.",
                fix="Check the graph for loops that do not end (a Loop's trip count).") \
                from None
        return None
    finally:
        timer.cancel()


# -------------------------------------------------------------- external data
# The fields of onnx.proto that lead to a TensorProto (field number -> message kind), and
# TensorProto's own: external_data (13) and data_location (14, EXTERNAL = 1).
_PATHS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse",
                  23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_MAX_DEPTH = 64


def refuse_external_data(data: bytes) -> frozenset[str]:
    """Refuse a graph any of whose tensors keeps its data outside the file (``data_location``
    EXTERNAL): onnxruntime would read it from a path relative to the loading process's
    working directory (or from a memory address, with its in-memory tag), bytes no digest
    covers. Every tensor is checked: initializers, sparse ones, node attributes, subgraphs,
    functions and training graphs. The protobuf wire format is walked directly, so the
    check needs no ``onnx`` package. Returns the operator types of every node on the way
    (subgraphs and functions included)."""
    ops: set[str] = set()
    try:
        _walk(memoryview(data), "model", 0, ops)
    except _External:
        raise FlavorError(
            "The ONNX model keeps tensor data in external files; mlops stores and verifies "
            "one self-contained file.",
            fix="Save it with its data inside (onnx.save_model(model, path, "
                "save_as_external_data=False)).") from None
    except (IndexError, ValueError) as exc:
        raise FlavorError(f"The ONNX file is not a valid protobuf message: {exc}.",
                          fix="Check that the file is a valid ONNX model.") from exc
    return frozenset(ops)


class _External(Exception):
    """A tensor with external data was found (ends the walk at once)."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def _walk(buf: memoryview, kind: str, depth: int, ops: set[str]) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"messages nested deeper than {_MAX_DEPTH}")
    children = _PATHS[kind]
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            if kind == "tensor" and number == 14 and value == 1:
                raise _External
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ValueError("a field runs past the end of its message")
            if kind == "tensor" and number == 13:
                raise _External
            if kind == "node" and number == 4:  # NodeProto.op_type
                ops.add(bytes(buf[pos:pos + size]).decode("utf-8", "replace"))
            child = children.get(number)
            if child is not None:
                _walk(buf[pos:pos + size], child, depth + 1, ops)
            pos += size
        else:
            raise ValueError(f"wire type {wire} (groups are not used by ONNX)")
        if pos > end:
            raise ValueError("a field runs past the end of its message")
