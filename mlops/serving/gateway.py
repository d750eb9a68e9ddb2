"""The state of one gateway worker and its request path.

:class:`Gateway` holds the route table, the adaptive batcher and the prediction log. Its
request path (:meth:`Gateway.answer`, the same for HTTP and gRPC): pick the route, read the
body (bounded), decode and validate against the signature, predict through the batcher,
answer, then hand the prediction log its records (never blocking) and update the metrics.
The URL handlers (:mod:`~mlops.serving.handlers`), the app (:mod:`~mlops.serving.app`) and
the gRPC service (:mod:`mlops.serving.grpc`) are built on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from mlops.config import Settings
from mlops.errors import (
    BadRequest,
    ClientClosed,
    FlavorError,
    MlopsError,
    Overloaded,
    PayloadTooLarge,
    PredictTimeout,
    RequestTimeout,
    ServingError,
    SignatureError,
    UnsupportedMediaType,
    shown,
)
from mlops.identity import Principal
from mlops.serving import metrics as m
from mlops.serving.batching import Batcher, Prediction, quiet_name_check
from mlops.serving.codecs import Columns
from mlops.serving.datatypes import v2_output_type, v2_type_name
from mlops.serving.responses import error_response, json_response, loads_json, request_id_for
from mlops.serving.routing import RouteTable, ServedModel, ServingRoute
from mlops.store.context import Context
from mlops.store.predlog import REQUEST_FIELDS, FeedbackRecord, PredictionLog

__all__ = ["UNIT_HEADER", "Answer", "Call", "Decode", "Gateway", "GatewayConfig", "RecentIds",
           "caller_of", "propensity"]

log = logging.getLogger("mlops.serving")

# Gateway._log_rows hands the log each request as a plain tuple in this order
if REQUEST_FIELDS != ("request_id", "ts", "model", "version", "environment", "route",
                      "unit_hash", "names", "inputs", "values", "proba", "latency_ms", "status",
                      "propensity", "caller", "cpu_ms"):
    raise ImportError("The log's request fields changed: update Gateway._log_rows")
UNIT_HEADER = "x-mlops-unit"
#: Bodies larger than this are decoded, and requests of more rows than this logged, in a
#: thread: a large request must not stall the event loop (other requests, health checks).
_LOOP_BODY_BYTES = 256 * 1024
_LOOP_LOG_ROWS = 2_000
#: body, model -> validated columns and what the encoder needs to know about the request
Decode = Callable[[Any, ServedModel], tuple[Columns, Any]]


@dataclass(frozen=True, slots=True)
class Call:
    """One inference request, whichever transport carried it."""

    name: str
    version: str | None  # named by the caller: bypasses the routing
    request_id: str
    unit: str | None  # the sticky routing key (x-mlops-unit)
    protocol: str  # "http" or "grpc": a label of the request metrics
    read: Callable[[], Awaitable[Any]]  # the body, bounded; read once a route is chosen
    caller: str | None = None  # who asked (see :func:`caller_of`), for the usage audit


@dataclass(slots=True)
class Answer:
    """What :meth:`Gateway.answer` made of a :class:`Call`: on 200 the encoder's payload
    (and ``after``, the shadow request to run once the answer is sent); otherwise the
    refusal (``error``) or, for a failure of the model or the server (500), a message
    naming ``error_id`` in the server log."""

    status: int
    request_id: str
    version: str | None = None  # the version that answered (or had been chosen)
    payload: Any = None
    error: ServingError | SignatureError | None = None
    message: str = ""
    error_id: str | None = None
    after: Callable[[], Coroutine[Any, Any, None]] | None = None
    runtime: str | None = None  # what executed the version: onnx, sklearn, xgboost, ...


@dataclass
class GatewayConfig:
    environment: str = "production"
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout: float = 30.0  # seconds a client has to send its whole body (then 408)
    max_rows: int = 100_000  # rows per request (then 413): bounds a request's memory and log
    predict_timeout: float = 30.0  # seconds a model has to predict a batch (then 504)
    max_inflight: int = 512
    max_batch: int = 64
    max_wait_us: int = 500
    log_predictions: bool = True
    default_model: str | None = None
    poll_seconds: float = 0.25
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    controller_interval: float = 5.0  # seconds between rollout analyses (roles all/control)
    log_proba: bool = False  # compute and log probabilities of classifiers on every request
    grpc_port: int | None = None  # also serve the Open Inference Protocol over gRPC here
    grpc_host: str = "127.0.0.1"
    grpc_reuse_port: bool = False  # SO_REUSEPORT: several workers share the gRPC port
    only: tuple[str, ...] = ()  # serve only these models (one KServe InferenceService each)


def _settle_heap() -> None:
    """Move what is loaded now (libraries, models) out of the garbage collector's view.

    A full collection over the imported libraries and models takes about 80 ms here, and
    it lands on whichever request triggers it: the p99 latency. Frozen objects are never
    scanned again; requests only create short-lived objects, collected in the young
    generation. The young-generation threshold is raised so that it runs less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Gateway:
    """State shared by the handlers of one worker."""

    def __init__(self, settings: Settings, config: GatewayConfig) -> None:
        self.config = config
        self.context = Context.open(settings)
        self.table = RouteTable(self.context, config.environment,
                                breaker_threshold=config.breaker_threshold,
                                breaker_cooldown=config.breaker_cooldown,
                                only=frozenset(config.only) if config.only else None)
        self.batcher = Batcher(config.max_batch, config.max_wait_us, on_batch=self._on_batch,
                               predict_timeout=config.predict_timeout)
        # every answered request is spooled locally first: a killed worker loses none, the
        # next start writes them (the spool folder is shared by workers and restarts)
        self.predlog = PredictionLog(settings.artifacts_uri, spool=settings.home / "spool",
                                     on_drop=lambda n: m.LOG_DROPPED.inc(n)) \
            if config.log_predictions else None
        self.inflight = 0
        self.recent_ids = RecentIds(100_000)
        self._poller: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        #: the tasks reading a request body, with their deadlines (see :meth:`_sweep`)
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._published: set[tuple[str, str]] = set()
        #: the labelled request metrics, by (model, version, route, status, protocol)
        self._children: dict[tuple[str, str, str, int, str], tuple[Any, Any]] = {}
        self.ready = False

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        quiet_name_check()
        await asyncio.to_thread(self.table.refresh, True)
        self._publish_loaded()
        _settle_heap()
        self.ready = True
        if self.predlog is not None:
            self.predlog.start()
        self._poller = asyncio.create_task(self._poll())
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        for task in (self._poller, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.batcher.close()
        self.table.close()
        if self.predlog is not None:
            try:
                await asyncio.to_thread(self.predlog.close)
            except MlopsError:
                log.exception("the prediction log could not write everything at shutdown; "
                              "%d rows stay in the spool %s for the next start",
                              self.predlog.pending, self.predlog.spool_dir)

    async def _sweep(self) -> None:
        """Once a second, cancel the body reads past their deadline (``_body`` turns that
        into a 408): one timer for every request, not one per request (a per-request
        ``asyncio.timeout`` cost ~5 us on a ~200 us request)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for task, deadline in list(self._reading.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    async def _poll(self) -> None:
        """Reload the routes as soon as the change feed reports a change (LISTEN/NOTIFY
        wakes it at once; the counter poll looks every ``poll_seconds``)."""
        while True:
            try:
                if not await asyncio.to_thread(self.table.wait_for_change,
                                               self.config.poll_seconds):
                    continue
                if await asyncio.to_thread(self.table.refresh):
                    self._publish_loaded()
                    if not self.table.stale:  # not per failed try: a full collection
                        _settle_heap()        # of a large process takes up to a second
                if self.table.stale:  # a model failed to load: try again after a pause
                    await asyncio.sleep(self.config.poll_seconds)
            except Exception:  # keep serving the last good routes; look again shortly
                log.exception("routing refresh failed")
                await asyncio.sleep(self.config.poll_seconds)

    def _publish_loaded(self) -> None:
        now = {(s.name, s.version) for s in self.table.loaded()}
        for name, version in self._published - now:
            m.MODEL_LOADED.labels(name, version, self.config.environment).set(0)
        for name, version in now:
            m.MODEL_LOADED.labels(name, version, self.config.environment).set(1)
        self._published = now

    def _on_batch(self, served: ServedModel, rows: int) -> None:
        m.BATCH_SIZE.labels(served.name, served.version).observe(rows)

    # -------------------------------------------------------------- the hot path
    async def infer(self, request: Request, name: str, version: str | None,
                    decode: Decode, encode: Callable[[ServedModel, Prediction, str, Any], Any],
                    want_proba: Callable[[Any], bool] = lambda extra: False) -> Response:
        """One HTTP inference request: :meth:`answer` it and frame the answer."""
        headers = request.headers
        call = Call(name, version, request_id_for(headers.get("x-request-id")),
                    headers.get(UNIT_HEADER), "http", lambda: self._body(request),
                    caller_of(request.scope.get("state", {}).get("principal"),
                              request.scope.get("client")))
        answer = await self.answer(call, decode, encode, want_proba)
        request_id = answer.request_id
        if answer.status == 200:
            payload = answer.payload
            headers_out = {"x-request-id": request_id, "x-model-version": answer.version or "",
                           "x-model-runtime": answer.runtime or ""}
            if isinstance(payload, Response):  # framed already (binary tensor extension)
                payload.headers.update(headers_out)
                response = payload
            else:
                response = json_response(payload, headers=headers_out)
            if answer.after is not None:
                response.background = BackgroundTask(answer.after)
            return response
        if answer.error is not None:
            response = error_response(answer.error, request_id)
            if answer.version is not None:
                response.headers["x-model-version"] = answer.version
            if answer.runtime is not None:
                response.headers["x-model-runtime"] = answer.runtime
            return response
        extra_headers = {"x-request-id": request_id}
        if answer.version is not None:
            extra_headers["x-model-version"] = answer.version
        if answer.runtime is not None:
            extra_headers["x-model-runtime"] = answer.runtime
        return json_response({"error": answer.message, "error_id": answer.error_id},
                             answer.status, extra_headers)

    async def answer(self, call: Call, decode: Decode,
                     encode: Callable[[ServedModel, Prediction, str, Any], Any],
                     want_proba: Callable[[Any], bool] = lambda extra: False) -> Answer:
        """The request path of every protocol and transport: pick the route, read and
        decode the body (``decode`` validates it against the signature), predict through
        the batcher, ``encode`` the answer; count it and hand the prediction log its rows.
        Never raises: a refusal or a failure is an :class:`Answer` with its status."""
        started = time.perf_counter()
        name, request_id, protocol, caller = call.name, call.request_id, call.protocol, \
            call.caller
        label = name if name in self.table.routes else "_unknown"  # bounded label values
        if self.inflight >= self.config.max_inflight:
            self._observe(label, "", "none", 503, 0.0, protocol)
            return Answer(503, request_id, error=_overloaded())
        route_name, served, route = "direct", None, None
        columns: Columns | None = None
        unit = call.unit
        counted = False  # in flight from the moment its body has arrived
        try:
            if call.version is not None:
                served = await self._direct(name, call.version)
                label = name
            else:
                route = self.table.route(name)
                route_name, served = route.choose(unit)
            # a slow sender holds no in-flight slot, and no batch waits for it (the read is
            # bounded in time)
            body = await call.read()
            if self.inflight >= self.config.max_inflight:
                raise _overloaded()
            self.inflight += 1
            m.INFLIGHT.inc()
            counted = True
            self.batcher.decoding(served, 1)  # requests being decoded may join its batch
            try:
                columns, extra = await _decode_body(decode, body, served)
                self.refuse_rows(columns.n)
            finally:
                self.batcher.decoding(served, -1)
            if route is not None and route.spec.unit_field and unit is None:
                value = columns.value(route.spec.unit_field)
                if value is not None:
                    unit = str(value)
                    route_name, chosen = route.choose(unit)
                    if chosen is not served:
                        served = chosen
                        columns, extra = _decode(decode, body, served)
            proba = want_proba(extra) or (self.config.log_proba and served.model.has_proba)
            try:
                prediction = await self.batcher.predict(served, columns, proba)
                if route_name == "candidate" and route is not None:
                    route.breaker.success()
            except (SignatureError, BadRequest):
                raise
            except Exception as exc:
                if route_name != "candidate" or route is None:
                    raise
                route.breaker.failure()
                log.warning("candidate %s %s failed, answered by stable: %s", name,
                            served.version, exc)
                self._observe(name, served.version, "candidate", 500,
                              time.perf_counter() - started, protocol)
                self._model_failed(request_id, served, "candidate", unit, columns,
                                   time.perf_counter() - started, 500, caller)
                # answered by stable, logged apart so that arms keep their assignment counts
                route_name, served = "fallback", route.stable
                columns, extra = _decode(decode, body, served)
                prediction = await self.batcher.predict(served, columns, proba)
            payload = encode(served, prediction, request_id, extra)
            latency = time.perf_counter() - started
            self._observe(name, served.version, route_name, 200, latency, protocol)
            if self.predlog is not None and columns.n > _LOOP_LOG_ROWS:
                self.recent_ids.add(request_id)  # the rows are logged before the answer goes
                await asyncio.to_thread(self._log_rows, request_id, served, route_name, unit,
                                        columns, prediction, latency, 200,
                                        propensity(route, route_name), caller)
            else:
                self._log(request_id, served, route_name, unit, columns, prediction, latency,
                          200, propensity(route, route_name), caller)
            shadow = route.shadow_for(unit) if route is not None else None
            after = None
            if shadow is not None and route is not None:
                after = functools.partial(self._shadow, shadow, route, body, decode,
                                          request_id, unit, proba, protocol, caller)
            return Answer(200, request_id, served.version, payload, after=after,
                          runtime=served.runtime or served.model.flavor)
        except (ServingError, SignatureError) as exc:
            status = exc.status if isinstance(exc, ServingError) else 400
            if isinstance(exc, PredictTimeout) and served is not None:  # the model's doing
                self._model_failed(request_id, served, route_name, unit, columns,
                                   time.perf_counter() - started, status, caller)
            self._observe(label, served.version if served else "", route_name, status,
                          time.perf_counter() - started, protocol)
            return Answer(status, request_id, served.version if served else None, error=exc,
                          runtime=served.runtime or served.model.flavor if served else None)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.exception("error id %s: model %s %s failed on request %s", error_id, name,
                          served.version if served else "?", request_id)
            if served is not None:
                self._model_failed(request_id, served, route_name, call.unit, columns,
                                   time.perf_counter() - started, 500, caller)
            self._observe(label, served.version if served else "", route_name, 500,
                          time.perf_counter() - started, protocol)
            kind = "The model failed to predict" if isinstance(exc, FlavorError) else \
                "Internal error"
            return Answer(500, request_id, served.version if served else None,
                          runtime=served.runtime or served.model.flavor if served else None,
                          message=f"{kind} (error id {error_id}); the server log has the "
                                  "details.", error_id=error_id)
        finally:
            if counted:
                self.inflight -= 1
                m.INFLIGHT.dec()

    def refuse_rows(self, n: int) -> None:
        """413 for a request of more than ``max_rows`` rows."""
        if n > self.config.max_rows:
            raise PayloadTooLarge(
                f"The request has {n:,} rows; the limit is {self.config.max_rows:,}.",
                fix="Send fewer rows per request (or raise mlops serve --max-rows).")

    async def served(self, name: str, version: str | None) -> ServedModel:
        """The version that answers ``name`` (the stable arm of its route), or the version
        named (loaded off the event loop when it is not loaded yet)."""
        if version is not None:
            return await self._direct(name, version)
        return self.table.route(name).stable

    def metadata(self, served: ServedModel, explicit: bool) -> dict[str, Any]:
        """V2 model metadata: the versions served (with the candidate's, unless a version
        was named), the flavor, and the inputs and outputs with their datatypes."""
        route = self.table.routes.get(served.name)
        versions = [served.version]
        if not explicit and route is not None and route.candidate is not None:
            versions.append(route.candidate.version)
        cols = served.schema.columns
        inputs = [{"name": c.name, "datatype": v2_type_name(c.dtype), "shape": [-1]}
                  for c in cols] if cols else \
            [{"name": "input-0", "datatype": "FP64", "shape": [-1, -1]}]
        outputs = [{"name": "predict", "datatype": v2_output_type(served.model.classes),
                    "shape": [-1]}]
        if served.model.has_proba:
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, -1]})
        return {"name": served.name, "versions": versions, "platform": served.model.flavor,
                "inputs": inputs, "outputs": outputs}

    async def _direct(self, name: str, version: str) -> ServedModel:
        """A version named in the URL; loading one happens off the event loop."""
        cached = self.table.cached(name, version)
        if cached is not None:
            return cached
        return await asyncio.to_thread(self.table.direct, name, version)

    async def _shadow(self, shadow: ServedModel, route: ServingRoute, body: Any,
                      decode: Decode, request_id: str, unit: str | None, proba: bool,
                      protocol: str, caller: str | None = None) -> None:
        started = time.perf_counter()
        try:
            columns, _ = _decode(decode, body, shadow)
        except (ServingError, SignatureError) as exc:  # the request, not the model
            self._observe(shadow.name, shadow.version, "shadow", 400,
                          time.perf_counter() - started, protocol)
            log.info("shadow %s %s refused the request: %s", shadow.name, shadow.version, exc)
            return
        self.inflight += 1
        m.INFLIGHT.inc()
        try:
            prediction = await self.batcher.predict(shadow, columns, proba)
            route.breaker.success()
        except Exception as exc:
            route.breaker.failure()
            self._observe(shadow.name, shadow.version, "shadow", 500,
                          time.perf_counter() - started, protocol)
            self._model_failed(request_id, shadow, "shadow", unit, columns,
                               time.perf_counter() - started, 500, caller)
            log.warning("shadow %s %s failed: %s", shadow.name, shadow.version, exc)
            return
        finally:
            self.inflight -= 1
            m.INFLIGHT.dec()
        latency = time.perf_counter() - started
        self._observe(shadow.name, shadow.version, "shadow", 200, latency, protocol)
        self._log(request_id, shadow, "shadow", unit, columns, prediction, latency, 200,
                  None, caller)

    async def _body(self, request: Request) -> bytes:
        """The request body: at most ``max_body_bytes``, all of it within ``body_timeout``
        seconds (408 after), not compressed (415); a client that hangs up mid-body is a
        :class:`ClientClosed` (499), not a failure of the model."""
        headers = request.headers
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaType(
                f"Content-Encoding {encoding[:40]!r} is not accepted.",
                fix="Send the body uncompressed (no Content-Encoding header).")
        limit = self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The body is {declared} bytes; the limit is {limit}.",
                                  fix="Send fewer rows per request.")
        chunks: list[bytes] = []
        size = 0
        timeout = self.config.body_timeout
        task = asyncio.current_task()
        assert task is not None
        self._reading[task] = time.monotonic() + timeout
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The body is over the {limit}-byte limit.",
                                          fix="Send fewer rows per request.")
                chunks.append(chunk)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            task.uncancel()
            raise RequestTimeout(
                f"The body did not arrive within {timeout:g} s ({size} bytes received).",
                fix="Send the whole body at once, or fewer rows per request.") from None
        except ClientDisconnect as exc:
            raise ClientClosed("The client closed the connection before sending its body.",
                               fix="Keep the connection open until the answer arrives.") \
                from exc
        finally:
            self._reading.pop(task, None)
            self._expired.discard(task)
        return b"".join(chunks)

    def _observe(self, name: str, version: str, route: str, code: int, seconds: float,
                 protocol: str) -> None:
        key = (name, version, route, code, protocol)
        children = self._children.get(key)
        if children is None:  # labels() costs ~10 us a request; the label sets are bounded
            env = self.config.environment
            children = self._children[key] = (
                m.REQUESTS.labels(name, version, env, route, protocol, str(code)),
                m.REQUEST_DURATION.labels(name, version, env, route, protocol)
                if code == 200 else None)
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)

    def _log(self, request_id: str, served: ServedModel, route: str, unit: str | None,
             columns: Columns, prediction: Prediction, latency: float, status: int,
             propensity: float | None = None, caller: str | None = None) -> None:
        if self.predlog is None:
            return
        self.recent_ids.add(request_id)
        self._log_rows(request_id, served, route, unit, columns, prediction, latency, status,
                       propensity, caller)

    def _log_rows(self, request_id: str, served: ServedModel, route: str, unit: str | None,
                  columns: Columns, prediction: Prediction, latency: float, status: int,
                  propensity: float | None = None, caller: str | None = None) -> None:
        """One request to the prediction log (thread-safe): handed over whole, with its
        arrays, so that nothing here is done per row (the log makes the rows when it
        writes them)."""
        assert self.predlog is not None
        unit_hash = None if unit is None else hashlib.sha256(unit.encode()).hexdigest()[:16]
        cpu_ms = None if prediction.cpu_seconds is None \
            else prediction.cpu_seconds * 1000.0 / max(columns.n, 1)
        self.predlog.log_request((  # REQUEST_FIELDS, in order (checked at import)
            request_id, time.time(), served.name, served.version, self.config.environment,
            route, unit_hash, columns.names, columns.block(), prediction.values,
            prediction.proba, latency * 1000.0, status, propensity, caller, cpu_ms))

    def _model_failed(self, request_id: str, served: ServedModel, route: str,
                      unit: str | None, columns: Columns | None, latency: float, status: int,
                      caller: str | None = None) -> None:
        """The model failed (raised, or passed its deadline): counted as its error, and
        the rows it failed on logged with the status and no prediction, so that error
        rates per version can be read from the log."""
        m.PREDICTION_ERRORS.labels(served.name, served.version, self.config.environment,
                                   route).inc()
        if columns is None:
            return
        empty = Prediction(np.full(columns.n, None, dtype=object), None)
        self._log(request_id, served, route, unit, columns, empty, latency, status,
                  caller=caller)

    # -------------------------------------------------------------- feedback
    async def feedback(self, request: Request, name: str) -> Response:
        try:
            self.table.route(name)  # labels only for models served here (bounded partitions)
            body = await self._body(request)
            doc = loads_json(body)
            items = doc if isinstance(doc, list) else [doc]
            records = []
            for i, item in enumerate(items):
                if not isinstance(item, dict) or "request_id" not in item or "actual" not in item:
                    raise BadRequest(f"Feedback item {i} needs 'request_id' and 'actual'.",
                                     fix='Send {"request_id": "...", "actual": label}.')
                actual = item["actual"]
                row = item.get("row", 0)
                if type(row) is not int or not 0 <= row < 2**31:
                    raise BadRequest(f"Feedback item {i}: 'row' must be a row number (an "
                                     f"integer from 0), got {shown(row)}.",
                                     fix="Leave 'row' out for single-row requests.")
                request_id = item["request_id"]
                if not isinstance(request_id, str) or not request_id_for(request_id) \
                        == request_id:
                    raise BadRequest(f"Feedback item {i}: 'request_id' must be the id an "
                                     f"answer carried, got {shown(request_id)}.",
                                     fix="Send the x-request-id of the answer (a string of "
                                         "at most 128 printable ASCII characters).")
                records.append(FeedbackRecord(
                    request_id=request_id, row=row, model=name,
                    actual=orjson.dumps(actual).decode(),
                    actual_num=float(actual) if isinstance(actual, int | float) else None,
                    ts=time.time()))
        except ServingError as exc:
            return error_response(exc)
        unmatched = sum(1 for r in records if r.request_id not in self.recent_ids)
        if self.predlog is not None:
            self.predlog.log_feedback(records)
        m.FEEDBACK.labels(name, "true").inc(len(records) - unmatched)
        m.FEEDBACK.labels(name, "false").inc(unmatched)
        return json_response({"accepted": len(records), "unmatched": unmatched})


def _overloaded() -> Overloaded:
    return Overloaded("The gateway is at its in-flight limit.",
                      fix="Retry after the Retry-After delay.")


class RecentIds:
    """The ids of the last ``generation`` to ``2 * generation`` logged requests (feedback
    for older ones is still logged, and counted as unmatched). Two generations of sets: O(1)
    per request, never an eviction per request (an OrderedDict of 200,000 ids cost 10-20 us
    of CPU per request in its evictions and resizes)."""

    __slots__ = ("_current", "_generation", "_previous")

    def __init__(self, generation: int) -> None:
        self._generation = generation
        self._current: set[str] = set()
        self._previous: set[str] = set()

    def add(self, request_id: str) -> None:
        current = self._current
        current.add(request_id)
        if len(current) >= self._generation:
            self._previous, self._current = current, set()

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._current or request_id in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


def caller_of(principal: Any, client: Any) -> str:
    """Who sent an inference request, as the log records it: ``{via}:{name}`` of an
    authenticated caller (``token:alice``, ``jwt:sub``, ``local:me``), else
    ``address:{client host}``."""
    if isinstance(principal, Principal) and principal.role is not None:
        name = principal.name  # a JWT principal's name says jwt: already
        caller = name if name.startswith(f"{principal.via}:") else f"{principal.via}:{name}"
        return caller[:256]
    if client:
        return f"address:{client[0]}"
    return "address:unknown"


def propensity(route: ServingRoute | None, name: str) -> float | None:
    """The probability that the routing sends a request to the arm that answered it."""
    if route is None or route.candidate is None or route.spec.mode != "split":
        return 1.0 if route is not None and name == "stable" else None
    share = route.spec.weight / 100.0
    return {"candidate": share, "stable": 1.0 - share, "fallback": share}.get(name)


async def _decode_body(decode: Decode, body: Any, served: ServedModel) -> tuple[Columns, Any]:
    """:func:`_decode`, in a thread for a large body."""
    if isinstance(body, bytes) and len(body) > _LOOP_BODY_BYTES:
        return await asyncio.to_thread(_decode, decode, body, served)
    return _decode(decode, body, served)


def _decode(decode: Decode, body: Any, served: ServedModel) -> tuple[Columns, Any]:
    """Decode and validate; anything the decoders did not foresee is still a 400."""
    try:
        return decode(body, served)
    except (ServingError, SignatureError):
        raise
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, RecursionError) as exc:
        raise BadRequest(f"The request could not be read: {type(exc).__name__}: {exc}.",
                         fix="Check the body against the protocol's examples.") from exc
