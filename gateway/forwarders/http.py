"""Step 10 for route configs with an `upstreamUrl`: an HTTP reverse proxy (docs/api.md section 6.4).

- keep-alive connections per upstream (gateway.forwarders.upstream_client); request and
  response bodies are streamed;
- hop-by-hop and credential headers are not forwarded, nor any client claim of its address
  (`Forwarded`, `X-Real-IP`, underscore spellings...); X-Forwarded-*, X-Request-Id and our
  `Via` entry added;
- W3C trace context: the client's `traceparent` is replaced by the gateway's (the request's
  span, or the CLIENT span of the upstream call when spans are exported), and the client's
  `tracestate` goes on unchanged (when it was well formed; contracts.tracing);
- the gateway's own addresses are no target (a loop): GATEWAY_PORT and the port requests
  really arrive on, on every local address, and APP_URL's addresses;
  bodies go on as aiohttp decoded them, without their old Content-Encoding;
- the SSRF target rules are checked again at connect time (a resolver that refuses private
  addresses defeats DNS rebinding);
- connect and total timeouts -> 504, connection failure -> 502; idempotent methods are
  retried once, and only when the connection itself failed;
- a circuit breaker per upstream: after consecutive failures it opens (503) for a cool-down,
  then lets one probe through (half-open).
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict
from prometheus_client import Gauge
from yarl import URL

from contracts.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from contracts.logging import get_logger
from contracts.spans import Span, recorder
from contracts.tracing import TRACEPARENT, TRACESTATE, TraceContext
from contracts.upstream import TargetRefused, UpstreamPolicy, is_ip_literal
from gateway.context import context_of
from gateway.forwarders.upstream_client import (
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    UpstreamBroken,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamResponse,
)
from gateway.route_configs import RouteConfig

log = get_logger(__name__)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length",
})
NOT_FORWARDED = HOP_BY_HOP | {"authorization", "x-api-key", "cookie", "x-alert-secret",
                              "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
                              "x-request-id", "via", "traceparent", "tracestate"}
# Headers that claim the client's address or the original host: only the gateway states those
# (X-Forwarded-*), so a client's own, in any spelling (`X_Forwarded_For` too), is dropped.
ADDRESS_CLAIMS = frozenset({
    "forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "x-cluster-client-ip",
    "cf-connecting-ip", "fastly-client-ip", "x-forwarded-for", "x-forwarded-host",
    "x-forwarded-proto", "x-forwarded-port", "x-forwarded-server", "x-original-forwarded-for",
})
SMALL_BODY = 64 * 1024  # answered whole (cheaper than streaming); larger bodies stream

# Labelled by route config id: an upstream URL may hold credentials in its query string.
BREAKER_STATE = Gauge("gateway_upstream_breaker_open", "1 while an upstream's breaker is open",
                      ["route_config"])


class CheckingResolver:
    """Resolves like aiohttp's default resolver (a thread for getaddrinfo), refuses forbidden
    addresses, and remembers answers for `ttl_s`; IP literals are taken as they are (the
    proxy checked them when it read the route config's URL)."""

    def __init__(self, policy: UpstreamPolicy, ttl_s: float = 10.0) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    async def addresses(self, host: str, port: int) -> list[str]:
        if is_ip_literal(host):
            return [host.strip("[]")]  # checked, with the port, by UpstreamProxy._refusal_of
        cached = self._cache.get((host, port))
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        results = await self._inner.resolve(host, port, socket.AF_UNSPEC)
        try:
            for result in results:
                self._policy.check_address(result["host"], host, port)
        except TargetRefused as exc:
            raise OSError(str(exc)) from None
        addresses = [result["host"] for result in results]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[host, port] = (time.monotonic() + self._ttl_s, addresses)
        return addresses

    def forget(self) -> None:
        """What the policy allows changed: check every address again."""
        self._cache.clear()

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class Breaker:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class CircuitBreakers:
    def __init__(self, threshold: int = 5, cool_down_s: float = 10.0) -> None:
        self._threshold = threshold
        self._cool_down_s = cool_down_s
        self._breakers: dict[str, Breaker] = {}
        self._labels: dict[str, str] = {}  # upstream -> a route config id using it

    def before(self, upstream: str, label: str = "") -> bool:
        """Raise while open; True when this request is the half-open probe."""
        if label:
            self._labels[upstream] = label
        breaker = self._breakers.get(upstream)
        if breaker is None:  # first use: its gauge series exists from now on, closed
            breaker = self._breakers[upstream] = Breaker()
            BREAKER_STATE.labels(self._labels.get(upstream, "")).set(0)
        if breaker.failures < self._threshold:
            return False
        if time.monotonic() < breaker.open_until or breaker.probing:
            raise ServiceUnavailable("Upstream is failing; circuit open")
        breaker.probing = True
        return True

    def probe_done(self, upstream: str) -> None:
        """A probe that ended without a verdict (client gone) must not keep the circuit shut."""
        breaker = self._breakers.get(upstream)
        if breaker is not None:
            breaker.probing = False

    def success(self, upstream: str) -> None:
        breaker = self._breakers.get(upstream)
        if breaker is not None and not breaker.failures and not breaker.probing:
            return  # already closed: nothing to reset (the common case, once per request)
        self._breakers[upstream] = Breaker()
        BREAKER_STATE.labels(self._labels.get(upstream, "")).set(0)

    def failure(self, upstream: str) -> None:
        breaker = self._breakers.setdefault(upstream, Breaker())
        breaker.failures += 1
        breaker.probing = False
        if breaker.failures >= self._threshold:
            breaker.open_until = time.monotonic() + self._cool_down_s
            BREAKER_STATE.labels(self._labels.get(upstream, "")).set(1)


class UpstreamProxy:
    def __init__(self, policy: UpstreamPolicy, *, connect_timeout_s: float = 5.0,
                 total_timeout_s: float = 30.0, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_header_fields: int = MAX_HEADER_FIELDS,
                 breakers: CircuitBreakers | None = None) -> None:
        self._policy = policy
        self._connect_timeout_s = connect_timeout_s
        self._total_timeout_s = total_timeout_s
        self._max_header_bytes = max_header_bytes
        self._max_header_fields = max_header_fields
        self.breakers = breakers or CircuitBreakers()
        self._resolver: CheckingResolver | None = None
        self._client: UpstreamClient | None = None
        self._verdicts: dict[str, str | None] = {}
        self._listening_port: int | None = None

    async def start(self) -> None:
        self._resolver = CheckingResolver(self._policy)
        self._client = UpstreamClient(self._resolver.addresses,
                                      connect_timeout_s=self._connect_timeout_s,
                                      total_timeout_s=self._total_timeout_s,
                                      max_header_bytes=self._max_header_bytes,
                                      max_header_fields=self._max_header_fields)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._resolver is not None:
            await self._resolver.close()

    def forward(self, request: web.Request, config: RouteConfig
                ) -> Awaitable[web.StreamResponse]:
        """The checks that need no waiting, then the exchange to await (a coroutine frame
        less for every resumption of the request)."""
        assert self._client is not None and config.upstream_url is not None
        if self._listening_port is None:
            self._learn_listener(request)
        upstream = config.upstream_url
        refusal = self._refusal_of(upstream)
        if refusal is not None:
            raise UpstreamError(f"Upstream target refused: {refusal}")
        target = upstream_target(upstream, request.raw_path)
        limit = context_of(request).state.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge()
        probing = self.breakers.before(upstream, config.id)
        parent = context_of(request).span
        if parent is not None and parent.recording:
            exchange = self._traced(request, target, upstream, limit, parent)
        else:  # nothing recorded: the request's own span is the upstream's parent
            exchange = self._exchange(request, target, upstream, limit,
                                      parent.context if parent is not None else None)
        return self._probe(exchange, upstream) if probing else exchange

    async def _probe(self, exchange: Awaitable[web.StreamResponse], upstream: str
                     ) -> web.StreamResponse:
        """The half-open breaker's one request."""
        try:
            return await exchange
        finally:
            self.breakers.probe_done(upstream)  # even when the client went away

    async def _traced(self, request: web.Request, target: URL, upstream: str, limit: int,
                      parent: Span) -> web.StreamResponse:
        """The exchange in a CLIENT span of its own, from the request to the answer's end.
        Attributes name the upstream's host and port, never its URL (it may hold
        credentials)."""
        span = recorder().client(request.method, parent, {
            "http.request.method": request.method, "server.address": target.host or "",
            "server.port": target.port or 0})
        status = 0
        try:
            response = await self._exchange(request, target, upstream, limit, span.context)
            status = response.status
            return response
        finally:
            span.end(error=not 0 < status < 400,  # OpenTelemetry: a client's 4xx is an error
                     attributes={"http.response.status_code": status} if status else None)

    async def _exchange(self, request: web.Request, target: URL, upstream: str, limit: int,
                        trace: TraceContext | None) -> web.StreamResponse:
        assert self._client is not None
        headers = self._request_headers(request, trace)
        body = _capped(request.content, limit) if request.body_exists else None
        try:  # (the client tries a connection again where that is safe)
            upstream_response = await self._client.request(
                request.method, target, headers, body, _length_of(request, body))
        except UpstreamConnectError as exc:
            self.breakers.failure(upstream)
            raise UpstreamError(f"Upstream unreachable: {exc}") from None
        except TimeoutError:
            self.breakers.failure(upstream)
            raise UpstreamTimeout("Upstream did not answer in time") from None
        except ClientBodyBroken:  # the client's fault, not the upstream's
            raise BadRequest("The request body ended before its end") from None
        except (UpstreamBroken, OSError) as exc:
            self.breakers.failure(upstream)
            raise UpstreamError(f"Upstream failed: {type(exc).__name__}") from None
        length = upstream_response.content_length
        # the response cache wants whole bodies up to its entry limit; larger ones stream by
        # (and are not stored), so a cacheable route cannot make the gateway hold a huge body
        buffer_up_to = context_of(request).buffer_up_to
        whole_up_to = max(SMALL_BODY, buffer_up_to)
        if length is not None:
            if length <= whole_up_to:
                return await self._buffered(upstream_response, upstream)
            return await self._streamed(request, upstream_response, upstream)
        if not buffer_up_to:
            return await self._streamed(request, upstream_response, upstream)
        try:  # no length given: read past the limit to learn which side it is on
            prefix, whole = await upstream_response.read(up_to=whole_up_to)
        except (TimeoutError, UpstreamBroken) as exc:
            upstream_response.release()
            self.breakers.failure(upstream)
            raise UpstreamError(f"Upstream response failed: {type(exc).__name__}") from None
        except BaseException:  # cancelled: the connection is not left to its deadline
            upstream_response.release()
            raise
        if whole:
            return await self._buffered(upstream_response, upstream, body=prefix)
        return await self._streamed(request, upstream_response, upstream, prefix=prefix)

    def _learn_listener(self, request: web.Request) -> None:
        """The port this process really serves (the socket a request arrived on), on every
        local address, joins the targets refused as the gateway itself; the settings' port
        may differ (a test server, a port chosen by the system)."""
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if not isinstance(sockname, tuple) or len(sockname) < 2:
            return
        self._listening_port = sockname[1]
        self._policy.own.add_port(sockname[1])
        self._verdicts.clear()
        if self._resolver is not None:
            self._resolver.forget()

    def _refusal_of(self, upstream: str) -> str | None:
        """The shape rules, and the address rules for an IP-literal host (aiohttp does not
        resolve those; named hosts are checked by the resolver at each new connection).
        The answer only depends on the configured URL, so it is remembered."""
        if upstream not in self._verdicts:
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            try:
                host, port = self._policy.check_url(upstream)
                if is_ip_literal(host):
                    self._policy.check_address(host.strip("[]"), host, port)
                self._verdicts[upstream] = None
            except TargetRefused as exc:
                self._verdicts[upstream] = str(exc)
        return self._verdicts[upstream]

    async def _streamed(self, request: web.Request, upstream_response: UpstreamResponse,
                        upstream: str, prefix: bytes = b"") -> web.StreamResponse:
        """Chunks go to the client as they arrive: flat memory for any body size. A client
        that goes away is not the upstream's fault and does not count against its breaker."""
        response = web.StreamResponse(status=upstream_response.status,
                                      reason=upstream_response.reason or None)
        response.headers.extend(_end_to_end(upstream_response.headers))
        if upstream_response.content_length is not None:
            response.content_length = upstream_response.content_length
        try:
            await response.prepare(request)
            if prefix:
                await response.write(prefix)
            chunks = upstream_response.chunks()
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except (TimeoutError, UpstreamBroken) as exc:
                    self.breakers.failure(upstream)
                    log.warning("upstream response interrupted", upstream=upstream,
                                error=repr(exc))
                    raise  # headers are sent: the client sees a cut-off response
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            log.info("client went away during a proxied response", upstream=upstream)
            return response
        finally:
            upstream_response.release()
        self.breakers.success(upstream)
        return response

    async def _buffered(self, upstream_response: UpstreamResponse, upstream: str,
                        body: bytes | None = None) -> web.Response:
        """A whole-body answer: small bodies, and those the response cache may store."""
        try:
            if body is None:
                body, _whole = await upstream_response.read()
        except (TimeoutError, UpstreamBroken) as exc:
            self.breakers.failure(upstream)
            raise UpstreamError(f"Upstream response failed: {type(exc).__name__}") from None
        finally:
            upstream_response.release()
        self.breakers.success(upstream)
        return web.Response(status=upstream_response.status, body=body,
                            headers=_end_to_end(upstream_response.headers))

    def _request_headers(self, request: web.Request, trace: TraceContext | None
                         ) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in request.headers.items() if _forwarded(k)]
        context = context_of(request)
        state = context.state
        prior = request.headers.get("X-Forwarded-For")
        client = context.client_ip
        headers += (
            ("X-Forwarded-For", f"{prior}, {client}" if prior and (
                client != request.remote) else client),
            # the gateway's own public host, not the client's Host header (which the client
            # chooses freely, and an upstream may use to build links)
            ("X-Forwarded-Host", state.public_host),
            ("X-Forwarded-Proto", request.scheme),
            ("X-Request-Id", context.request_id),
            # RFC 9110 section 7.6.3: earlier hops kept, ours last; the loop guard refuses a
            # request that comes back with our name in it
            ("Via", ", ".join((*request.headers.getall("Via", ()), state.via))))
        if trace is not None:
            headers.append((TRACEPARENT, trace.traceparent))
            if trace.tracestate:
                headers.append((TRACESTATE, trace.tracestate))
        return headers


def upstream_target(upstream: str, raw_path_qs: str) -> URL:
    """The base URL's path + the request's raw path (never re-normalised: the path guard
    refused dot segments and encoded slashes), the base URL's query + the request's."""
    scheme, authority, base_path, base_query = _parts_of(upstream)
    path, _, query = raw_path_qs.partition("?")
    target = URL.build(scheme=scheme, authority=authority, path=base_path + path,
                       query_string="&".join(q for q in (base_query, query) if q),
                       encoded=True)
    if not target.raw_path.startswith(base_path + "/"):
        raise BadRequest("Request path leaves the upstream's base path")
    return target


@functools.lru_cache(maxsize=4096)  # a route config's upstream URL is parsed once
def _parts_of(upstream: str) -> tuple[str, str, str, str]:
    base = URL(upstream)
    return base.scheme, base.raw_authority, base.raw_path.rstrip("/"), base.raw_query_string


@functools.lru_cache(maxsize=4096)  # header names repeat: decide each spelling once
def _forwarded(name: str) -> bool:
    lower = name.lower()
    if lower in NOT_FORWARDED or lower.replace("_", "-") in ADDRESS_CLAIMS:
        return False
    # aiohttp has already decoded a gzip/deflate/br request body: it goes on decoded, so its
    # old Content-Encoding must not go with it
    return lower != "content-encoding"


def _end_to_end(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """An upstream answer's headers without the hop-by-hop ones (removed in place: the
    upstream client's headers are the answer's own)."""
    for name in HOP_BY_HOP.intersection(map(str.lower, headers.keys())):
        del headers[name]
    return headers


def _length_of(request: web.Request, body: object) -> int | None:
    """The request body's length as it goes upstream: the client's Content-Length, unless
    aiohttp decoded the body (then it goes chunked)."""
    if body is None or "Content-Encoding" in request.headers:
        return None
    return request.content_length


class ClientBodyBroken(Exception):
    """The client's request body broke off (the client went away mid-upload)."""


async def _capped(stream: aiohttp.StreamReader, limit: int) -> AsyncIterator[bytes]:
    """The request body, streamed, refusing more than `limit` bytes (chunked uploads too)."""
    sent = 0
    chunks = stream.iter_chunked(64 * 1024)
    while True:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except (OSError, EOFError, aiohttp.ClientPayloadError, HttpProcessingError) as exc:
            raise ClientBodyBroken(repr(exc)) from None
        sent += len(chunk)
        if sent > limit:
            raise PayloadTooLarge()
        yield chunk



UPSTREAM_PROXY = web.AppKey("upstream_proxy", UpstreamProxy)


async def proxy_or_not_found(request: web.Request) -> web.StreamResponse:
    """The catch-all route: an upstream route config, or the JSON 404."""
    config = context_of(request).config
    if config is None or config.upstream_url is None:
        raise NotFound("Route not found")
    return await request.app[UPSTREAM_PROXY].forward(request, config)

