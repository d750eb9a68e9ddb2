"""Models for gateway tests; importable by the server subprocess (PYTHONPATH = repo root)."""

from __future__ import annotations

from typing import Any

import numpy as np


class Exploding:
    """A model whose predict always raises: a broken candidate."""

    def predict(self, x: Any) -> np.ndarray:
        raise RuntimeError("boom: this model is broken on purpose")


class Constant:
    """Predicts one value for every row."""

    def __init__(self, value: int) -> None:
        self.value = value

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), self.value)


class Slow:
    """Takes ``seconds`` per predict call: lets tests fill the in-flight queue."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, x: Any) -> np.ndarray:
        import time

        time.sleep(self.seconds)
        return np.zeros(len(x))


class ScalarOutput:
    """Broken: returns one number whatever the number of rows."""

    def predict(self, x: Any) -> Any:
        return 1.0


class RefusesNines:
    """Raises when any row holds 999 in its first column; else predicts the first column."""

    def predict(self, x: Any) -> np.ndarray:
        arr = np.asarray(x, dtype=float)
        if (arr[:, 0] == 999).any():
            raise ValueError("999 is not allowed")
        return arr[:, 0]
