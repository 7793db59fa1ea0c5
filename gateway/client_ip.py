"""The client's address: the socket peer, or the right-most untrusted hop of X-Forwarded-For
when the peer is a configured trusted proxy (so a client cannot pick its own address)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web


class ClientAddress:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, request: web.Request) -> str:
        address = request.remote or "unknown"
        if self._trusted and self._is_trusted(address):
            hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
            for hop in reversed([h for h in hops if h]):
                address = hop
                if not self._is_trusted(hop):
                    break
        return address
