"""Model signatures: input columns with dtypes and the output type, inferred from data."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mlops.errors import FlavorError
from mlops.flavors.base import LoadedModel, to_frame

__all__ = ["ColumnSpec", "Signature", "fit_signature", "infer_signature"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    dtype: str
    nullable: bool = False


@dataclass(frozen=True)
class Signature:
    """``inputs`` in column order; ``outputs`` the prediction (and probabilities)."""

    inputs: list[ColumnSpec] = field(default_factory=list)
    outputs: list[ColumnSpec] = field(default_factory=list)
    classes: list[Any] | None = None
    positional: bool = False  # inferred from an unnamed array: columns are f0..fN by position

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Signature | None:
        if not data or not data.get("inputs"):
            return None
        return cls(inputs=[ColumnSpec(**c) for c in data["inputs"]],
                   outputs=[ColumnSpec(**c) for c in data.get("outputs", [])],
                   classes=data.get("classes"), positional=bool(data.get("positional")))


def _dtype_name(dtype: Any) -> str:
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int64"
    if pd.api.types.is_float_dtype(dtype):
        return "float32" if dtype == np.float32 else "float64"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def _array_dtype(arr: np.ndarray) -> str:
    if arr.dtype.kind == "b":
        return "bool"
    if arr.dtype.kind in "iu":
        return "int64"
    if arr.dtype.kind == "f":
        return "float32" if arr.dtype == np.float32 else "float64"
    return "string"


def infer_signature(example: Any, model: LoadedModel | None = None) -> Signature:
    """Input columns from ``example`` (DataFrame, records or 2-D array); outputs by
    running ``model`` on a few of its rows when a model is given."""
    import pandas as pd

    named = isinstance(example, pd.DataFrame | dict) or (
        isinstance(example, list) and bool(example) and isinstance(example[0], dict))
    if model is not None and model.input_columns and not named:
        frame = to_frame(example, model.input_columns)
        named = True
    else:
        frame = to_frame(example)
    nullable = frame.isna().any().to_numpy()
    dtypes = list(frame.dtypes)
    inputs = [ColumnSpec(str(c), _dtype_name(dtypes[i]), bool(nullable[i]))
              for i, c in enumerate(frame.columns)]
    outputs: list[ColumnSpec] = []
    classes = None
    if model is not None:
        rows = frame.head(5)
        pred = model.predict(rows if isinstance(example, pd.DataFrame) else rows.to_numpy())
        outputs.append(ColumnSpec("prediction", _array_dtype(np.asarray(pred))))
        if model.has_proba:
            outputs.append(ColumnSpec("probabilities", "float64"))
            classes = model.classes
    return Signature(inputs, outputs, classes, positional=not named)


_SIGNATURE_FIX = ("Log the model again with a signature inferred from its training data "
                  "(mlflow.models.infer_signature) or with an input example, or register "
                  "it with an input example (--input-example FILE).")


def fit_signature(signature: Signature | None, model: LoadedModel, where: str
                  ) -> Signature | None:
    """``signature`` (declared, as in an MLflow ``MLmodel``) checked against the inputs
    ``model`` was fitted on, so that no version is registered that no request can reach.
    Positional columns (``f0..fN``) take the model's names when their count matches.
    Raises :class:`~mlops.errors.FlavorError` for a column declared twice, and for
    columns that are not the model's (by name, or by count for a model fitted on an
    unnamed array)."""
    if signature is None:
        return None
    names = signature.columns
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:
        raise FlavorError(f"The signature of {where} declares the input column(s) "
                          f"{', '.join(map(repr, twice[:10]))} more than once.",
                          fix=_SIGNATURE_FIX)
    wanted = model.input_columns
    if wanted:
        if signature.positional and len(names) == len(wanted):
            return replace(signature, positional=False, inputs=[
                ColumnSpec(w, c.dtype, c.nullable)
                for c, w in zip(signature.inputs, wanted, strict=True)])
        if set(names) != set(wanted):
            declared = set(names)
            missing = [c for c in wanted if c not in declared]
            foreign = [c for c in names if c not in set(wanted)]
            parts = [f"the model's column(s) {_few(missing)} are not declared"] if missing \
                else []
            parts += [f"{_few(foreign)} are not the model's"] if foreign else []
            raise FlavorError(f"The signature of {where} does not match the columns the model "
                              f"was fitted on: {'; '.join(parts)}.", fix=_SIGNATURE_FIX)
        return signature
    fitted = getattr(model.raw, "n_features_in_", None)
    if isinstance(fitted, int | np.integer) and not isinstance(fitted, bool) \
            and int(fitted) != len(names):
        raise FlavorError(f"The signature of {where} declares {len(names)} input column(s); "
                          f"the model was fitted on {int(fitted)}.", fix=_SIGNATURE_FIX)
    return signature


def _few(names: list[str]) -> str:
    shown = ", ".join(map(repr, names[:10]))
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")
