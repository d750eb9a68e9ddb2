"""The uniform predictor every flavor returns, and input conversion."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.errors import FlavorError, SignatureError

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made: CLI commands start sooner

__all__ = ["LoadedModel", "to_frame"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def to_frame(data: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Turn a DataFrame, dict of columns, list of records or 2-D array into a DataFrame.

    With ``columns`` the frame is returned with exactly those columns, in that order.
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, pd.Series):
        frame = data.to_frame().T if columns is not None and len(columns) > 1 else data.to_frame()
    elif isinstance(data, Mapping):
        frame = pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in data.items()})
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes) and data \
            and isinstance(data[0], Mapping):
        frame = pd.DataFrame.from_records(list(data))
    else:
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise SignatureError(
                f"Expected a 2-D table of rows x features, got an array of shape {arr.shape}.",
                fix="Pass a DataFrame, a list of records or a [rows, features] array.",
            )
        names = list(columns) if columns is not None and len(columns) == arr.shape[1] else \
            [f"f{i}" for i in range(arr.shape[1])]
        if columns is not None and len(columns) != arr.shape[1]:
            raise SignatureError(
                f"Expected {len(columns)} features per row, got {arr.shape[1]}.",
                fix=f"Send the columns {list(columns)} in this order.",
            )
        return pd.DataFrame(arr, columns=names)
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SignatureError(
                f"Missing input column(s) {missing}.",
                fix=f"Send the columns {list(columns)}.",
            )
        if list(frame.columns) != list(columns):
            frame = frame[list(columns)]
    return frame


@dataclass
class LoadedModel:
    """One interface over every flavor: ``predict`` and, when available, ``predict_proba``.

    ``raw`` is the underlying library object (estimator, booster, inference session).
    """

    flavor: str
    raw: Any
    predict_fn: Callable[[Any], np.ndarray]
    proba_fn: Callable[[Any], np.ndarray] | None = None
    classes: list[Any] | None = None
    input_columns: list[str] | None = None
    wants_frame: bool = False
    #: a frame is wanted only for its names: a float array with ``input_columns`` in order
    #: predicts the same (a scikit-learn model that only checks them)
    array_ok: bool = False
    input_dtype: Any = None
    name: str | None = None
    version: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: predict time bounded by the model's size and the input's shape, whatever its values:
    #: the gateway may run it on its event loop when it is quick (not an ONNX graph with an
    #: operator outside :data:`~mlops.flavors.onnx.BOUNDED_OPS`, such as a Loop)
    bounded: bool = True
    #: stops the calls in progress (they raise), returns how many: an ONNX graph that may
    #: run on has one, which the gateway calls at the predict deadline; None: cannot stop
    stop_fn: Callable[[], int] | None = None

    @property
    def has_proba(self) -> bool:
        return self.proba_fn is not None

    def prepare(self, data: Any) -> Any:
        """Shape ``data`` the way the underlying model wants it (frame or 2-D array)."""
        if self.wants_frame and not (self.array_ok and isinstance(data, np.ndarray)
                                     and data.ndim == 2 and data.dtype.kind == "f"):
            return to_frame(data, self.input_columns)
        if isinstance(data, np.ndarray) and data.ndim == 2:
            arr = data
            if self.input_columns is not None and arr.shape[1] != len(self.input_columns):
                raise SignatureError(
                    f"Expected {len(self.input_columns)} features per row, got {arr.shape[1]}.",
                    fix=f"Send the columns {self.input_columns} in this order.",
                    model=self.name, version=self.version,
                )
        else:
            arr = to_frame(data, self.input_columns).to_numpy()
        if self.input_dtype is not None and arr.dtype != self.input_dtype:
            if np.dtype(self.input_dtype) == np.float32:
                self._refuse_beyond_float32(arr)  # the cast would make them infinite
            arr = arr.astype(self.input_dtype)
        return arr

    def _refuse_beyond_float32(self, x: Any, cause: BaseException | None = None) -> None:
        """A :class:`SignatureError` when ``x`` holds finite numbers beyond float32's range
        (what tree models and float32 graphs compute in): the caller's input, not the
        model, is at fault."""
        try:
            arr = np.asarray(x) if isinstance(x, np.ndarray) \
                else x.select_dtypes("number").to_numpy(np.float64)
            if arr.dtype.kind != "f" or not arr.size:
                return
            with np.errstate(invalid="ignore"):
                big = np.abs(arr[np.isfinite(arr)])
            worst = float(big.max()) if big.size else 0.0
        except (AttributeError, TypeError, ValueError):
            return
        if worst > _FLOAT32_MAX:
            raise SignatureError(
                f"{self._label()} computes in float32, whose largest value is 3.4e38; the "
                f"input holds {worst:.4g}.",
                fix="Send values within ±3.4e38 (scale the feature if it is that large).",
                model=self.name, version=self.version) from cause

    def predict(self, data: Any) -> np.ndarray:
        """Predictions for each row of ``data`` as a 1-D (or 2-D multi-output) array."""
        x = self.prepare(data)
        try:
            return np.asarray(self.predict_fn(x))
        except (SignatureError, FlavorError):
            raise
        except Exception as exc:
            if isinstance(exc, ValueError):
                self._refuse_beyond_float32(x, exc)
            raise FlavorError(
                f"{self._label()} failed to predict: {type(exc).__name__}: {exc}.",
                fix="Check that the input has the model's columns and dtypes.",
                model=self.name, version=self.version,
            ) from exc

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, shape [rows, classes]."""
        if self.proba_fn is None:
            raise FlavorError(
                f"{self._label()} has no predict_proba (flavor {self.flavor}).",
                fix="Use predict(); probabilities exist only for classifiers.",
                model=self.name, version=self.version,
            )
        x = self.prepare(data)
        try:
            return np.asarray(self.proba_fn(x))
        except (SignatureError, FlavorError):
            raise
        except Exception as exc:
            if isinstance(exc, ValueError):
                self._refuse_beyond_float32(x, exc)
            raise FlavorError(
                f"{self._label()} failed in predict_proba: {type(exc).__name__}: {exc}.",
                fix="Check that the input has the model's columns and dtypes.",
                model=self.name, version=self.version,
            ) from exc

    def _label(self) -> str:
        if self.name:
            return f"Model {self.name} {self.version or ''}".rstrip()
        return f"The {self.flavor} model"
