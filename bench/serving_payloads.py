"""The models, rows and request bodies of ``bench/serving.py``: one fitted model per
benchmark model, the same distinct rows for every target, and each request form of a row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from serving_infra import Load

FEATURES = [f"f{i}" for i in range(20)]

#: request forms, in table order
FORMS = {
    "json": "V2 JSON, one [1,20] tensor",
    "cols": "V2 JSON, one tensor per column",
    "binary": "V2 binary tensor extension",
    "grpc": "gRPC ModelInfer, raw contents",
    "invocations": "MLflow /invocations, dataframe_split",
}

MODELS = {
    "lr": "LogisticRegression, 20 features",
    "forest": "RandomForestClassifier, 200 trees, max_depth 10, 20 features",
}


@dataclass
class BenchModel:
    key: str        # also the served model name
    label: str
    model: Any
    train: pd.DataFrame
    test: pd.DataFrame  # the distinct rows every target gets
    expected: list[Any]  # the local model's predictions on ``test``


def make_models(rows: int, which: list[str]) -> dict[str, BenchModel]:
    """Both models fitted on the same 2,000 rows (a DataFrame with columns f0..f19); the
    next ``rows`` rows are the requests."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(2000 + rows, 20)), columns=FEATURES)
    y = (x["f0"] + 0.5 * x["f1"] - 0.25 * x["f2"] + rng.normal(scale=0.5, size=len(x)) > 0)
    train, test = x.iloc[:2000], x.iloc[2000:].reset_index(drop=True)
    labels = y.iloc[:2000].astype(int)
    out: dict[str, BenchModel] = {}
    for key in which:
        if key == "lr":
            model = LogisticRegression(max_iter=500)
        else:
            model = RandomForestClassifier(n_estimators=200, max_depth=10, random_state=0)
        model.fit(train, labels)
        expected = [v.item() for v in model.predict(test)]
        out[key] = BenchModel(key, MODELS[key], model, train, test, expected)
    return out


def v2_path(name: str) -> str:
    return f"/v2/models/{name}/infer"


def predictions_v2(answer: Any) -> list[Any]:
    for out in answer["outputs"]:
        if out["name"] == "predict":
            return list(out["data"])
    raise KeyError("no 'predict' output")


def predictions_mlflow(answer: Any) -> list[Any]:
    return list(answer["predictions"])


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def load_for(form: str, name: str, test: pd.DataFrame, *, pandas_codec: bool = False
             ) -> Load:
    """The HTTP bodies of ``form`` for every row of ``test``. ``pandas_codec`` adds the
    request parameter ``content_type: pd`` to per-column bodies, which MLServer needs to
    decode several inputs into one DataFrame (its default codec takes one tensor)."""
    rows = test.to_numpy(dtype=np.float64)
    width = rows.shape[1]
    if form == "json":
        return Load(v2_path(name), [_json({"inputs": [
            {"name": "input-0", "shape": [1, width], "datatype": "FP64", "data": row}]})
            for row in rows.tolist()], predictions_v2)
    if form == "cols":
        # what GET /v2/models/NAME advertises: one FP64 input per column, named after it
        bodies = []
        for row in rows.tolist():
            doc: dict[str, Any] = {"inputs": [
                {"name": col, "shape": [1], "datatype": "FP64", "data": [value]}
                for col, value in zip(test.columns, row, strict=True)]}
            if pandas_codec:
                doc["parameters"] = {"content_type": "pd"}
            bodies.append(_json(doc))
        return Load(v2_path(name), bodies, predictions_v2)
    if form == "binary":
        # Triton's binary tensor extension, as tritonclient.http sends it by default: the
        # JSON header, then the row's float64 values, little-endian
        header = _json({"inputs": [{"name": "input-0", "shape": [1, width], "datatype": "FP64",
                                    "parameters": {"binary_data_size": 8 * width}}]})
        return Load(v2_path(name), [header + row.astype("<f8").tobytes() for row in rows],
                    predictions_v2,
                    {"Content-Type": "application/octet-stream",
                     "Inference-Header-Content-Length": str(len(header))})
    if form == "invocations":
        return Load("/invocations", [_json({"dataframe_split": {
            "columns": list(test.columns), "data": [row]}}) for row in rows.tolist()],
            predictions_mlflow)
    raise ValueError(f"no HTTP bodies for form {form!r}")


MLSERVER_MODEL_HELPER = """\
# Written by bench/serving.py, run by .venv-bench's Python: load the benchmark's fitted
# model from its skops file (written by .venv) and save it with this venv's joblib, the
# format mlserver-sklearn loads; check that it still predicts what it predicted in .venv.
import json, sys, warnings
import joblib, numpy as np, skops.io as sio

src, dst, check = sys.argv[1:4]
model = sio.load(src, trusted=sio.get_untrusted_types(file=src))
spec = json.load(open(check))
warnings.filterwarnings("ignore", message="X does not have valid feature names")
got = model.predict(np.asarray(spec["x"], dtype=np.float64)).tolist()
if got != spec["y"]:
    sys.exit(f"the model loaded in .venv-bench disagrees: {got} != {spec['y']}")
joblib.dump(model, dst)
import mlserver, sklearn
print(json.dumps({"mlserver": mlserver.__version__, "scikit-learn": sklearn.__version__}))
"""
