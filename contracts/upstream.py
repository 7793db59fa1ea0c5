"""Which upstream targets a route config may point at (docs/api.md section 6.4): the SSRF rules,
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


class OwnAddresses:
    """Where the gateway itself is reached: a route config aimed there would send each request
    through the gateway again and again (a loop). (address, port) pairs, not hosts, so an
    upstream on another port of the same machine stays allowed.

    `ports` are served on every local address (loopback, unspecified, and any address of this
    machine's interfaces); `pairs` are exact, e.g. APP_URL's host resolved with its port."""

    def __init__(self, ports: Iterable[int] = (),
                 pairs: Iterable[tuple[str, int]] = ()) -> None:
        self._ports = set(ports)
        self._pairs = {(_plain(ipaddress.ip_address(address.split("%")[0])), port)
                       for address, port in pairs}
        self._local: dict[IPAddress, bool] = {}

    @classmethod
    async def of(cls, app_url: str, gateway_port: int) -> OwnAddresses:
        """GATEWAY_PORT on every local address, and APP_URL's addresses and port."""
        parts = urlsplit(app_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await resolve(parts.hostname or "", port) if parts.hostname else []
        except TargetRefused:  # not resolvable here: nothing of ours to compare with
            addresses = []
        return cls([gateway_port], [(address, port) for address in addresses])

    def add_port(self, port: int) -> None:
        self._ports.add(port)

    def includes(self, address: str, port: int) -> bool:
        ip = _plain(ipaddress.ip_address(address.split("%")[0]))
        if (ip, port) in self._pairs:
            return True
        return port in self._ports and self._is_local(ip)

    def _is_local(self, ip: IPAddress) -> bool:
        known = self._local.get(ip)
        if known is None:
            if len(self._local) > 4096:
                self._local.clear()
            known = self._local[ip] = ip.is_loopback or ip.is_unspecified or _bindable(ip)
        return known


def _plain(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it reaches."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped if mapped is not None else ip


def _bindable(ip: IPAddress) -> bool:
    """True if the address is one of this machine's own (the kernel lets us bind it): one
    non-blocking system call, asked once per address."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(ip), 0))
        except OSError:
            return False
    return True


class UpstreamPolicy:
    """`allow` is the operator's UPSTREAM_ALLOW_PRIVATE: CIDRs, host names, or `*`; `own`,
    where the gateway itself listens (refused whatever `allow` says)."""

    def __init__(self, allow: Iterable[str] = (), own: OwnAddresses | None = None) -> None:
        self.own = own or OwnAddresses()
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

    def check_address(self, address: str, host: str = "", port: int | None = None) -> None:
        if port is not None and self.own.includes(address, port):
            raise TargetRefused(f"Target {address} port {port} is this gateway itself "
                                "(requests would loop)")
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
            self.check_address(address, host, port)
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


def is_ip_literal(host: str) -> bool:
    """Whether `host` is an address rather than a name (aiohttp connects to one without
    asking a resolver, so the policy must check it itself)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


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
    # str(): typeshed also allows an (int, bytes) address, which only a CPython built without
    # IPv6 support gives; the host of every INET/INET6 address is already a string
    return sorted({str(info[4][0]) for info in infos})
