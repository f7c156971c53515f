"""Outgoing HTTP to addresses a tenant typed in: an attack surface, guarded.

A rule's webhook URL must not reach this machine, the private network or a
cloud metadata service (SSRF). So the host is resolved first, every address
it resolves to is checked, and the connection is made to the checked address
itself (the Host header and TLS name stay the URL's), so a second DNS answer
cannot swap in another (rebinding). Redirects are never followed: a 3xx is a
failed delivery. Timeouts are short and the answer is read up to a cap.

Only addresses that are globally routable pass, unless the operator's
allow-list (`RULES_EGRESS_ALLOW`: host names, addresses or networks) names
the host or holds the address.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
# Not globally routable is refused anyway; these are named so the refusal can say why.
METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")}


class Refused(ValueError):
    """A URL the guard will not call, and why."""


@dataclass
class Result:
    """What a receiver answered (or why there was no answer)."""

    ok: bool
    status: int | None = None
    error: str | None = None
    seconds: float = 0.0
    body: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    networks: tuple = ()

    @classmethod
    def parse(cls, entries) -> "AllowList":
        hosts, networks = set(), []
        for entry in entries or ():
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address) -> bool:
        return host.lower() in self.hosts or any(address in net for net in self.networks)


def _why_refused(address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_unspecified or not address.is_global:
        return "not a public address"
    return None


def check_url(url: str, allow: AllowList) -> tuple[str, int, str, str]:
    """(scheme, port, host, address) for a URL the guard lets through; `Refused` otherwise.

    Resolves the host (no connection is opened) and checks every address it
    resolves to: one bad answer refuses the URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("only http and https URLs")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused("the URL has no host")
    if parts.username or parts.password:
        raise Refused("credentials in the URL are not allowed")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"{host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise Refused(f"{host} does not resolve")
    for address in addresses:
        why = _why_refused(address)
        if why and not allow.allows(host, address):
            raise Refused(f"{host} resolves to {address}, {why}; an operator can allow it in RULES_EGRESS_ALLOW")
    return parts.scheme, port, host, str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host, port, address, **kw):
        super().__init__(host, port, **kw)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), CONNECT_TIMEOUT)
        self.sock.settimeout(READ_TIMEOUT)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kw):
        super().__init__(host, port, context=ssl.create_default_context(), **kw)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), CONNECT_TIMEOUT)
        sock.settimeout(READ_TIMEOUT)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def post(url: str, body: bytes, headers: dict, allow: AllowList) -> Result:
    """POST `body` to `url` through the guard; never raises for the network's faults."""
    started = time.perf_counter()
    try:
        scheme, port, host, address = check_url(url, allow)
    except Refused as exc:
        return Result(False, error=f"refused: {exc}", seconds=time.perf_counter() - started)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    connection = connection_class(host, port, address, timeout=READ_TIMEOUT)
    try:
        connection.request("POST", path, body=body, headers={"User-Agent": "ActivityWeb-Rules/1", **headers})
        response = connection.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
        status = response.status
        seconds = time.perf_counter() - started
        text = data.decode("utf-8", "replace")
        retry_after = retry_after_seconds(response.getheader("Retry-After"))
        if 300 <= status < 400:
            return Result(False, status, "redirects are not followed", seconds, text, retry_after)
        return Result(200 <= status < 300, status, None if status < 300 else f"HTTP {status}", seconds, text,
                      retry_after)
    except (OSError, http.client.HTTPException) as exc:
        return Result(False, error=f"{type(exc).__name__}: {exc}"[:300], seconds=time.perf_counter() - started)
    finally:
        connection.close()
