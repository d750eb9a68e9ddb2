"""Notification channels against a real HTTP server on a loopback port (allow-listed: the
egress policy refuses loopback otherwise; see test_channel_egress.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mlops.errors import MonitoringError
from mlops.monitoring.channels import (
    Channel,
    DeliveryResult,
    Dispatcher,
    LogChannel,
    Notification,
    SlackChannel,
    WebhookChannel,
    channel_from_config,
)
from mlops.store.egress import EgressPolicy

LOOPBACK = EgressPolicy.from_allow(["127.0.0.1/32"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.statuses: list[int] = []  # answered in order; 200 once exhausted
        self.hang = 0.0  # seconds to sleep before answering
        self.release = threading.Event()  # ends every hang at teardown
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook/secret-token"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        srv = self.server
        with srv.lock:
            srv.bodies.append(body)
            srv.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
            status = srv.statuses.pop(0) if srv.statuses else 200
        if srv.hang:
            srv.release.wait(srv.hang)
        with contextlib.suppress(OSError):  # the client gave up (timeout): nobody to answer
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output free of the server's access log."""


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # closed again: connection refused


def _note(state: str = "firing", **kw: Any) -> Notification:
    base: dict[str, Any] = dict(
        alert_id="42", rule="accuracy-drop", model="churn", version="1.3.0",
        environment="production", severity="high", state=state, metric="accuracy",
        value=0.81, threshold=0.85, message="accuracy-drop: accuracy = 0.81 (< 0.85) on churn",
        fired_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC), details={"evaluations": 3})
    base.update(kw)
    return Notification(**base)


def test_notification_to_dict_is_json_safe() -> None:
    n = _note(value=float("nan"), fired_at=datetime(2024, 5, 1, 12, 30),
              details={"p": np.float64(0.5), "n": np.int64(3), "when": datetime(2024, 1, 1),
                       "tags": ("a", "b"), "inf": math.inf, "obj": object})
    d = n.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d
    assert d["value"] is None and d["threshold"] == 0.85
    assert d["fired_at"] == "2024-05-01T12:30:00+00:00"
    assert d["details"]["p"] == 0.5 and d["details"]["n"] == 3 and d["details"]["inf"] is None
    assert d["details"]["when"] == "2024-01-01T00:00:00+00:00"
    assert d["details"]["tags"] == ["a", "b"] and d["details"]["obj"] == str(object)
    with pytest.raises(MonitoringError, match="severity") as err:
        _note(severity="urgent")
    assert err.value.fix
    with pytest.raises(MonitoringError, match="state"):
        _note(state="pending")


def test_webhook_delivers_firing_and_resolved(server: _Server) -> None:
    channel = WebhookChannel(server.url, headers={"Authorization": "Bearer t0k3n"},
                             egress=LOOPBACK)
    assert isinstance(channel, Channel)
    assert channel.name == "webhook:127.0.0.1" and "secret-token" not in repr(channel)
    fired, resolved = _note(), _note("resolved", severity="critical")
    r1, r2 = channel.send(fired), channel.send(resolved)
    for r in (r1, r2):
        assert r.ok and r.attempts == 1 and r.status_code == 200 and r.error is None
        assert r.elapsed_ms > 0 and r.channel == channel.name
    assert server.bodies == [fired.to_dict(), resolved.to_dict()]
    assert [b["state"] for b in server.bodies] == ["firing", "resolved"]
    assert server.headers_seen[0]["authorization"] == "Bearer t0k3n"
    assert server.headers_seen[0]["content-type"] == "application/json"
    channel.close()


def test_slack_payload_shape(server: _Server) -> None:
    channel = SlackChannel(server.url, egress=LOOPBACK)
    note = _note(message="accuracy <0.85> & falling")
    result = channel.send(note)
    assert result.ok and result.channel == "slack:127.0.0.1"
    body = server.bodies[0]
    assert set(body) == {"text", "blocks"}
    assert body["text"] == ("[HIGH] FIRING: accuracy-drop on churn v1.3.0 (production) - "
                            "accuracy = 0.81 (threshold 0.85)")
    assert body["text"].isascii()
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": "FIRING: accuracy-drop"}
    assert body["blocks"][1]["text"]["text"] == "accuracy &lt;0.85&gt; &amp; falling"
    fields = [f["text"] for f in body["blocks"][2]["fields"]]
    assert fields == ["*Model*\nchurn", "*Version*\n1.3.0", "*Environment*\nproduction",
                      "*Severity*\nhigh", "*Metric*\naccuracy",
                      "*Value / threshold*\n0.81 / 0.85"]
    assert "alert 42" in body["blocks"][3]["elements"][0]["text"]
    bare = channel.payload(_note("resolved", version=None, environment=None, value=None))
    assert bare["text"] == ("[HIGH] RESOLVED: accuracy-drop on churn - accuracy = n/a "
                            "(threshold 0.85)")
    channel.close()


def test_retries_5xx_with_backoff_then_succeeds(server: _Server) -> None:
    server.statuses = [500, 503]
    channel = WebhookChannel(server.url, retries=3, backoff=0.05, egress=LOOPBACK)
    start = time.perf_counter()
    r = channel.send(_note())
    elapsed = time.perf_counter() - start
    assert r.ok and r.attempts == 3 and r.status_code == 200
    assert len(server.bodies) == 3 and server.bodies[0] == server.bodies[2]
    assert elapsed >= 0.05 + 0.1  # waited backoff * 1, then * 2
    server.statuses = [502] * 5
    r = WebhookChannel(server.url, retries=2, backoff=0.01, egress=LOOPBACK).send(_note())
    assert not r.ok and r.attempts == 3 and r.status_code == 502 and r.error == "HTTP 502"
    server.statuses = [404]
    r = WebhookChannel(server.url, retries=3, backoff=0.01, egress=LOOPBACK).send(_note())
    assert not r.ok and r.attempts == 1 and r.status_code == 404  # client errors: no retry


def test_dead_endpoint_fails_after_retries_without_raising() -> None:
    channel = WebhookChannel(_dead_url(), timeout=1.0, retries=2, backoff=0.01,
                             egress=LOOPBACK)
    r = channel.send(_note())
    assert not r.ok and r.attempts == 3 and r.status_code is None
    assert r.error is not None and "ConnectError" in r.error
    assert r.elapsed_ms < 2_000


def test_hanging_endpoint_is_bounded_by_the_timeout(server: _Server) -> None:
    server.hang = 5.0
    channel = WebhookChannel(server.url, timeout=0.3, retries=1, backoff=0.01,
                             egress=LOOPBACK)
    start = time.perf_counter()
    r = channel.send(_note())
    elapsed = time.perf_counter() - start
    assert not r.ok and r.attempts == 2 and r.status_code is None
    assert r.error is not None and r.error.startswith("timeout after 0.3s")
    assert 0.6 <= elapsed < 2.0  # two attempts of ~0.3 s, far from the 5 s hang


def test_dispatcher_submit_returns_at_once_with_a_hanging_endpoint(server: _Server) -> None:
    server.hang = 5.0
    dispatcher = Dispatcher([WebhookChannel(server.url, timeout=0.2, retries=0,
                                           egress=LOOPBACK)],
                            max_queue=3, workers=1)
    times = []
    for i in range(10):
        start = time.perf_counter()
        dispatcher.submit(_note(alert_id=str(i)))
        times.append(time.perf_counter() - start)
    assert max(times) < 0.05  # behaviour, not a benchmark: a hung endpoint never blocks
    assert dispatcher.submitted + dispatcher.dropped == 10
    assert 3 <= dispatcher.submitted <= 4 and dispatcher.dropped >= 6
    assert dispatcher.flush(timeout=5.0)
    assert dispatcher.failed == dispatcher.submitted and dispatcher.delivered == 0
    assert all(r.error is not None and "timeout" in r.error for r in dispatcher.results())
    assert dispatcher.close()


class _GatedChannel:
    """Blocks in ``send`` until released, so queue states are deterministic."""

    name = "gated"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.seen: list[str] = []

    def send(self, notification: Notification) -> DeliveryResult:
        self.started.set()
        self.release.wait(5.0)
        self.seen.append(notification.alert_id)
        return DeliveryResult(self.name, True, 1, None, None, 0.0, notification.alert_id)


class _BrokenChannel:
    name = "broken"

    def send(self, notification: Notification) -> DeliveryResult:
        raise RuntimeError("boom")


def test_queue_overflow_drops_and_counts() -> None:
    gated = _GatedChannel()
    dispatcher = Dispatcher([gated, _BrokenChannel()], max_queue=2, workers=1)
    assert dispatcher.submit(_note(alert_id="0"))
    assert gated.started.wait(5.0)  # the worker holds "0"; the queue is empty again
    accepted = [dispatcher.submit(_note(alert_id=str(i))) for i in range(1, 6)]
    assert accepted == [True, True, False, False, False]
    assert dispatcher.dropped == 3 and dispatcher.submitted == 3 and dispatcher.pending == 3
    assert not dispatcher.flush(timeout=0.05)
    gated.release.set()
    assert dispatcher.flush(timeout=5.0) and dispatcher.pending == 0
    assert gated.seen == ["0", "1", "2"]
    assert dispatcher.delivered == 3 and dispatcher.failed == 3  # the broken channel's
    broken = [r for r in dispatcher.results() if r.channel == "broken"]
    assert len(broken) == 3 and all(r.error == "RuntimeError: boom" for r in broken)
    assert dispatcher.close()
    assert not dispatcher.submit(_note()) and dispatcher.dropped == 4


def test_dispatcher_delivers_to_every_channel(server: _Server,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mlops.alerts")
    dispatcher = Dispatcher([LogChannel(), channel_from_config({"type": "webhook",
                                                                "url": server.url},
                                                               egress=LOOPBACK)])
    dispatcher.submit(_note(severity="critical"))
    dispatcher.submit(_note("resolved", severity="critical"))
    dispatcher.submit(_note(severity="low"))
    assert dispatcher.flush(timeout=5.0)
    assert dispatcher.delivered == 6 and dispatcher.failed == 0 and dispatcher.dropped == 0
    assert len(server.bodies) == 3
    records = sorted((r.levelno, r.getMessage()) for r in caplog.records
                     if r.name == "mlops.alerts")
    assert [level for level, _ in records] == [logging.INFO, logging.INFO, logging.CRITICAL]
    assert any("[CRITICAL] firing accuracy-drop" in msg for _, msg in records)
    assert dispatcher.close()


def test_channel_from_config() -> None:
    log = channel_from_config({"type": "log"})
    assert isinstance(log, LogChannel) and log.name == "log"
    hook = channel_from_config({"type": "webhook", "url": "https://hooks.example/x",
                                "timeout": 1.5, "retries": 0, "headers": {"X-Key": "v"}})
    assert isinstance(hook, WebhookChannel) and not isinstance(hook, SlackChannel)
    assert (hook.timeout, hook.retries, hook.headers) == (1.5, 0, {"X-Key": "v"})
    slack = channel_from_config({"type": "slack", "webhook_url": "https://hooks.slack.com/T/B/s",
                                 "name": "oncall"})
    assert isinstance(slack, SlackChannel) and slack.name == "oncall"
    bad: list[tuple[Any, str, str | None]] = [
        ({"type": "email"}, "type 'email'", "type"),
        ({"url": "https://x"}, "type None", "type"),
        ({"type": "webhook"}, "needs a url", "url"),
        ({"type": "webhook", "url": "ftp://x"}, "not an http", "url"),
        ({"type": "webhook", "url": "https://x", "retires": 3}, "unknown key", "retires"),
        ({"type": "webhook", "url": "https://x", "timeout": 0}, "timeout=0", "timeout"),
        ({"type": "webhook", "url": "https://x", "retries": -1}, "retries=-1", "retries"),
        ({"type": "webhook", "url": "https://x", "retries": 1.5}, "whole number", "retries"),
        ({"type": "webhook", "url": "https://x", "headers": {"a": 1}}, "headers", "headers"),
        ({"type": "slack", "url": "https://x", "webhook_url": "https://y"}, "both",
         "webhook_url"),
        ({"type": "log", "logger": ""}, "logger", "logger"),
        ("webhook", "mapping", None),
    ]
    for spec, words, key in bad:
        with pytest.raises(MonitoringError, match=words) as err:
            channel_from_config(spec)
        assert err.value.fix
        assert err.value.context.get("key") == key
    with pytest.raises(MonitoringError, match="not a notification channel"):
        Dispatcher([object()])  # type: ignore[list-item]
