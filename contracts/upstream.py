"""Which upstream targets a route config may point at (API.md section 6.4): the SSRF rules,
checked by the project service when a config is saved and by the gateway at every connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048


class TargetRefused(ValueError):
    """The URL or one of its addresses is not an allowed upstream target."""


class UpstreamPolicy:
    """`allow` is the operator's UPSTREAM_ALLOW_PRIVATE: CIDRs, host names, or `*`."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        entries = [entry.strip().lower() for entry in allow if entry.strip()]
        self.allow_all = "*" in entries
        self._networks = []
        self._hosts = set()
        for entry in entries:
            if entry == "*":
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._hosts.add(entry)

    def check_url(self, url: str) -> tuple[str, int]:
        """Shape rules; returns (host, port). Raises TargetRefused with the reason."""
        if len(url) > MAX_URL_LENGTH:
            raise TargetRefused(f"URL must be at most {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise TargetRefused("Not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise TargetRefused("URL scheme must be http or https")
        if not parts.hostname:
            raise TargetRefused("URL must name a host")
        if parts.username is not None or parts.password is not None:
            raise TargetRefused("URL must not contain credentials")
        if parts.fragment or "#" in url:
            raise TargetRefused("URL must not contain a fragment")
        # The host as the HTTP client will use it: yarl normalises it (IDNA, NFKC), so
        # `①⑥⑨.②⑤④.①⑥⑨.②⑤④` is the IP literal 169.254.169.254 and must be checked as one.
        try:
            host = URL(url).host
        except (ValueError, UnicodeError):
            raise TargetRefused("Not a valid URL") from None
        if not host:
            raise TargetRefused("URL must name a host")
        return host.lower(), port or (443 if parts.scheme == "https" else 80)

    def host_allowed_by_operator(self, host: str) -> bool:
        return self.allow_all or host in self._hosts

    def check_address(self, address: str, host: str = "") -> None:
        if self.host_allowed_by_operator(host):
            return
        ip: IPAddress = ipaddress.ip_address(address.split("%")[0])
        if any(ip in network for network in self._networks):
            return
        for embedded in _embedded_ipv4(ip):  # ::ffff:a.b.c.d, NAT64, 6to4, Teredo
            self.check_address(str(embedded), host)
        if not ip.is_global or ip.is_multicast or ip in _CGNAT or ip in _SITE_LOCAL:
            raise TargetRefused(f"Target address {ip} is not allowed (private, loopback, "
                                "link-local or reserved)")

    async def check(self, url: str) -> list[str]:
        """All rules, resolving the host; returns the addresses it resolved to."""
        host, port = self.check_url(url)
        if (host == "localhost" or host.endswith(".localhost")) and not (
                self.host_allowed_by_operator(host)):
            raise TargetRefused("Target host localhost is not allowed")
        addresses = await resolve(host, port)
        for address in addresses:
            self.check_address(address, host)
        return addresses


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.ipv4_mapped is None and (int(ip) >> 32) == 0xFFFF0000:  # ::ffff:0:a.b.c.d
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


async def resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return [host.strip("[]")]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: an empty or over-long DNS label
        raise TargetRefused(f"Host {host} cannot be resolved") from None
    return sorted({info[4][0] for info in infos})
