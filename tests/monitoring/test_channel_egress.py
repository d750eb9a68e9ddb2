"""Alert channels under the egress policy: internal URLs refused when a rule is loaded or
stored and again at delivery (DNS rebinding), allow-listed loopback delivered for real
(plain HTTP and TLS with the certificate checked against the host name)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mlops.errors import MonitoringError
from mlops.monitoring.alerts import AlertManager, Observation
from mlops.monitoring.channels import (
    Dispatcher,
    Notification,
    SlackChannel,
    UnavailableChannel,
    WebhookChannel,
    channel_from_config,
)
from mlops.monitoring.rules import load_rules
from mlops.registry.service import ModelRegistry
from mlops.store.egress import EgressPolicy

NOBODY = EgressPolicy()  # the default: nothing internal is allowed
LOOPBACK = EgressPolicy.from_allow(["127.0.0.0/8", "::1/128"])
T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)

#: (url, the address the refusal must name)
SSRF_URLS = [
    ("http://127.0.0.1:5432/", "127.0.0.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://10.0.0.5/", "10.0.0.5"),
    ("http://100.64.0.1/", "100.64.0.1"),
    ("http://[::1]/", "::1"),
    ("http://[fe80::1]/", "fe80::1"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
    ("http://2130706433/", "127.0.0.1"),
    ("http://0x7f.1/", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1"),
    ("http://localhost./hook", "127.0.0.1"),
    ("http://localhost:8000/hook", "127.0.0.1"),
    ("http://0.0.0.0/", "0.0.0.0"),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        self.statuses: list[int] = []
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment]
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that rejects the certificate is expected: keep the output quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append(json.loads(body))
        self.server.hosts.append(self.headers.get("Host", ""))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        if status in (301, 302, 307, 308):
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output free of the server's access log."""


@contextlib.contextmanager
def _serving(tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    srv = _Server(tls)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    with _serving() as srv:
        yield srv


@dataclass(frozen=True)
class _Pki:
    ca_pem: bytes
    key_pem: bytes

    def leaf(self, tmp: Path, name: str) -> ssl.SSLContext:
        """A server context whose certificate (signed by the CA) names only ``name``."""
        ca_key = serialization.load_pem_private_key(self.key_pem, None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = x509.load_pem_x509_certificate(self.ca_pem)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_file, key_file = tmp / f"{name}.crt", tmp / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))


@pytest.fixture(scope="module")
def pki() -> _Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(key, hashes.SHA256()))
    return _Pki(ca.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _note(state: str = "firing") -> Notification:
    return Notification(alert_id="7", rule="error-rate", model="churn", version="1.0.0",
                        environment="production", severity="critical", state=state,
                        metric="error_rate", value=0.1, threshold=0.05, message="too many",
                        fired_at=T0)


def _rule_spec(url: str, kind: str = "webhook") -> dict[str, Any]:
    key = "webhook_url" if kind == "slack" else "url"
    return {"name": "error-rate", "metric": "error_rate", "comparator": ">", "threshold": 0.05,
            "min_samples": 10, "channels": [{"type": kind, key: url}]}


# ------------------------------------------------------------------ refused when configured
@pytest.mark.parametrize(("url", "address"), SSRF_URLS)
def test_load_rules_refuses_internal_channel_urls(url: str, address: str) -> None:
    for kind in ("webhook", "slack"):
        with pytest.raises(MonitoringError) as err:
            load_rules([_rule_spec(url, kind)])  # the default policy: the settings
        text = str(err.value)
        assert "'error-rate'" in text and address in text and "refused" in text
        assert err.value.fix is not None and "MLOPS_EGRESS_ALLOW='[" in err.value.fix
        key = "webhook_url" if kind == "slack" else "url"
        assert err.value.context["key"] == f"channels.0.{key}"
        assert "meta-data" not in text  # paths are secrets (Slack): never in errors


def test_load_rules_names_the_line_of_a_refused_channel(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n"
                    "  - name: errors\n"
                    "    metric: error_rate\n"
                    "    comparator: '>'\n"
                    "    threshold: 0.05\n"
                    "    channels:\n"
                    "      - type: log\n"
                    "      - type: webhook\n"
                    "        url: http://169.254.169.254/latest/meta-data/\n")
    with pytest.raises(MonitoringError) as err:
        load_rules(path, egress=NOBODY)
    assert "line 9" in str(err.value) and "channels.1.url" in str(err.value)
    assert "169.254.169.254" in str(err.value)
    (rule,) = load_rules(path, egress=EgressPolicy.from_allow(["169.254.169.254/32"]))
    assert rule.channels[1]["url"].startswith("http://169.254.169.254/")


@pytest.mark.parametrize(("url", "address"), SSRF_URLS)
def test_put_rule_refuses_internal_channel_urls(registry: ModelRegistry, url: str,
                                                address: str) -> None:
    manager = AlertManager(registry, default_channels=[])  # policy from registry settings
    (rule,) = load_rules([_rule_spec("https://hooks.invalid/x")])
    bad = rule.model_copy(update={"channels": [{"type": "webhook", "url": url}]})
    with pytest.raises(MonitoringError, match="refused") as err:
        manager.put_rule(bad)
    assert err.value.context["address"] == address
    stored = [r for r in manager.rules() if r.name == "error-rate" and r.channels]
    assert stored == []  # nothing was written


def test_settings_allow_list_lets_put_rule_store_loopback(registry: ModelRegistry) -> None:
    allowed = ModelRegistry(registry.settings.model_copy(
        update={"egress_allow": ["127.0.0.1/32"]}))
    (rule,) = load_rules([_rule_spec("https://hooks.invalid/x")])
    loopback = rule.model_copy(update={"channels": [{"type": "webhook",
                                                     "url": "http://127.0.0.1:9/hook"}]})
    AlertManager(allowed, default_channels=[]).put_rule(loopback)
    stored = {r.name: r for r in AlertManager(allowed).rules()}
    assert stored["error-rate"].channels == [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]


def test_channels_default_to_the_egress_allow_setting(server: _Server,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{server.port}/hook"
    with pytest.raises(MonitoringError, match="refused"):
        WebhookChannel(url)
    with pytest.raises(MonitoringError, match="refused"):
        channel_from_config({"type": "slack", "url": url})
    monkeypatch.setenv("MLOPS_EGRESS_ALLOW", '["127.0.0.1/32"]')
    channel = WebhookChannel(url)
    assert channel.send(_note()).ok and len(server.bodies) == 1
    channel.close()


# ------------------------------------------------------------------ delivered when allowed
def test_allow_listed_loopback_is_delivered_for_real(server: _Server) -> None:
    channel = channel_from_config({"type": "webhook",
                                   "url": f"http://127.0.0.1:{server.port}/hook"},
                                  egress=EgressPolicy.from_allow(["127.0.0.1/32"]))
    result = channel.send(_note())
    assert result.ok and result.status_code == 200 and result.attempts == 1
    assert server.bodies == [_note().to_dict()]
    assert server.hosts == [f"127.0.0.1:{server.port}"]


def test_host_name_with_an_allow_listed_cidr_is_delivered_with_its_host_header(
        server: _Server) -> None:
    """``localhost`` resolves (/etc/hosts) to loopback addresses only; the CIDRs cover
    them. If ``::1`` comes first, nothing listens there and the next address is used."""
    channel = SlackChannel(f"http://localhost:{server.port}/services/T/B/secret",
                           egress=LOOPBACK)
    result = channel.send(_note())
    assert result.ok and result.attempts == 1 and result.channel == "slack:localhost"
    assert server.hosts == [f"localhost:{server.port}"]
    assert server.bodies[0]["text"].startswith("[CRITICAL] FIRING: error-rate")
    channel.close()


def test_tls_to_the_pinned_address_checks_the_certificate_against_the_host_name(
        pki: _Pki, tmp_path: Path) -> None:
    """The request goes to 127.0.0.1 but TLS still sends SNI ``localhost`` and verifies the
    certificate for ``localhost``; a certificate for another name is refused."""
    with _serving(pki.leaf(tmp_path, "localhost")) as srv:
        channel = WebhookChannel(f"https://localhost:{srv.port}/hook", egress=LOOPBACK,
                                 verify=pki.client(), retries=0)
        result = channel.send(_note())
        assert result.ok and result.status_code == 200, result.error
        assert srv.sni[-1] == "localhost" and srv.hosts == [f"localhost:{srv.port}"]
        channel.close()
    with _serving(pki.leaf(tmp_path, "other.example")) as srv:
        channel = WebhookChannel(f"https://localhost:{srv.port}/hook", egress=LOOPBACK,
                                 verify=pki.client(), retries=0)
        result = channel.send(_note())
        assert not result.ok and srv.bodies == []
        assert result.error is not None and "CERTIFICATE_VERIFY_FAILED" in result.error
        channel.close()


def test_redirects_are_not_followed(server: _Server) -> None:
    server.statuses = [302]
    channel = WebhookChannel(f"http://127.0.0.1:{server.port}/hook", egress=LOOPBACK)
    result = channel.send(_note())
    assert not result.ok and result.status_code == 302 and len(server.bodies) == 1
    channel.close()


# ------------------------------------------------------------------ refused at delivery
def test_dns_rebinding_is_refused_at_delivery_and_the_checked_address_is_used(
        server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """There is no DNS server to rebind here, so ``socket.getaddrinfo`` is replaced for two
    made-up names (every other name, and the addresses httpx connects to, still go to the
    real resolver). ``rebind.test`` answers a public address first (the check when the
    channel is built) and 127.0.0.1 afterwards (delivery); ``pinned.test`` answers
    127.0.0.1 (allow-listed) and would answer 10.255.255.1 if anything asked a third time."""
    real = socket.getaddrinfo
    script = {"rebind.test": ["93.184.215.14", "127.0.0.1"],
              "pinned.test": ["127.0.0.1", "127.0.0.1", "10.255.255.1"]}
    asked: dict[str, int] = {name: 0 for name in script}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in script:
            return real(host, port, *args, **kwargs)
        answers = script[host]
        address = answers[min(asked[host], len(answers) - 1)]
        asked[host] += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    channel = WebhookChannel(f"http://rebind.test:{server.port}/hook", egress=NOBODY,
                             retries=2, backoff=0.01)  # built: the name looked public
    result = channel.send(_note())
    assert not result.ok and result.status_code is None and result.attempts == 1
    assert result.error is not None and "refused by the egress policy" in result.error
    assert "127.0.0.1" in result.error and "MLOPS_EGRESS_ALLOW" in result.error
    assert server.bodies == [] and asked["rebind.test"] == 2
    dispatcher = Dispatcher([channel], workers=1)  # the dispatcher reports, never raises
    assert dispatcher.submit(_note()) and dispatcher.flush(5.0)
    assert dispatcher.failed == 1 and "refused" in (dispatcher.results()[0].error or "")
    assert dispatcher.close()

    pinned = WebhookChannel(f"http://pinned.test:{server.port}/hook",
                            egress=EgressPolicy.from_allow(["127.0.0.1/32"]), timeout=1.0)
    result = pinned.send(_note())
    assert result.ok and asked["pinned.test"] == 2  # built + one delivery: no 2nd lookup
    assert server.hosts == [f"pinned.test:{server.port}"]
    pinned.close()


def test_unresolvable_host_at_delivery_is_a_retried_failure() -> None:
    channel = WebhookChannel("https://hooks.invalid/x", egress=NOBODY, retries=1,
                             backoff=0.01)
    result = channel.send(_note())
    assert not result.ok and result.attempts == 2 and result.status_code is None
    assert result.error is not None and "cannot resolve hooks.invalid" in result.error


def test_rule_stored_before_the_policy_tightened_fails_delivery_without_breaking_evaluation(
        registry: ModelRegistry, skops_file: Path, server: _Server,
        caplog: pytest.LogCaptureFixture) -> None:
    registry.register("churn", skops_file)
    url = f"http://127.0.0.1:{server.port}/hook"
    (rule,) = load_rules([_rule_spec(url)], egress=LOOPBACK)
    AlertManager(registry, default_channels=[], egress=LOOPBACK).put_rule(rule)
    strict = AlertManager(registry, default_channels=[], egress=NOBODY)
    caplog.set_level(logging.WARNING, logger="mlops.monitoring.alerts")
    out = strict.evaluate("churn", "1.0.0", "production",
                          lambda r: Observation(0.5, 100) if r.name == "error-rate" else None,
                          now=T0)
    assert [t.change for t in out] == ["fired"]
    strict.flush(5.0)
    assert server.bodies == []
    assert any("unavailable" in r.getMessage() and "127.0.0.1" in r.getMessage()
               for r in caplog.records)
    strict.close()


def test_unavailable_channel_reports_every_delivery_as_failed() -> None:
    channel = UnavailableChannel("webhook:x", "channel unavailable: refused")
    result = channel.send(_note())
    assert not result.ok and result.error == "channel unavailable: refused"
    assert result.alert_id == "7" and result.channel == "webhook:x"

