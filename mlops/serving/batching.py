"""Adaptive batching: concurrent requests to one version share one ``predict`` call.

A fast model (recent predict calls under ``inline_limit_ms``) predicts on the event loop
itself: a thread hand-off would cost more than the prediction (the GIL switch interval is
5 ms). A slower model gets its own prediction thread, so it never blocks the event loop
(health checks, metrics and other models keep answering). A request's rows join the open
batch of its version. The open batch is predicted as soon as the thread is free and either
it holds ``max_batch`` rows, or no other request for that version is still being decoded,
or ``max_wait_us`` passed since its first row arrived. While the thread is busy, arrivals
keep filling the next batch: the busier the model, the larger the batches. After a batch of
a slow model, the next one waits a moment (a tenth of the batch's predict time, at most
``max_refill_ms``) so that the callers just answered can send their next rows into it: a
forest that takes 20 ms a call then predicts twice the rows per call for 2 ms more latency.
A lone request is predicted on the next turn of the event loop, without waiting.

A prediction thread that has not answered within ``predict_timeout`` seconds answers its
batch 504 (:class:`~mlops.errors.PredictTimeout`), and the call is stopped when the model
can stop it (an ONNX graph); until the call returns, the version's waiting and new
requests get 503 at once instead of queueing behind it. A model whose
predict time can depend on its input's values (an ONNX graph with an operator outside
:data:`~mlops.flavors.onnx.BOUNDED_OPS`, such as ``Loop``) never predicts on the event loop,
where nothing could stop it, and neither does a call of more than :data:`INLINE_ROWS` rows.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import FlavorError, Overloaded, PredictTimeout
from mlops.serving.codecs import Columns
from mlops.serving.routing import ServedModel

__all__ = ["INLINE_ROWS", "Batcher", "Prediction", "predict_columns", "quiet_name_check"]

#: The most rows predicted on the event loop in one call; larger calls get the thread.
INLINE_ROWS = 64


def quiet_name_check() -> None:
    """Silence scikit-learn's "X does not have valid feature names" in this process:
    :func:`predict_columns` hands a model that only checks its names (``array_ok``) the
    columns as an array, in its own order, and the warning would fire on every batch."""
    warnings.filterwarnings("ignore", message="X does not have valid feature names",
                            category=UserWarning, module=r"sklearn\.")


@dataclass
class Prediction:
    """Predictions (and probabilities) for the rows of one request."""

    values: np.ndarray
    proba: np.ndarray | None
    cpu_seconds: float | None = None  # CPU time of the predicting thread for these rows


def predict_columns(served: ServedModel, columns: Columns, want_proba: bool) -> Prediction:
    """Predict synchronously on validated columns."""
    model = served.model
    x: Any
    # a model that only checks its column names is handed an array: a frame costs ~1 ms
    frame = model.wants_frame and not (model.array_ok and columns.names == model.input_columns)
    if columns.dense is not None:
        x = pd.DataFrame(columns.dense, columns=columns.names, copy=False) if frame \
            else columns.dense
    elif frame or any(columns.data[c].dtype.kind == "O" for c in columns.names):
        x = pd.DataFrame({c: columns.data[c] for c in columns.names}, copy=False)
    else:
        x = columns.matrix()
    cpu = time.thread_time()
    values = np.asarray(model.predict(x))
    proba = np.asarray(model.predict_proba(x)) if want_proba and model.has_proba else None
    cpu = time.thread_time() - cpu
    for what, arr in (("predict", values), ("predict_proba", proba)):
        if arr is not None and (arr.ndim == 0 or arr.shape[0] != columns.n):
            raise FlavorError(
                f"{what} of {served.name} {served.version} returned shape {list(arr.shape)} "
                f"for {columns.n} rows.",
                fix="The model must return one prediction per input row.",
                model=served.name, version=served.version)
    return Prediction(values, proba, cpu)


@dataclass
class _Pending:
    columns: Columns
    want_proba: bool
    future: asyncio.Future[Prediction]


@dataclass
class _Lane:
    """The batching state of one served version."""

    executor: ThreadPoolExecutor
    bounded: bool = True  # predict time bounded by the model's size: may run inline
    items: list[_Pending] = field(default_factory=list)
    rows: int = 0
    started: float = 0.0
    busy: bool = False
    handle: asyncio.Handle | asyncio.TimerHandle | None = None
    decoding: int = 0
    last_seconds: float = 0.0  # how long the last threaded batch took to predict
    per_row: float | None = None  # moving average of predict seconds per row; None: unknown
    overdue: float | None = None  # when the thread's current call passed its deadline
    calls: int = 0  # unbatched calls submitted to the thread and not returned
    deadline: asyncio.TimerHandle | None = None

    def record(self, seconds: float, rows: int) -> None:
        sample = seconds / max(rows, 1)
        self.per_row = sample if self.per_row is None else 0.8 * self.per_row + 0.2 * sample

    def inline(self, rows: int, limit: float) -> bool:
        """Predict on the event loop only when it is known to be quick for ``rows`` (at
        most :data:`INLINE_ROWS` of them: a cost that grows faster than the rows is not
        extrapolated far)."""
        return self.bounded and rows <= INLINE_ROWS and self.per_row is not None \
            and self.per_row * rows < limit


class Batcher:
    """One per event loop (worker); one lane and prediction thread per served version."""

    def __init__(self, max_batch: int = 64, max_wait_us: int = 500,
                 on_batch: Callable[[ServedModel, int], None] | None = None,
                 inline_limit_ms: float = 2.0, max_refill_ms: float = 5.0,
                 predict_timeout: float = 30.0) -> None:
        self.predict_timeout = predict_timeout
        self.inline_limit = inline_limit_ms / 1000.0
        self.max_refill = max_refill_ms / 1000.0
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait_us / 1e6
        self.on_batch = on_batch
        self._lanes: dict[tuple[str, str], _Lane] = {}

    def _lane(self, served: ServedModel) -> _Lane:
        key = (served.name, served.version)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(ThreadPoolExecutor(
                1, thread_name_prefix=f"predict-{served.name}-{served.version}"),
                bounded=served.model.bounded)
        return lane

    def _busy_error(self, served: ServedModel, lane: _Lane) -> Overloaded:
        assert lane.overdue is not None
        return Overloaded(
            f"Model {served.name!r} version {served.version} is still running a prediction "
            f"that passed its {self.predict_timeout:g} s deadline "
            f"{time.monotonic() - lane.overdue:.0f} s ago; its requests are refused until "
            "it returns.",
            fix="Check the model for inputs that make it run without end (a graph's loop "
                "count taken from the input), or serve another version.",
            model=served.name, version=served.version)

    def _watch(self, served: ServedModel, lane: _Lane, taken: list[_Pending] | None,
               loop: asyncio.AbstractEventLoop) -> None:
        """Start the deadline of the thread's call (``taken``: the batch it answers)."""
        lane.deadline = loop.call_later(self.predict_timeout, self._overdue, served, lane,
                                        taken or [])

    def _overdue(self, served: ServedModel, lane: _Lane, taken: list[_Pending]) -> None:
        """The thread's call passed its deadline: its batch gets 504, the waiting 503."""
        lane.deadline = None
        lane.overdue = time.monotonic()
        timeout = self._timed_out(served)
        for p in taken:
            if not p.future.done():
                p.future.set_exception(timeout)
        self._refuse_waiting(served, lane)

    def _timed_out(self, served: ServedModel) -> PredictTimeout:
        """Stop ``served``'s calls in progress when it can (an ONNX graph ends at its next
        operator, and the lane recovers); the error its callers get."""
        if served.model.stop_fn is not None:
            served.model.stop_fn()
        return PredictTimeout(
            f"Model {served.name!r} version {served.version} did not predict within "
            f"{self.predict_timeout:g} s.",
            fix="Check the model for inputs that make it run without end, or raise "
                "`mlops serve --predict-timeout` for a model that is slow by design.",
            model=served.name, version=served.version)

    def _refuse_waiting(self, served: ServedModel, lane: _Lane) -> None:
        if lane.handle is not None:
            lane.handle.cancel()
            lane.handle = None
        waiting, lane.items, lane.rows = lane.items, [], 0
        if waiting:
            busy = self._busy_error(served, lane)
            for p in waiting:
                if not p.future.done():
                    p.future.set_exception(busy)

    def _returned(self, lane: _Lane) -> None:
        """The thread's call returned: its deadline is off, the lane takes requests."""
        if lane.deadline is not None:
            lane.deadline.cancel()
            lane.deadline = None
        lane.overdue = None

    def stuck(self, served: ServedModel) -> bool:
        """Is ``served``'s prediction thread still in a call past its deadline (its
        requests are refused: the model is not ready)?"""
        lane = self._lanes.get((served.name, served.version))
        return lane is not None and lane.overdue is not None

    def decoding(self, served: ServedModel, delta: int) -> None:
        """Count requests for ``served`` that are being decoded (and may join a batch)."""
        self._lane(served).decoding += delta

    async def predict(self, served: ServedModel, columns: Columns, want_proba: bool
                      ) -> Prediction:
        lane = self._lane(served)
        if lane.overdue is not None:
            raise self._busy_error(served, lane)
        loop = asyncio.get_running_loop()
        if not served.batching or self.max_batch <= 1:
            started = time.perf_counter()
            if lane.inline(columns.n, self.inline_limit):
                result = predict_columns(served, columns, want_proba)
            else:
                result = await self._unbatched(served, lane, columns, want_proba, loop)
            lane.record(time.perf_counter() - started, columns.n)
            if self.on_batch:
                self.on_batch(served, columns.n)
            return result
        future: asyncio.Future[Prediction] = loop.create_future()
        if not lane.items:
            lane.started = time.perf_counter()
        lane.items.append(_Pending(columns, want_proba, future))
        lane.rows += columns.n
        if not lane.busy:
            if lane.rows >= self.max_batch:
                self._run(served, lane)
            elif lane.handle is None:
                lane.handle = loop.call_soon(self._maybe_run, served, lane)
        return await future

    async def _unbatched(self, served: ServedModel, lane: _Lane, columns: Columns,
                         want_proba: bool, loop: asyncio.AbstractEventLoop) -> Prediction:
        """One request's call in the lane's thread, under the deadline (calls queue in the
        thread's executor; each one's deadline starts when it is submitted)."""
        call = loop.run_in_executor(lane.executor, predict_columns, served, columns,
                                    want_proba)
        lane.calls += 1

        def returned(_: object) -> None:
            lane.calls -= 1
            if not lane.calls:  # the lane takes requests once no call is left behind
                self._returned(lane)

        call.add_done_callback(returned)
        try:
            return await asyncio.wait_for(asyncio.shield(call), self.predict_timeout)
        except TimeoutError:
            if lane.overdue is None:
                lane.overdue = time.monotonic()
            raise self._timed_out(served) from None

    def _maybe_run(self, served: ServedModel, lane: _Lane) -> None:
        lane.handle = None
        if lane.busy or not lane.items:
            return
        waited = time.perf_counter() - lane.started
        if lane.decoding > 0 and lane.rows < self.max_batch and waited < self.max_wait:
            lane.handle = asyncio.get_running_loop().call_later(
                min(self.max_wait - waited, 0.0001), self._maybe_run, served, lane)
            return
        self._run(served, lane)

    def _run(self, served: ServedModel, lane: _Lane) -> None:
        if lane.handle is not None:
            lane.handle.cancel()
            lane.handle = None
        taken: list[_Pending] = []
        rows = 0
        while lane.items and (not taken or rows + lane.items[0].columns.n <= self.max_batch):
            item = lane.items.pop(0)
            rows += item.columns.n
            taken.append(item)
        lane.rows -= rows
        if lane.items:
            lane.started = time.perf_counter()
        taken = [p for p in taken if not p.future.cancelled()]
        if not taken:
            self._next(served, lane)
            return
        lane.busy = True
        if lane.inline(rows, self.inline_limit):
            started = time.perf_counter()
            outcomes = _predict_groups(served, taken)
            lane.record(time.perf_counter() - started, rows)
            self._done(served, lane, taken, outcomes)
            return
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(lane.executor, _timed_groups, served, taken)
        self._watch(served, lane, taken, loop)
        task.add_done_callback(lambda f: self._threaded_done(served, lane, taken, f))

    def _threaded_done(self, served: ServedModel, lane: _Lane, taken: list[_Pending],
                       done: asyncio.Future[tuple[float, list[tuple[list[_Pending],
                                                                   Prediction | BaseException]]]]
                       ) -> None:
        self._returned(lane)
        try:
            seconds, outcomes = done.result()
            lane.record(seconds, sum(p.columns.n for p in taken))
            lane.last_seconds = seconds
        except BaseException as exc:  # the executor itself failed
            outcomes = [(taken, exc)]
        self._done(served, lane, taken, outcomes)

    def _done(self, served: ServedModel, lane: _Lane, taken: list[_Pending],
              outcomes: list[tuple[list[_Pending], Prediction | BaseException]]) -> None:
        """Resolve every future of ``taken`` (whatever happens), then start the next batch."""
        try:
            self._resolve(served, outcomes)
        except BaseException as exc:  # never leave a request waiting forever
            for p in taken:
                if not p.future.done():
                    p.future.set_exception(exc)
        finally:
            for p in taken:
                if not p.future.done():
                    p.future.set_exception(RuntimeError("the batch ended without an answer"))
            lane.busy = False
            self._next(served, lane)

    def _resolve(self, served: ServedModel,
                 outcomes: list[tuple[list[_Pending], Prediction | BaseException]]) -> None:
        for items, outcome in outcomes:
            if isinstance(outcome, BaseException):
                for p in items:
                    if not p.future.done():
                        p.future.set_exception(outcome)
                continue
            if self.on_batch:
                self.on_batch(served, sum(p.columns.n for p in items))
            start = 0
            total = max(sum(p.columns.n for p in items), 1)
            cpu = outcome.cpu_seconds
            for p in items:
                end = start + p.columns.n
                if not p.future.done():  # each request carries its rows' share of the CPU
                    p.future.set_result(Prediction(
                        outcome.values[start:end],
                        outcome.proba[start:end] if outcome.proba is not None else None,
                        None if cpu is None else cpu * p.columns.n / total))
                start = end

    def _next(self, served: ServedModel, lane: _Lane) -> None:
        """Requests that arrived while the thread was busy go next: on the next turn of the
        loop for a fast model, after a short refill wait for a slow one (see the module)."""
        if lane.items and not lane.busy:
            if lane.inline(lane.rows, self.inline_limit):  # let this turn's arrivals join
                if lane.handle is None:
                    lane.handle = asyncio.get_running_loop().call_soon(
                        self._maybe_run, served, lane)
                return
            wait = min(0.1 * lane.last_seconds, self.max_refill)
            if wait <= 0 or lane.rows >= self.max_batch:
                self._run(served, lane)
            elif lane.handle is None:
                lane.handle = asyncio.get_running_loop().call_later(
                    wait, self._refilled, served, lane)

    def _refilled(self, served: ServedModel, lane: _Lane) -> None:
        lane.handle = None
        if lane.items and not lane.busy:
            self._run(served, lane)

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.executor.shutdown(wait=False, cancel_futures=True)
        self._lanes.clear()


def _predict_groups(served: ServedModel, items: list[_Pending]
                    ) -> list[tuple[list[_Pending], Prediction | BaseException]]:
    """Runs in the lane's thread: one predict per group of requests with the same columns."""
    groups: dict[tuple[Any, ...], list[_Pending]] = {}
    for p in items:
        groups.setdefault(p.columns.kind(), []).append(p)
    out: list[tuple[list[_Pending], Prediction | BaseException]] = []
    for group in groups.values():
        want_proba = any(p.want_proba for p in group)
        names = group[0].columns.names
        if len(group) == 1:
            merged = group[0].columns
        elif all(p.columns.dense is not None for p in group):
            merged = Columns.from_dense(names, np.concatenate(
                [p.columns.dense for p in group if p.columns.dense is not None]))
        else:
            merged = Columns(names, {c: np.concatenate([p.columns.data[c] for p in group])
                                     for c in names}, sum(p.columns.n for p in group))
        try:
            out.append((group, predict_columns(served, merged, want_proba)))
        except Exception as exc:
            if len(group) == 1:
                out.append((group, exc))
                continue
            for p in group:  # one request's bad rows must not fail its neighbours
                try:
                    out.append(([p], predict_columns(served, p.columns, p.want_proba)))
                except Exception as single:
                    out.append(([p], single))
    return out


def _timed_groups(served: ServedModel, items: list[_Pending]
                  ) -> tuple[float, list[tuple[list[_Pending], Prediction | BaseException]]]:
    started = time.perf_counter()
    outcomes = _predict_groups(served, items)
    return time.perf_counter() - started, outcomes
