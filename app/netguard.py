"""The SSRF guard of outgoing webhooks: which URLs may be targeted, and a resolver that connects only to checked addresses."""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from tornado.netutil import Resolver

MAX_URL_LENGTH = 2000


class TargetRefused(Exception):
    """The URL or an address its host resolves to is not allowed; the message says why."""


def _normalise(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


class HostPolicy:
    """`allowed_hosts`: exact names/addresses, or fnmatch patterns. Only an exactly listed host may reach
    a private, loopback, link-local or otherwise non-public address; a pattern's hosts must be public."""

    def __init__(self, allowed_hosts: list[str]):
        self.exact = {_normalise(h) for h in allowed_hosts if not any(c in h for c in "*?[")}
        self.patterns = [_normalise(h) for h in allowed_hosts if any(c in h for c in "*?[")]

    def host_allowed(self, host: str) -> bool:
        host = _normalise(host)
        return host in self.exact or any(fnmatch.fnmatchcase(host, p) for p in self.patterns)

    def check_url(self, url: str) -> str:
        """The URL's host when the URL may be a target (checked at creation); raises TargetRefused."""
        if len(url) > MAX_URL_LENGTH:
            raise TargetRefused("the URL is too long")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise TargetRefused("the URL is not valid") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetRefused("the URL must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise TargetRefused("the URL must not carry credentials")
        if port == 0:
            raise TargetRefused("the URL's port is not valid")
        host = _normalise(parts.hostname)
        if not self.host_allowed(host):
            raise TargetRefused(f"{host} is not in webhooks.allowed_hosts")
        literal = _ip(host)
        if literal is not None:
            self.check_address(host, literal)
        return host

    def check_address(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """Raises unless `host` may connect to `address` (checked at delivery, for every resolved address)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            return
        if _normalise(host) in self.exact and not (address.is_multicast or address.is_unspecified):
            return
        raise TargetRefused(f"{host} resolves to {address}, a non-public address (list the host exactly to allow it)")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class GuardedResolver(Resolver):
    """Tornado's HTTP client connects to what this returns: every address of the host is checked first, and
    the connection goes to those checked addresses (no second lookup a rebinding DNS could answer differently)."""

    def initialize(self, policy: HostPolicy) -> None:  # type: ignore[override]
        self.policy = policy

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC) -> list[Any]:
        if not self.policy.host_allowed(host):
            raise TargetRefused(f"{_normalise(host)} is not in webhooks.allowed_hosts")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise OSError(f"cannot resolve {host}: {e}") from None
        if not infos:
            raise OSError(f"cannot resolve {host}")
        # Every address, before any connection: a host with one private address among public ones is refused.
        for _, _, _, _, sockaddr in infos:
            self.policy.check_address(host, ipaddress.ip_address(sockaddr[0].split("%")[0]))
        return [(fam, sockaddr) for fam, _, _, _, sockaddr in infos]
