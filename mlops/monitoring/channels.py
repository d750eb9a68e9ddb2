"""Alert notification channels and the non-blocking dispatcher that feeds them.

The alert engine builds a :class:`Notification` per firing or resolution and hands it to a
:class:`Dispatcher`, which queues it (bounded, never blocking the caller) and lets background
threads deliver it to every :class:`Channel`:

- :class:`LogChannel` - Python logging on the ``mlops.alerts`` logger, level by severity;
- :class:`WebhookChannel` - JSON ``POST`` of :meth:`Notification.to_dict` (httpx);
- :class:`SlackChannel` - a Slack incoming-webhook body (``text`` + ``blocks``).

HTTP channels retry connection errors, timeouts, 429 and 5xx answers with exponential
backoff (``backoff * 2**(attempt - 1)`` seconds, tenacity), at most ``retries`` times after the
first attempt. Each attempt is bounded by ``timeout`` (httpx's connect/read/write/pool
timeouts), so one delivery takes at most about ``(retries + 1) * timeout`` plus the backoff
sleeps. Channels never raise: every outcome, good or bad, is a :class:`DeliveryResult`.
Names and results show only the endpoint's host, never its path (a Slack webhook's path is
its secret).

HTTP channels obey an :class:`~mlops.store.egress.EgressPolicy` (default: the ``egress_allow``
setting): a URL reaching loopback, link-local, private or other internal addresses is refused
when the channel is built, and again at every attempt, after resolving the host once: the
request then goes to that checked address (original ``Host`` header, TLS name checked against
the host), so DNS rebinding cannot redirect it. Redirects are not followed and environment
proxies are not used. A refused delivery is a failed :class:`DeliveryResult`.
"""

from __future__ import annotations

import html
import logging
import math
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from mlops.errors import MonitoringError
from mlops.store.egress import EgressPolicy

__all__ = [
    "CHANNEL_TYPES",
    "SEVERITIES",
    "Channel",
    "DeliveryResult",
    "Dispatcher",
    "LogChannel",
    "Notification",
    "SlackChannel",
    "UnavailableChannel",
    "WebhookChannel",
    "channel_from_config",
]

SEVERITIES = ("critical", "high", "medium", "low")
STATES = ("firing", "resolved")
CHANNEL_TYPES = ("log", "webhook", "slack")
LOGGER_NAME = "mlops.alerts"
_LEVELS = {"critical": logging.CRITICAL, "high": logging.ERROR, "medium": logging.WARNING,
           "low": logging.INFO}
_MAX_BACKOFF = 10.0

log = logging.getLogger(LOGGER_NAME)


def _json_safe(value: Any) -> Any:
    """Recursively turn ``value`` into something ``json.dumps(allow_nan=False)`` accepts."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    try:  # numpy scalars, Decimal, ...
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def _iso(moment: datetime) -> str:
    """ISO-8601 in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class Notification:
    """One alert transition to deliver; ``alert_id`` is the receiver's deduplication key."""

    alert_id: str
    rule: str
    model: str
    version: str | None
    environment: str | None
    severity: str
    state: str
    metric: str
    value: float | None
    threshold: float | None
    message: str
    fired_at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise MonitoringError(f"Notification severity {self.severity!r} is unknown.",
                                  fix=f"use one of {SEVERITIES}.", rule=self.rule)
        if self.state not in STATES:
            raise MonitoringError(f"Notification state {self.state!r} is unknown.",
                                  fix=f"use one of {STATES}.", rule=self.rule)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ISO-8601 UTC timestamps, NaN/inf as ``null``."""
        return {"alert_id": self.alert_id, "rule": self.rule, "model": self.model,
                "version": self.version, "environment": self.environment,
                "severity": self.severity, "state": self.state, "metric": self.metric,
                "value": _json_safe(self.value), "threshold": _json_safe(self.threshold),
                "message": self.message, "fired_at": _iso(self.fired_at),
                "details": _json_safe(self.details)}


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of delivering one notification to one channel."""

    channel: str
    ok: bool
    attempts: int
    status_code: int | None
    error: str | None
    elapsed_ms: float
    alert_id: str = ""


@runtime_checkable
class Channel(Protocol):
    """Anything with a ``name`` that can ``send`` a notification without raising."""

    @property
    def name(self) -> str: ...

    def send(self, notification: Notification) -> DeliveryResult: ...


class LogChannel:
    """Writes each notification to the ``mlops.alerts`` logger (resolutions at INFO)."""

    def __init__(self, *, name: str = "log", logger: str = LOGGER_NAME) -> None:
        self._name = name
        self._logger = logging.getLogger(logger)

    @property
    def name(self) -> str:
        return self._name

    def send(self, notification: Notification) -> DeliveryResult:
        start = time.perf_counter()
        n = notification
        level = logging.INFO if n.state == "resolved" else _LEVELS[n.severity]
        try:
            self._logger.log(level, "[%s] %s %s: %s", n.severity.upper(), n.state, n.rule,
                             n.message, extra={"alert": n.to_dict()})
        except Exception as exc:  # a broken handler must not break monitoring
            return DeliveryResult(self._name, False, 1, None, f"{type(exc).__name__}: {exc}",
                                  _ms(start), n.alert_id)
        return DeliveryResult(self._name, True, 1, None, None, _ms(start), n.alert_id)

    def close(self) -> None:
        """Nothing to release."""


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class UnavailableChannel:
    """Stands in for a configured channel that cannot be built (e.g. its URL is refused by
    the egress policy): every delivery fails with ``reason``."""

    def __init__(self, name: str, reason: str) -> None:
        self._name = name
        self.reason = reason

    @property
    def name(self) -> str:
        return self._name

    def send(self, notification: Notification) -> DeliveryResult:
        return DeliveryResult(self._name, False, 0, None, self.reason, 0.0,
                              notification.alert_id)

    def close(self) -> None:
        """Nothing to release."""


class _RetryableStatus(Exception):
    """A 429 or 5xx answer: worth another attempt."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _check_url(url: Any, key: str = "url") -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise MonitoringError(f"Channel {key}={url!r} is not an http(s) URL.",
                              fix=f"set {key} to the endpoint, e.g. https://hooks.example/mlops.",
                              key=key)
    return url


def _check_number(value: Any, key: str, *, integer: bool = False, allow_zero: bool = False
                  ) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) \
        and math.isfinite(value) and (value > 0 or (allow_zero and value == 0)) \
        and (not integer or float(value).is_integer())
    if not ok:
        kind = "a whole number" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise MonitoringError(f"Channel {key}={value!r} is not {kind} {bound}.",
                              fix=f"set {key} to {kind} {bound}.", key=key)
    return float(value)


class WebhookChannel:
    """``POST``s :meth:`Notification.to_dict` as JSON to ``url``; retries, never raises.

    ``egress`` decides which hosts may be reached (default: the ``egress_allow`` setting);
    ``verify`` is an SSL context for an endpoint with a private CA (default: certifi).
    """

    def __init__(self, url: str, *, timeout: float = 2.0, retries: int = 3,
                 backoff: float = 0.2, headers: Mapping[str, str] | None = None,
                 name: str | None = None, egress: EgressPolicy | None = None,
                 verify: ssl.SSLContext | None = None) -> None:
        self.url = _check_url(url)
        self.timeout = _check_number(timeout, "timeout")
        self.retries = int(_check_number(retries, "retries", integer=True, allow_zero=True))
        self.backoff = _check_number(backoff, "backoff", allow_zero=True)
        if headers is not None and not (isinstance(headers, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
            raise MonitoringError("Channel headers must map header names to strings.",
                                  fix='set headers like {"Authorization": "Bearer ..."}.',
                                  key="headers")
        self.headers = dict(headers or {})
        self._name = name or f"{self._kind}:{urlsplit(self.url).hostname}"
        self._verify = verify
        self.egress = egress if egress is not None else EgressPolicy.from_settings()
        self.egress.check_url(self.url)  # last: the other options are checked without DNS
        self._client: httpx.Client | None = None  # made on first send, not when validating
        self._lock = threading.Lock()

    _kind = "webhook"

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, timeout={self.timeout})"

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body sent for ``notification``."""
        return notification.to_dict()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout), headers=self.headers,
                    follow_redirects=False, trust_env=False,
                    verify=self._verify if self._verify is not None else True)
            return self._client

    def _post(self, client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
        """One attempt: resolve and check the host once, then connect to a checked address
        (the next one only when the previous refused the connection)."""
        try:
            target = self.egress.resolve_url(self.url)
        except OSError as exc:  # DNS failure: as retryable as a refused connection
            raise httpx.ConnectError(f"cannot resolve {urlsplit(self.url).hostname}: {exc}"
                                     ) from exc
        failure: httpx.ConnectError | None = None
        for address in target.addresses:
            pinned = target.pinned(address)
            try:
                return client.post(pinned.url, json=body, headers=pinned.headers,
                                   extensions=pinned.extensions)
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None  # resolve_url never returns an empty address list
        raise failure

    def send(self, notification: Notification) -> DeliveryResult:
        start = time.perf_counter()
        attempts = 0
        status: int | None = None
        try:
            body = self.payload(notification)
            client = self._http()
            retrying = Retrying(
                stop=stop_after_attempt(self.retries + 1),
                wait=wait_exponential(multiplier=self.backoff, max=_MAX_BACKOFF),
                retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
                reraise=True)
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    status = None
                    response = self._post(client, body)
                    status = response.status_code
                    if status == 429 or status >= 500:
                        raise _RetryableStatus(status)
            ok = status is not None and 200 <= status < 300
            error = None if ok else f"HTTP {status}"
        except _RetryableStatus as exc:
            ok, status, error = False, exc.status, f"HTTP {exc.status}"
        except httpx.TimeoutException as exc:
            ok, error = False, f"timeout after {self.timeout:g}s ({type(exc).__name__})"
        except MonitoringError as exc:  # the egress policy refused the resolved address
            ok, error = False, f"refused by the egress policy: {exc}"
        except Exception as exc:  # never let a channel break the monitoring loop
            ok, error = False, f"{type(exc).__name__}: {exc}"
        return DeliveryResult(self._name, ok, attempts, status, error, _ms(start),
                              notification.alert_id)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _slack_escape(text: str) -> str:
    return html.escape(text, quote=False)  # Slack wants &, < and > escaped


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class SlackChannel(WebhookChannel):
    """Posts to a Slack incoming webhook: plain ``text`` plus Block Kit ``blocks``."""

    _kind = "slack"

    def __init__(self, webhook_url: str, *, timeout: float = 2.0, retries: int = 3,
                 backoff: float = 0.2, headers: Mapping[str, str] | None = None,
                 name: str | None = None, egress: EgressPolicy | None = None,
                 verify: ssl.SSLContext | None = None) -> None:
        super().__init__(webhook_url, timeout=timeout, retries=retries, backoff=backoff,
                         headers=headers, name=name, egress=egress, verify=verify)

    def payload(self, notification: Notification) -> dict[str, Any]:
        n = notification
        state = "FIRING" if n.state == "firing" else "RESOLVED"
        where = n.model + (f" v{n.version}" if n.version else "") \
            + (f" ({n.environment})" if n.environment else "")
        text = (f"[{n.severity.upper()}] {state}: {n.rule} on {where} - {n.metric} = "
                f"{_number(n.value)} (threshold {_number(n.threshold)})")
        fields = [("Model", n.model), ("Version", n.version or "-"),
                  ("Environment", n.environment or "-"), ("Severity", n.severity),
                  ("Metric", n.metric),
                  ("Value / threshold", f"{_number(n.value)} / {_number(n.threshold)}")]
        blocks: list[dict[str, Any]] = [
            {"type": "header",
             "text": {"type": "plain_text", "text": f"{state}: {n.rule}"[:150]}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": _slack_escape(n.message)[:3000] or "-"}},
            {"type": "section",
             "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"}
                        for k, v in fields]},
            {"type": "context",
             "elements": [{"type": "mrkdwn",
                           "text": f"alert {_slack_escape(n.alert_id)} | {n.state} | "
                                   f"fired {_iso(n.fired_at)}"}]},
        ]
        return {"text": _slack_escape(text), "blocks": blocks}


_KEYS: dict[str, frozenset[str]] = {
    "log": frozenset({"type", "name", "logger"}),
    "webhook": frozenset({"type", "name", "url", "timeout", "retries", "backoff", "headers"}),
    "slack": frozenset({"type", "name", "url", "webhook_url", "timeout", "retries", "backoff",
                        "headers"}),
}


def channel_from_config(spec: Mapping[str, Any], *, egress: EgressPolicy | None = None
                        ) -> Channel:
    """``{"type": "log"|"webhook"|"slack", "url": ..., "timeout": ..., "retries": ...}``.

    HTTP channels check their URL against ``egress`` (default: the ``egress_allow`` setting).
    """
    if not isinstance(spec, Mapping):
        raise MonitoringError(f"A channel must be a mapping, got {type(spec).__name__}.",
                              fix='write it like {type: webhook, url: "https://..."}.')
    kind = spec.get("type")
    if kind not in CHANNEL_TYPES:
        raise MonitoringError(f"Channel type {kind!r} is not one of {CHANNEL_TYPES}.",
                              fix="set type to log, webhook or slack.", key="type")
    unknown = sorted(str(k) for k in set(spec) - _KEYS[kind])
    if unknown:
        raise MonitoringError(f"A {kind} channel has unknown key(s) {unknown}.",
                              fix=f"use only {sorted(_KEYS[kind])}.", key=unknown[0])
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise MonitoringError(f"Channel name={name!r} is not a non-empty string.",
                              fix="set name to a short label or leave it out.", key="name")
    if kind == "log":
        logger = spec.get("logger", LOGGER_NAME)
        if not isinstance(logger, str) or not logger:
            raise MonitoringError(f"Channel logger={logger!r} is not a logger name.",
                                  fix=f"leave it out (uses {LOGGER_NAME!r}).", key="logger")
        return LogChannel(name=name or "log", logger=logger)
    if kind == "slack" and "url" in spec and "webhook_url" in spec:
        raise MonitoringError("A slack channel has both url and webhook_url.",
                              fix="keep one of them.", key="webhook_url")
    url_key = "webhook_url" if kind == "slack" and "webhook_url" in spec else "url"
    if url_key not in spec:
        raise MonitoringError(f"A {kind} channel needs a {url_key}.",
                              fix=f"add {url_key}: https://... to the channel.", key=url_key)
    url = _check_url(spec[url_key], url_key)
    options: dict[str, Any] = {k: spec[k] for k in ("timeout", "retries", "backoff", "headers")
                               if k in spec}
    cls = SlackChannel if kind == "slack" else WebhookChannel
    try:
        return cls(url, name=name, egress=egress, **options)
    except MonitoringError as exc:
        if exc.context.get("key") != "url" or url_key == "url":
            raise
        raise MonitoringError(exc.message, fix=exc.fix, **{**exc.context, "key": url_key}
                              ) from exc


_STOP = object()


class Dispatcher:
    """Bounded queue + daemon workers delivering notifications to every channel.

    :meth:`submit` never blocks: when ``max_queue`` notifications are waiting the new one is
    dropped and counted in ``dropped``. ``delivered``/``failed`` count per-channel outcomes;
    :meth:`results` holds the most recent ``keep_results`` of them.
    """

    def __init__(self, channels: Sequence[Channel], *, max_queue: int = 1000, workers: int = 2,
                 keep_results: int = 1000) -> None:
        for key, value in (("max_queue", max_queue), ("workers", workers),
                           ("keep_results", keep_results)):
            _check_number(value, key, integer=True)
        for channel in channels:
            if not isinstance(channel, Channel):
                raise MonitoringError(f"{channel!r} is not a notification channel.",
                                      fix="pass LogChannel, WebhookChannel or SlackChannel "
                                          "objects (or channel_from_config(...)).")
        self.channels = list(channels)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(max_queue))
        self._results: deque[DeliveryResult] = deque(maxlen=int(keep_results))
        self._cond = threading.Condition()
        self._pending = 0
        self._closed = False
        self.submitted = self.delivered = self.failed = self.dropped = 0
        self._threads = [threading.Thread(target=self._work, name=f"mlops-alerts-{i}",
                                          daemon=True) for i in range(int(workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, notification: Notification) -> bool:
        """Queue ``notification``; ``False`` (and ``dropped`` += 1) when full or closed."""
        with self._cond:
            if self._closed:
                self.dropped += 1
                return False
            try:
                self._queue.put_nowait(notification)
            except queue.Full:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._pending += 1
                self.submitted += 1
                return True
        if dropped == 1 or dropped % 100 == 0:
            log.warning("alert queue full (%d waiting): dropped %d notification(s) so far",
                        self._queue.maxsize, dropped)
        return False

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            missed = []
            for channel in self.channels:
                result = self._deliver(channel, item)
                with self._cond:
                    self._results.append(result)
                    if result.ok:
                        self.delivered += 1
                    else:
                        self.failed += 1
                if not result.ok:
                    missed.append(f"{result.channel} ({result.error})")
            if missed:
                log.warning("alert %s (%s) not delivered to %s", item.alert_id, item.rule,
                            ", ".join(missed))
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    @staticmethod
    def _deliver(channel: Channel, notification: Notification) -> DeliveryResult:
        start = time.perf_counter()
        try:
            return channel.send(notification)
        except Exception as exc:  # a third-party channel broke its promise not to raise
            return DeliveryResult(getattr(channel, "name", repr(channel)), False, 1, None,
                                  f"{type(exc).__name__}: {exc}", _ms(start),
                                  notification.alert_id)

    @property
    def pending(self) -> int:
        """Notifications queued or being delivered."""
        with self._cond:
            return self._pending

    def results(self) -> list[DeliveryResult]:
        """The most recent delivery results, oldest first."""
        with self._cond:
            return list(self._results)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification is delivered; ``False`` on timeout."""
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Refuse new work, wait up to ``timeout`` for the queue, stop workers, close channels.

        ``False`` when notifications were still pending (they are abandoned with the daemon
        threads).
        """
        with self._cond:
            if self._closed:
                return self._pending == 0
            self._closed = True
        drained = self.flush(timeout)
        if drained:
            for _ in self._threads:
                self._queue.put(_STOP)
            for thread in self._threads:
                thread.join(timeout=1.0)
            for channel in self.channels:
                closer = getattr(channel, "close", None)
                if callable(closer):
                    closer()
        return drained
