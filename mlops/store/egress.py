"""Egress policy: which hosts outbound requests (alert webhooks, Slack) may reach.

A URL is refused when its host is, or resolves (``socket.getaddrinfo``, every address) to,
a loopback, link-local (169.254/16 with the cloud metadata address, fe80::/10), private
(RFC 1918, fc00::/7), shared (100.64/10, CGNAT), unspecified, multicast, reserved or other
non-global address, unless the host name or the address is on the allow list (the
``egress_allow`` setting: host names, ``*.suffix`` wildcards or CIDRs). IPv4 embedded in
IPv6 (``::ffff:127.0.0.1``, 6to4, NAT64) counts as the IPv4 address; ``2130706433``,
``0x7f.1`` and ``0177.0.0.1`` are read the way ``inet_aton`` reads them; a trailing dot
is ignored; ``localhost`` names count as loopback even when they do not resolve.

Two checks:

- :meth:`EgressPolicy.check_url` when a URL is configured. A name that cannot be resolved
  *now* is accepted (DNS may not be reachable where rules are written); the delivery check
  decides.
- :meth:`EgressPolicy.resolve_url` before every request: resolves once, checks every
  address and returns an :class:`EgressTarget`. Connect to one of its checked addresses
  with :meth:`EgressTarget.pinned` (URL with the address, original ``Host`` header, TLS
  SNI and certificate check against the host name), never by resolving the name again:
  that is what defeats DNS rebinding. Send pinned requests with redirects off.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from mlops.config import Settings, get_settings
from mlops.errors import ConfigError, MlopsError, MonitoringError

__all__ = [
    "EgressPolicy",
    "EgressTarget",
    "IPAddress",
    "IPNetwork",
    "PinnedRequest",
    "blocked_reason",
    "parse_ip_host",
    "redact_secrets",
    "redact_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = {"http": 80, "https": 443}
_V4_PART = re.compile(r"^(?:0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")
_NAME = re.compile(r"^(?:\*\.)?[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
                   r"(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$")
_LOCALHOST_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                              "ip6-loopback"})
_LOOPBACK: tuple[IPAddress, ...] = (ipaddress.IPv4Address("127.0.0.1"),
                                     ipaddress.IPv6Address("::1"))
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = frozenset({ipaddress.IPv4Address("169.254.169.254"),
                       ipaddress.IPv6Address("fd00:ec2::254")})


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL host spells, ``inet_aton`` style (``0x7f.1``, ``2130706433``,
    ``0177.0.0.1``, ``[::1]``, trailing dot), or ``None`` for a name."""
    text = unquote(host.strip()).removeprefix("[").removesuffix("]")
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    parts = text.removesuffix(".").split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.match(p) for p in parts):
        return None
    values = [int(p[2:] or "0", 16) if p[:2].lower() == "0x" else int(p, 8)
              if p.startswith("0") else int(p) for p in parts]
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, value in enumerate(head):
        number |= value << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination (``"loopback"``, ...), or ``None``."""
    inner = _embedded_v4(address)
    if inner is not None:
        reason = blocked_reason(inner)
        if reason is not None:
            return f"{reason}, embedded in IPv6"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return None  # a socket to ::ffff:a.b.c.d reaches a.b.c.d
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address in _METADATA:
        return "link-local, cloud metadata"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared, CGNAT"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "special-purpose"
    return None


def _is_localhost(name: str) -> bool:
    return name in _LOCALHOST_NAMES or name.endswith(".localhost")


def _resolve(name: str, port: int) -> tuple[IPAddress, ...]:
    """Every address ``name`` resolves to, in resolver order; raises ``OSError``."""
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in found:
            found.append(address)
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{name} has no IP address")
    return tuple(found)


@dataclass(frozen=True)
class PinnedRequest:
    """What to pass to httpx to reach one checked address: ``client.post(p.url,
    headers=p.headers, extensions=p.extensions, ...)``."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


@dataclass(frozen=True)
class EgressTarget:
    """A URL whose host resolved to ``addresses``, all of them allowed."""

    url: httpx.URL
    host: str  # IDNA name without trailing dot, or the canonical address
    port: int
    addresses: tuple[IPAddress, ...]
    literal: bool  # the URL names an address, not a host name

    def pinned(self, address: IPAddress) -> PinnedRequest:
        """The request for ``address``, one of :attr:`addresses`: keeps the ``Host``
        header and, for https, the SNI name the certificate is checked against."""
        if address not in self.addresses:
            raise ValueError(f"{address} is not a checked address of {self.host}")
        url = self.url.copy_with(host=str(address))
        if self.literal:
            return PinnedRequest(url, {}, {})
        extensions: dict[str, Any] = {"sni_hostname": self.host} \
            if self.url.scheme == "https" else {}
        return PinnedRequest(url, {"Host": self.url.netloc.decode("ascii")}, extensions)


@dataclass(frozen=True)
class EgressPolicy:
    """Allow list of host names (``hooks.internal``, ``*.corp``) and networks."""

    hosts: frozenset[str] = field(default_factory=frozenset)
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_allow(cls, entries: Iterable[str]) -> EgressPolicy:
        """From ``egress_allow`` entries; a malformed entry is a :class:`ConfigError`."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = str(entry).strip().lower()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            name = text.removesuffix(".")
            if not _NAME.match(name) or parse_ip_host(name) is not None:
                raise ConfigError(
                    f"egress_allow entry {entry!r} is neither a host name nor a CIDR.",
                    fix='list host names or CIDRs, e.g. MLOPS_EGRESS_ALLOW='
                        '\'["hooks.internal", "10.0.0.0/8"]\'.', setting="egress_allow")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EgressPolicy:
        """The policy of ``settings`` (default: :func:`mlops.config.get_settings`)."""
        return cls.from_allow((settings or get_settings()).egress_allow)

    def allows_host(self, name: str) -> bool:
        """Whether the host name (not an address) is allow-listed."""
        name = name.lower().removesuffix(".")
        return name in self.hosts or any(
            h.startswith("*.") and name.endswith(h[1:]) for h in self.hosts)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be reached, or ``None`` when it is public or listed."""
        reason = blocked_reason(address)
        if reason is None:
            return None
        inner = _embedded_v4(address)
        candidates = [address] if inner is None else [address, inner]
        if any(c in net for c in candidates for net in self.networks):
            return None
        return reason

    def check_url(self, url: str, *, key: str = "url",
                  error: type[MlopsError] = MonitoringError) -> None:
        """Validation: refuse ``url`` (raise ``error``) when its host is not allowed; a
        name that does not resolve now is accepted (the delivery check decides)."""
        for host, port in _hosts(url, key, error):
            self._check(url, host, port, key, error, strict=False)

    def resolve_url(self, url: str, *, key: str = "url",
                    error: type[MlopsError] = MonitoringError) -> EgressTarget:
        """Delivery: resolve once, check every address, return them for pinning.

        Raises ``error`` when refused and ``OSError`` (``socket.gaierror``) when the name
        does not resolve.
        """
        parsed = _httpx_url(url, key, error)
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or _SCHEMES[parsed.scheme]
        addresses = self._check(url, host, port, key, error, strict=True)
        literal = parse_ip_host(host)
        return EgressTarget(parsed, host.removesuffix(".") if literal is None else str(literal),
                            port, addresses, literal is not None)

    def _check(self, url: str, host: str, port: int, key: str, error: type[MlopsError],
               *, strict: bool) -> tuple[IPAddress, ...]:
        literal = parse_ip_host(host)
        name = host.lower().removesuffix(".")
        if literal is not None:
            addresses: tuple[IPAddress, ...] = (literal,)
        elif self.allows_host(name):  # a listed name is trusted wherever it points
            return _resolve(name, port) if strict else ()
        else:
            try:
                addresses = _resolve(name, port)
            except (OSError, UnicodeError):
                if not _is_localhost(name):  # validation cannot tell: delivery decides
                    if strict:
                        raise
                    return ()
                addresses = _LOOPBACK  # RFC 6761: localhost names are loopback
        for address in addresses:
            reason = self.refusal(address)
            if reason is None:
                continue
            shown = _show(address)
            cidr = str(ipaddress.ip_network(_embedded_v4(address)
                                            or str(address).partition("%")[0]))
            if literal is None:
                what = f"host {host!r} resolves to {shown} ({reason})"
            elif host.strip("[]") == shown:
                what = f"{shown} is not a public address ({reason})"
            else:
                what = f"host {host!r} is the address {shown} ({reason})"
            raise error(
                f"Outbound requests to {_origin(url)} are refused: {what}.",
                fix="use a public endpoint, or allow this destination with the egress_allow "
                    f"setting: MLOPS_EGRESS_ALLOW='[\"{cidr}\"]' (host names or CIDRs; "
                    f"egress_allow = [\"{cidr}\"] in mlops.toml).",
                key=key, address=shown)
        return addresses


def _show(address: IPAddress) -> str:
    """``::ffff:127.0.0.1`` rather than Python's ``::ffff:7f00:1``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def redact_url(url: str) -> str:
    """``url`` as it may be shown to anyone: its origin, and ``/...`` for the path and query
    (a Slack or Teams webhook's path is its secret, a query holds tokens), never its
    credentials."""
    origin = _origin(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return origin
    return origin + ("/..." if parts.path.strip("/") or parts.query else "")


#: Keys whose string values are URLs (so are those of keys ending in ``_url``).
_URL_KEYS = frozenset({"url", "webhook"})
#: Keys whose values are secrets wherever they sit in a channel or webhook spec (compared
#: lower-cased; so are those naming one of :data:`_SECRET_PARTS`): ``headers`` and a
#: webhook's free-form ``body`` are hidden value by value.
_SECRET_KEYS = frozenset({"headers", "body", "routing_key"})
#: Parts of a key that make its value a secret (``access_token``, ``clientSecret``,
#: ``X-Api-Key``, ``Authorization``), compared lower-cased.
_SECRET_PARTS = ("token", "secret", "password", "passwd", "api_key", "apikey", "api-key",
                 "authorization", "credential", "private_key")


def _secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    lower = key.lower()
    return lower in _SECRET_KEYS or any(part in lower for part in _SECRET_PARTS)


def redact_secrets(value: Any) -> Any:
    """A copy of an alert rule's or retraining webhook's spec (or a job's outcome) with its
    secrets hidden: every ``url``, ``*_url`` (Slack's ``webhook_url``) or ``webhook`` string
    cut by :func:`redact_url`; as ``***`` every value under ``headers``, a webhook's
    ``body``, ``routing_key``, and any key naming a token, secret, password, API key or
    credential in any case (``access_token``, ``clientSecret``, ``Authorization``). What
    the API shows below admin, what pages show, and what the audit log records."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and isinstance(item, str) \
                    and (key in _URL_KEYS or key.endswith("_url")):
                out[key] = redact_url(item)
            elif _secret_key(key) and item:
                out[key] = {k: "***" for k in item} if isinstance(item, dict) else "***"
            else:
                out[key] = redact_secrets(item)
        return out
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    return value


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: never its path or credentials (secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme}://{'[' + host + ']' if ':' in host else host}{port}"


def _not_http(url: str, key: str, error: type[MlopsError]) -> MlopsError:
    return error(f"{key}={_origin(url)} is not a valid http(s) URL.",
                 fix=f"set {key} to the endpoint, e.g. https://hooks.example/mlops.", key=key)


def _httpx_url(url: str, key: str, error: type[MlopsError]) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _not_http(url, key, error) from None
    if parsed.scheme not in _SCHEMES or not parsed.raw_host:
        raise _not_http(url, key, error)
    return parsed


def _hosts(url: str, key: str, error: type[MlopsError]) -> Iterator[tuple[str, int]]:
    """The host as urllib reads it and as httpx reads it: both must pass, so a parser
    difference cannot smuggle a second destination past the check."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except (ValueError, TypeError, AttributeError):
        raise _not_http(str(url), key, error) from None
    if parts.scheme not in _SCHEMES or not host:
        raise _not_http(url, key, error)
    seen = {(host, port or _SCHEMES[parts.scheme])}
    yield host, port or _SCHEMES[parts.scheme]
    try:  # after the check above, so a refused literal httpx cannot parse names its address
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise _not_http(url, key, error) from None
    other = (parsed.raw_host.decode("ascii"), parsed.port or _SCHEMES[parsed.scheme])
    if other not in seen and parsed.raw_host:
        yield other
