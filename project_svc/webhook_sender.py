"""One webhook delivery attempt: a signed POST to the subscriber's URL, under the same target
policy as upstream routes (contracts/upstream.py), applied when the webhook is saved and
again here at connect time.

An attempt:
- checks the URL's shape and, for an IP literal, its address (aiohttp does not resolve
  literals), then connects only to resolved addresses the policy allows: the resolver below
  filters every DNS answer, so a name that resolved to a public address when the webhook was
  saved and to 10.0.0.1 now (DNS rebinding) is refused;
- follows no redirect: a 3xx is the endpoint's answer (not delivered), whatever it points at;
- has one deadline for connecting, sending and reading the answer (`timeout_s`, 10 s);
- reads at most `max_answer_bytes` of the answer (kept for the delivery log), so an endpoint
  streaming without end costs nothing;
- is delivered when the answer is 2xx; anything else (another status, a refused target, a
  connection error, the deadline) is a failed attempt with its reason, for the retry schedule.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from contracts.upstream import TargetRefused, UpstreamPolicy, is_ip_literal

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Attempt:
    status_code: int | None  # None: no answer (refused target, connection error, deadline)
    error: str | None
    duration_ms: float
    answer: str  # the start of the answer's body, for the delivery log

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class RefusedAddress(OSError):
    """Every address the name resolved to is refused by the target policy."""


class PolicyResolver(AbstractResolver):
    """DNS answers filtered by the target policy at connect time."""

    def __init__(self, policy: UpstreamPolicy) -> None:
        self._policy = policy
        self._resolver = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        allowed, reasons = [], []
        for result in await self._resolver.resolve(host, port, family):
            try:
                self._policy.check_address(result["host"], host, port)
            except TargetRefused as exc:
                reasons.append(str(exc))
                continue
            allowed.append(result)
        if not allowed:
            raise RefusedAddress(reasons[0] if reasons else f"Host {host} cannot be resolved")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


class WebhookSender:
    def __init__(self, policy: UpstreamPolicy, *, timeout_s: float = 10.0,
                 max_answer_bytes: int = 4096) -> None:
        self._policy = policy
        self._timeout_s = timeout_s
        self._max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(self._policy), limit=100,
                                         limit_per_host=10, use_dns_cache=False)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            headers={"User-Agent": "gateway-platform-webhooks/1"})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        assert self._session is not None, "start() first"
        started = time.perf_counter()

        def failed(reason: str, status: int | None = None, answer: str = "") -> Attempt:
            return Attempt(status, reason[:MAX_ERROR_CHARS],
                           (time.perf_counter() - started) * 1000, answer)

        try:
            host, port = self._policy.check_url(url)
            if is_ip_literal(host):  # aiohttp connects to a literal without resolving it
                self._policy.check_address(host.strip("[]"), host, port)
        except TargetRefused as exc:
            return failed(f"Target refused: {exc}")
        try:
            async with self._session.post(url, data=body, headers=headers,
                                          allow_redirects=False) as response:
                answer = (await response.content.read(self._max_answer_bytes)).decode(
                    "utf-8", "replace")
                status = response.status
        except TimeoutError:
            return failed(f"No answer within {self._timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            reason = (f"Target refused: {cause}" if isinstance(cause, RefusedAddress)
                      else f"Connection failed: {cause.strerror or cause}")
            return failed(reason)
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
            return failed(f"Request failed: {exc!r}")
        elapsed = (time.perf_counter() - started) * 1000
        if 200 <= status < 300:
            return Attempt(status, None, elapsed, answer)
        reason = f"HTTP {status}"
        if 300 <= status < 400:
            reason += " (redirects are not followed)"
        return Attempt(status, reason, elapsed, answer)

