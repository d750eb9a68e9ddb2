"""Egress policy: address spellings, internal ranges, allow lists, validation vs delivery."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from mlops.config import Settings
from mlops.errors import ConfigError, MonitoringError, StoreError
from mlops.store.egress import EgressPolicy, blocked_reason, parse_ip_host

#: every spelling of an internal destination the policy must refuse, with the address it means
SSRF_TARGETS = [
    ("http://127.0.0.1:5432/", "127.0.0.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://10.0.0.5/", "10.0.0.5"),
    ("http://172.16.3.4/", "172.16.3.4"),
    ("http://192.168.1.1/", "192.168.1.1"),
    ("http://100.64.0.1/", "100.64.0.1"),
    ("http://0.0.0.0:8000/", "0.0.0.0"),
    ("http://224.0.0.1/", "224.0.0.1"),
    ("http://240.0.0.1/", "240.0.0.1"),
    ("http://[::1]:8000/", "::1"),
    ("http://[::]/", "::"),
    ("http://[fe80::1]/", "fe80::1"),
    ("http://[fc00::5]/", "fc00::5"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
    ("http://[2002:a00:1::]/", "2002:a00:1::"),
    ("http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1"),
    ("http://2130706433/", "127.0.0.1"),
    ("http://0x7f.1/", "127.0.0.1"),
    ("http://0x7f000001/", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1"),
    ("http://127.1/", "127.0.0.1"),
    ("http://127.0.0.1./", "127.0.0.1"),
    ("http://localhost/", "127.0.0.1"),
    ("http://LOCALHOST./", "127.0.0.1"),
    ("https://api.localhost/", "127.0.0.1"),
    ("http://evil.example\\@127.0.0.1/", "127.0.0.1"),
]


@pytest.mark.parametrize(("host", "address"), [
    ("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("0x7F000001", "127.0.0.1"), ("10.1", "10.0.0.1"),
    ("1.2.3.4.", "1.2.3.4"), ("[::ffff:127.0.0.1]", "::ffff:7f00:1"), ("0", "0.0.0.0"),
    ("fe80::1%25eth0", "fe80::1%eth0"),
])
def test_address_spellings_are_read_like_inet_aton(host: str, address: str) -> None:
    assert parse_ip_host(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "256.1.1.1", "1.2.3.4.5", "08.1.1.1",
                                  "1..1", "0x1g", "127.0.0.1.evil.com", "hooks.internal"])
def test_names_and_out_of_range_numbers_are_not_addresses(host: str) -> None:
    assert parse_ip_host(host) is None


def test_internal_ranges_are_blocked_and_public_addresses_are_not() -> None:
    reasons = {a: blocked_reason(ipaddress.ip_address(a)) for a in (
        "127.0.0.1", "169.254.169.254", "169.254.1.1", "10.0.0.5", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "8.8.8.8",
        "2606:4700:4700::1111", "::ffff:8.8.8.8")}
    assert reasons == {
        "127.0.0.1": "loopback", "169.254.169.254": "link-local, cloud metadata",
        "169.254.1.1": "link-local", "10.0.0.5": "private", "100.64.0.1": "shared, CGNAT",
        "0.0.0.0": "unspecified", "224.0.0.1": "multicast", "::1": "loopback",
        "fe80::1": "link-local", "fc00::1": "private",
        "::ffff:10.0.0.1": "private, embedded in IPv6",
        "8.8.8.8": None, "2606:4700:4700::1111": None, "::ffff:8.8.8.8": None}


@pytest.mark.parametrize(("url", "address"), SSRF_TARGETS)
def test_every_internal_destination_is_refused_with_the_address_and_the_fix(
        url: str, address: str) -> None:
    with pytest.raises(MonitoringError) as err:
        EgressPolicy().check_url(url)
    assert address in err.value.message and err.value.context["address"] == address
    assert err.value.fix is not None and "MLOPS_EGRESS_ALLOW='[" in err.value.fix
    assert "meta-data" not in str(err.value)  # the path (a Slack secret) is never shown


@pytest.mark.parametrize(("url", "address"), SSRF_TARGETS)
def test_the_delivery_check_refuses_them_too(url: str, address: str) -> None:
    if "0177" in url:  # httpx cannot even send it: refused as an invalid URL
        with pytest.raises(MonitoringError, match="not a valid http"):
            EgressPolicy().resolve_url(url)
        return
    with pytest.raises(MonitoringError, match="refused") as err:
        EgressPolicy().resolve_url(url)
    assert err.value.context["address"] == address


def test_the_suggested_entry_allows_exactly_that_destination() -> None:
    with pytest.raises(MonitoringError) as err:
        EgressPolicy().check_url("http://[::ffff:10.1.2.3]:9000/hook")
    assert err.value.fix is not None and '["10.1.2.3/32"]' in err.value.fix
    allowed = EgressPolicy.from_allow(["10.1.2.3/32"])
    allowed.check_url("http://[::ffff:10.1.2.3]:9000/hook")
    allowed.check_url("http://10.1.2.3/")
    with pytest.raises(MonitoringError, match=r"10\.1\.2\.4"):
        allowed.check_url("http://10.1.2.4/")


def test_allow_list_of_names_wildcards_and_networks() -> None:
    policy = EgressPolicy.from_allow(["127.0.0.0/8", "Hooks.Internal.", "*.corp.example",
                                      "fd00::/8", "10.0.0.5"])
    assert policy.hosts == frozenset({"hooks.internal", "*.corp.example"})
    assert [str(n) for n in policy.networks] == ["127.0.0.0/8", "fd00::/8", "10.0.0.5/32"]
    assert policy.allows_host("HOOKS.internal.") and policy.allows_host("a.b.corp.example")
    assert not policy.allows_host("corp.example") and not policy.allows_host("internal")
    for url in ("http://127.0.0.1:5432/", "http://0x7f.1/", "http://[::ffff:127.0.0.9]/",
                "http://[fd12::1]/", "http://10.0.0.5/", "http://localhost/"):
        policy.check_url(url)
    for url in ("http://10.0.0.6/", "http://169.254.169.254/", "http://[::1]/"):
        with pytest.raises(MonitoringError, match="refused"):
            policy.check_url(url)


def test_allow_listed_name_is_trusted_wherever_it_points() -> None:
    policy = EgressPolicy.from_allow(["localhost"])
    target = policy.resolve_url("http://localhost:9/hook")
    assert target.addresses and all(a.is_loopback for a in target.addresses)


@pytest.mark.parametrize("entry", ["http://hooks.example", "1.2.3.4/33", "a b", "0x7f.1",
                                   "", "*"])
def test_malformed_allow_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError) as err:
        EgressPolicy.from_allow([entry])
    assert err.value.fix is not None and "MLOPS_EGRESS_ALLOW" in err.value.fix


def test_policy_comes_from_the_egress_allow_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = EgressPolicy.from_settings(Settings(egress_allow=["10.0.0.0/8", "hooks.internal"]))
    assert policy == EgressPolicy(frozenset({"hooks.internal"}),
                                  (ipaddress.ip_network("10.0.0.0/8"),))
    assert EgressPolicy.from_settings() == EgressPolicy()  # nothing listed by default
    monkeypatch.setenv("MLOPS_EGRESS_ALLOW", '["127.0.0.1/32"]')
    EgressPolicy.from_settings().check_url("http://127.0.0.1:8000/")


def test_only_http_and_https_urls() -> None:
    for url in ("ftp://example.com/x", "file:///etc/passwd", "gopher://127.0.0.1:70/",
                "https://", "not a url", "http://[::1/"):
        with pytest.raises(MonitoringError, match="not a valid http") as err:
            EgressPolicy().check_url(url)
        assert err.value.context["key"] == "url"


def test_unresolvable_name_passes_validation_but_not_delivery() -> None:
    """``.invalid`` never resolves (RFC 6761): accepted now, the delivery check decides."""
    EgressPolicy().check_url("https://hooks.invalid/x")
    with pytest.raises(OSError):
        EgressPolicy().resolve_url("https://hooks.invalid/x")


def test_errors_can_be_raised_as_another_mlops_error() -> None:
    with pytest.raises(StoreError):
        EgressPolicy().check_url("http://10.0.0.1/", error=StoreError, key="endpoint")


def test_pinned_request_connects_to_the_address_and_keeps_the_host_name() -> None:
    policy = EgressPolicy.from_allow(["127.0.0.0/8", "::1/128"])
    target = policy.resolve_url("https://localhost:8443/hook?x=1")
    assert target.host == "localhost" and target.port == 8443 and not target.literal
    address = target.addresses[0]
    pinned = target.pinned(address)
    assert pinned.url.host == str(address) and pinned.url.port == 8443
    assert pinned.url.path == "/hook" and pinned.url.query == b"x=1"
    assert pinned.headers == {"Host": "localhost:8443"}
    assert pinned.extensions == {"sni_hostname": "localhost"}
    plain = policy.resolve_url("http://localhost./hook").pinned(address)
    assert plain.headers == {"Host": "localhost."} and plain.extensions == {}
    literal = policy.resolve_url("https://0x7f.1:8443/hook")
    assert literal.literal and literal.addresses == (ipaddress.IPv4Address("127.0.0.1"),)
    assert literal.pinned(literal.addresses[0]).extensions == {}  # an address: no SNI
    assert str(literal.pinned(literal.addresses[0]).url) == "https://127.0.0.1:8443/hook"
    with pytest.raises(ValueError, match="not a checked address"):
        target.pinned(ipaddress.ip_address("10.0.0.1"))


def test_resolution_uses_getaddrinfo_for_every_address() -> None:
    """The resolver answers what ``socket.getaddrinfo`` answers (here: /etc/hosts)."""
    expected = {ipaddress.ip_address(info[4][0]) for info in
                socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}
    target = EgressPolicy.from_allow(["localhost"]).resolve_url("http://localhost/")
    assert set(target.addresses) == expected


def test_redaction_hides_every_secret_a_channel_or_webhook_may_carry() -> None:
    """The red team's: a webhook's free-form ``body`` (``access_token``, ``client_secret``)
    and keys differing only in case (``Token``) were shown whole to viewers."""
    from mlops.store.egress import redact_secrets

    spec = {"webhook": {"url": "https://ci.example.com/hook?key=Q",
                        "headers": {"Authorization": "Bearer H"},
                        "body": {"access_token": "A", "variables": {"API_TOKEN": "V"},
                                 "branch": "main"}},
            "channels": [{"type": "slack", "webhook_url": "https://hooks.slack.com/T/B/S"}],
            "Token": "T", "clientSecret": "C", "X-Api-Key": "K", "password": "",
            "name": "nightly", "threshold": 0.5}
    shown = redact_secrets(spec)
    assert shown["webhook"] == {"url": "https://ci.example.com/...",
                                "headers": {"Authorization": "***"},
                                "body": {"access_token": "***", "variables": "***",
                                         "branch": "***"}}
    assert shown["channels"] == [{"type": "slack", "webhook_url": "https://hooks.slack.com/..."}]
    assert (shown["Token"], shown["clientSecret"], shown["X-Api-Key"]) == ("***",) * 3
    assert shown["password"] == "" and shown["name"] == "nightly"  # nothing to hide
    assert shown["threshold"] == 0.5
    assert spec["webhook"]["body"]["access_token"] == "A"  # a copy: the spec is unchanged
