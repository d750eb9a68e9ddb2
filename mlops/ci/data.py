"""Test data for the pipeline: read, fingerprint, split features from the label, infer the task."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops._tables import read_frame
from mlops.errors import CIError

__all__ = ["LABEL_CANDIDATES", "TestData", "file_digest", "infer_task", "load_test_data"]

#: Column names taken as the label when none is given.
LABEL_CANDIDATES = ("label", "target", "y", "class", "outcome")


@dataclass(frozen=True)
class TestData:
    """The test table, its SHA-256, and which column is the label."""

    frame: pd.DataFrame
    digest: str
    label: str | None
    path: str

    @property
    def y(self) -> pd.Series | None:
        return None if self.label is None else self.frame[self.label]

    def features(self, columns: list[str] | None = None, exclude: list[str] | None = None
                 ) -> pd.DataFrame:
        """The feature columns: ``columns`` when the model names its inputs, otherwise every
        column but the label and ``exclude`` (sensitive attributes, slice keys)."""
        if columns:
            missing = [c for c in columns if c not in self.frame.columns]
            if missing:
                raise CIError(f"The test data {self.path} lacks the model's input column(s) "
                              f"{missing}.", fix="Add them, or pass the right test file.",
                              path=self.path)
            return self.frame[columns]
        drop = {self.label, *(exclude or [])} - {None}
        return self.frame[[c for c in self.frame.columns if c not in drop]]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_test_data(source: str | Path | pd.DataFrame, label: str | None = None) -> TestData:
    """Read the test table and find its label column (``label`` or a usual name)."""
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy()
                                .tobytes() + ",".join(map(str, frame.columns)).encode()
                                ).hexdigest()
        where = "<DataFrame>"
    else:
        path = Path(source)
        if not path.is_file():
            raise CIError(f"No test data at {path}.", fix="Check --test-data.", path=str(path))
        frame = read_frame(path, "test data", CIError)
        digest = file_digest(path)
        where = str(path)
    if frame.empty:
        raise CIError(f"The test data {where} has no rows.",
                      fix="Give a held-out set with labelled rows.", path=where)
    frame.columns = [str(c) for c in frame.columns]
    if label is not None:
        if label not in frame.columns:
            raise CIError(f"The test data {where} has no label column {label!r}.",
                          fix=f"Use one of its columns: {list(frame.columns)[:20]}.",
                          path=where)
        found: str | None = label
    else:
        found = next((c for c in LABEL_CANDIDATES if c in frame.columns), None)
    if found is not None and frame[found].isna().any():
        n = int(frame[found].isna().sum())
        raise CIError(f"The label column {found!r} of {where} has {n} missing value(s).",
                      fix="Drop the unlabelled rows from the test data.", path=where)
    return TestData(frame, digest, found, where)


def infer_task(y: Any, model_classes: list[Any] | None = None) -> str:
    """``classification`` when the model has classes or the labels look categorical."""
    if model_classes is not None:
        return "classification"
    values = pd.Series(y)
    if values.dtype.kind in "OUSb" or isinstance(values.dtype, pd.CategoricalDtype):
        return "classification"
    arr = values.to_numpy(dtype=float)
    if np.all(np.mod(arr, 1) == 0) and np.unique(arr).size <= 20:
        return "classification"
    return "regression"
