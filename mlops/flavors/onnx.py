"""ONNX models through onnxruntime."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.errors import FlavorError
from mlops.flavors.base import LoadedModel

__all__ = ["load_onnx"]

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def load_onnx(data: bytes) -> LoadedModel:
    """Load an ONNX graph with one tabular input ``[N, F]``.

    Outputs named like skl2onnx's (``label``/``output_label`` and ``probabilities``) map to
    ``predict`` and ``predict_proba``; otherwise the first output is the prediction.
    """
    import onnxruntime as ort

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

    def predict(x: np.ndarray) -> np.ndarray:
        result = session.run([label], {inp.name: x})[0]
        arr = np.asarray(result)
        return arr.ravel() if arr.ndim == 2 and arr.shape[1] == 1 else arr

    def predict_proba(x: np.ndarray) -> np.ndarray:
        result: Any = session.run([proba], {inp.name: x})[0]
        if isinstance(result, list):  # ZipMap output: list of {class: p}
            return np.array([[row[k] for k in sorted(row)] for row in result])
        return np.asarray(result)

    classes = None
    if proba is not None:
        sample = np.zeros((1, inp.shape[1] if isinstance(inp.shape[1], int) else 1), dtype=dtype)
        try:
            out: Any = session.run([proba], {inp.name: sample})[0]
            if isinstance(out, list) and out:
                classes = sorted(out[0])
        except Exception:
            classes = None
    n_features = inp.shape[1] if len(inp.shape) == 2 and isinstance(inp.shape[1], int) else None
    return LoadedModel(
        flavor="onnx", raw=session, predict_fn=predict,
        proba_fn=predict_proba if proba is not None else None, classes=classes,
        input_dtype=np.dtype(dtype),
        info={"input_name": inp.name, "n_features": n_features, "outputs": outputs},
    )
