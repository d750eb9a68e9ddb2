"""Adaptive batching: concurrent requests to one version share one ``predict`` call.

A request's rows join the open batch of its model version. The batch is predicted when it
reaches ``max_batch`` rows, or when no other request for that version is still being
decoded, or at the latest ``max_wait_us`` after its first row arrived. A lone request is
therefore predicted on the next turn of the event loop, without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.serving.codecs import Columns
from mlops.serving.routing import ServedModel

__all__ = ["Batcher", "Prediction", "predict_columns"]


@dataclass
class Prediction:
    """Predictions (and probabilities) for the rows of one request."""

    values: np.ndarray
    proba: np.ndarray | None


def _frame(columns: Columns) -> pd.DataFrame:
    return pd.DataFrame({c: columns.data[c] for c in columns.names}, copy=False)


def predict_columns(served: ServedModel, columns: Columns, want_proba: bool) -> Prediction:
    """Predict synchronously (used for unbatched requests and by the batcher)."""
    model = served.model
    text = any(columns.data[c].dtype.kind == "O" for c in columns.names)
    x: Any = _frame(columns) if model.wants_frame or text else columns.matrix()
    values = np.asarray(model.predict(x))
    proba = np.asarray(model.predict_proba(x)) if want_proba and model.has_proba else None
    return Prediction(values, proba)


@dataclass
class _Pending:
    columns: Columns
    want_proba: bool
    future: asyncio.Future[Prediction]


@dataclass
class _Batch:
    items: list[_Pending] = field(default_factory=list)
    rows: int = 0
    started: float = 0.0
    handle: asyncio.Handle | None = None


class Batcher:
    """One per event loop; keeps an open batch per served model version."""

    def __init__(self, max_batch: int = 64, max_wait_us: int = 500,
                 on_batch: Callable[[ServedModel, int], None] | None = None) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait_us / 1e6
        self.on_batch = on_batch
        self._open: dict[tuple[str, str], _Batch] = {}
        self._decoding: dict[tuple[str, str], int] = {}

    def decoding(self, served: ServedModel, delta: int) -> None:
        """Track requests for ``served`` that are being decoded (and may join a batch)."""
        key = (served.name, served.version)
        self._decoding[key] = self._decoding.get(key, 0) + delta

    async def predict(self, served: ServedModel, columns: Columns, want_proba: bool
                      ) -> Prediction:
        if not served.batching or self.max_batch <= 1 or columns.n >= self.max_batch:
            result = predict_columns(served, columns, want_proba)
            if self.on_batch:
                self.on_batch(served, columns.n)
            return result
        loop = asyncio.get_running_loop()
        key = (served.name, served.version)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Batch(started=time.perf_counter())
        future: asyncio.Future[Prediction] = loop.create_future()
        batch.items.append(_Pending(columns, want_proba, future))
        batch.rows += columns.n
        if batch.rows >= self.max_batch:
            self._run(key, served)
        elif batch.handle is None:
            batch.handle = loop.call_soon(self._maybe_run, key, served)
        return await future

    def _maybe_run(self, key: tuple[str, str], served: ServedModel) -> None:
        batch = self._open.get(key)
        if batch is None:
            return
        batch.handle = None
        waited = time.perf_counter() - batch.started
        if self._decoding.get(key, 0) > 0 and waited < self.max_wait:
            loop = asyncio.get_running_loop()
            batch.handle = loop.call_later(min(self.max_wait - waited, 0.0001),
                                           self._maybe_run, key, served)
            return
        self._run(key, served)

    def _run(self, key: tuple[str, str], served: ServedModel) -> None:
        batch = self._open.pop(key, None)
        if batch is None:
            return
        if batch.handle is not None:
            batch.handle.cancel()
        groups: dict[tuple[str, ...], list[_Pending]] = {}
        for p in batch.items:
            if not p.future.cancelled():
                groups.setdefault(tuple(p.columns.names), []).append(p)
        for items in groups.values():
            self._predict_group(served, items)

    def _predict_group(self, served: ServedModel, items: list[_Pending]) -> None:
        want_proba = any(p.want_proba for p in items)
        names = items[0].columns.names
        merged = Columns(names, {c: np.concatenate([p.columns.data[c] for p in items])
                                 for c in names}, sum(p.columns.n for p in items)) \
            if len(items) > 1 else items[0].columns
        try:
            result = predict_columns(served, merged, want_proba)
        except Exception as exc:
            for p in items:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        if self.on_batch:
            self.on_batch(served, merged.n)
        start = 0
        for p in items:
            end = start + p.columns.n
            if not p.future.done():
                p.future.set_result(Prediction(
                    result.values[start:end],
                    result.proba[start:end] if result.proba is not None else None))
            start = end
