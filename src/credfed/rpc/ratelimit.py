"""Per-client rate limits, a cap on concurrent log subscriptions, and the
connection limits of the server (``[limits]`` in ``credfed.toml``).

:class:`RateLimitInterceptor` goes after the :class:`~credfed.rpc.auth.AuthInterceptor`
in the server's list: grpc runs the first interceptor's handler wrapper
outermost, so by the time this one's wrapper runs, the auth wrapper has set
:func:`~credfed.rpc.auth.current_caller` (a contextvar of the call's task).

- Authenticated calls are counted per client id, with the rate and burst of
  the client's role. A call counts once, when it starts: a bulk issue of
  any number of messages, or a subscription however long it lasts. The
  exception is VerifyBatch, which counts its items (up to the 1,000 a batch
  may hold): else one batch would be a thousand lookups for one token, and a
  scraper's way around the limit. A batch larger than the client's burst
  could never pass and is refused without a retry time.
- Health checks are never limited: they are cheap, carry no data, and come
  from load balancers and probes that share addresses. Reflection, the
  other public service, is limited per client address (IPv6 per /64), with
  the ``anonymous`` role's settings.
- A refused call ends RESOURCE_EXHAUSTED, ``rate limit exceeded; retry in N
  ms``, with trailing metadata ``retry-after-ms: N``. (grpc's RetryInfo in
  ``grpc-status-details-bin`` would need grpcio-status and the googleapis
  protos, which this project does not depend on.)
- A client holds at most ``max_subscriptions_per_client`` SubscribeLog calls
  at once; the next is RESOURCE_EXHAUSTED until one of them ends.

Calls refused before this interceptor (a missing, unknown or forged token,
a role not allowed) are not counted here. Each refusal is reported to
``on_limited(role, reason)`` (metrics), reason ``rate``, ``batch`` or
``subscriptions``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc

from credfed import logging as clog
from credfed.config import LimitSettings
from credfed.rpc.auth import METHOD_ROLES, current_caller
from credfed.rpc.handlers import WrapperCache
from credfed.rpc.servicers import MAX_BATCH

#: Trailing metadata of a refused call: milliseconds to wait before retrying.
RETRY_AFTER_KEY: Final = "retry-after-ms"
SUBSCRIBE_METHOD: Final = "/credfed.v1.FederationService/SubscribeLog"
BATCH_METHOD: Final = "/credfed.v1.VerificationService/VerifyBatch"
_UNLIMITED_PREFIX: Final = "/grpc.health.v1.Health/"
#: Buckets kept at most; past this the least recently used is forgotten (that
#: client starts afresh with a full bucket: lenient, but memory stays bounded).
MAX_BUCKETS: Final = 100_000
#: Shortest interval between a client's pings (without data) the server
#: accepts. Must stay below the keepalive of partner links (30 s, see
#: credfed.rpc.peerlink), or grpc answers their pings with GOAWAY.
MIN_PING_INTERVAL_MS: Final = 10_000
#: A client being limited is logged at most this often.
_NOTE_EVERY = 60.0

log = clog.get("credfed.rpc.limits")


def server_options(limits: LimitSettings) -> list[tuple[str, int]]:
    """grpc server options for the connection settings of ``[limits]``.

    ``grpc.max_connection_age_ms`` is deliberately not set: it would end
    partners' long SubscribeLog streams, which are re-opened anyway every
    ``STREAM_DEADLINE`` (peerlink) and whose connections are kept honest by
    the keepalive pings below.
    """
    return [
        ("grpc.max_connection_idle_ms", round(limits.idle_timeout * 1000)),
        ("grpc.keepalive_time_ms", round(limits.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", round(limits.keepalive_timeout * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
    ]


class TokenBuckets:
    """Token buckets by key, each stored as one number: the time at which it
    is full again (the "theoretical arrival time" of GCRA). A bucket full
    again is the same as no bucket, so it is dropped when next swept; the
    least recently used come first, so a sweep stops at the first one still
    filling (amortised O(1) per call)."""

    def __init__(
        self,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._full_at: OrderedDict[str, float] = OrderedDict()
        self._max = max_buckets
        self._clock = clock

    def __len__(self) -> int:
        return len(self._full_at)

    def take(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        """Take ``cost`` tokens (at most ``burst``) of ``key``'s bucket: 0.0 if
        there were as many, else the seconds until there are (nothing is
        taken then)."""
        now = self._clock()
        self._sweep(now)
        full_at = max(self._full_at.get(key, now), now)
        # Tokens missing: (full_at - now) * rate; cost must remain to take.
        ready_at = full_at - (burst - cost) / rate
        if ready_at > now:
            return ready_at - now
        self._full_at[key] = full_at + cost / rate
        self._full_at.move_to_end(key)
        if len(self._full_at) > self._max:
            self._full_at.popitem(last=False)
        return 0.0

    def _sweep(self, now: float) -> None:
        buckets = self._full_at
        while buckets:
            key, full_at = next(iter(buckets.items()))
            if full_at > now:
                return
            del buckets[key]


def _ignore(role: str, reason: str) -> None:
    pass


def _address(peer: str) -> str:
    """The client address of grpc's ``context.peer()`` (``ipv4:1.2.3.4:5``,
    ``ipv6:[::1]:5``), IPv6 as its /64: one host has a whole /64 to itself."""
    scheme, _, rest = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return peer
    host = rest.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RateLimitInterceptor(grpc.aio.ServerInterceptor):
    """Rate limits per client and the subscription cap (see the module)."""

    def __init__(
        self,
        limits: LimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
        on_limited: Callable[[str, str], None] | None = None,
    ) -> None:
        self._on_limited = on_limited or _ignore
        self._limits = limits
        self._clock = clock
        self._buckets = TokenBuckets(max_buckets, clock)
        self._subscriptions: dict[str, int] = {}
        self._noted: dict[str, float] = {}
        self._wrappers = WrapperCache()

    def subscriptions(self, key: str) -> int:
        """SubscribeLog calls ``key`` (``client:<id>``) holds now."""
        return self._subscriptions.get(key, 0)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_UNLIMITED_PREFIX):
            return handler
        public = method in METHOD_ROLES and METHOD_ROLES[method] is None
        return self._wrappers.get(method, handler, lambda: self._limited(handler, public, method))

    def _identity(self, context: Any, public: bool) -> tuple[str, str]:
        """The bucket key and the role whose settings apply."""
        if not public:
            try:
                caller = current_caller()
            except LookupError:  # pragma: no cover - auth aborts before
                pass
            else:
                return f"client:{caller.client_id}", caller.role.kind.value
        return f"address:{_address(str(context.peer()))}", "anonymous"

    async def _admit(self, context: Any, public: bool, cost: int = 1) -> str:
        key, role = self._identity(context, public)
        limits = self._limits
        burst = limits.burst_for(role)
        if cost > burst:
            self._on_limited(role, "batch")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a batch of {cost} exceeds this client's rate limit burst of {burst}; "
                f"send at most {burst} per call",
            )
        wait = self._buckets.take(key, limits.rate_for(role), burst, cost)
        if wait > 0:
            ms = max(1, math.ceil(wait * 1000))
            self._note(key, role)
            self._on_limited(role, "rate")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit exceeded; retry in {ms} ms",
                # Added to what is set already (the request id), not instead.
                trailing_metadata=(
                    *(context.trailing_metadata() or ()),
                    (RETRY_AFTER_KEY, str(ms)),
                ),
            )
        return key

    def _note(self, key: str, role: str) -> None:
        """Log a limited client, at most every _NOTE_EVERY seconds each (the
        access log has a line per refused call already)."""
        now = self._clock()
        if now - self._noted.get(key, -math.inf) < _NOTE_EVERY:
            return
        if len(self._noted) >= 10_000:
            self._noted.clear()
        self._noted[key] = now
        # An address is not logged: it may be personal data.
        client = key.removeprefix("client:") if key.startswith("client:") else "anonymous"
        log.warning("rpc.rate_limited", client=client, role=role)

    async def _hold_subscription(self, context: Any, key: str, public: bool) -> None:
        cap = self._limits.max_subscriptions_per_client
        held = self._subscriptions.get(key, 0)
        if held >= cap:
            self._on_limited(self._identity(context, public)[1], "subscriptions")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many concurrent log subscriptions: at most {cap} per client",
            )
        self._subscriptions[key] = held + 1  # no await since the check above

    def _release_subscription(self, key: str) -> None:
        held = self._subscriptions.get(key, 0) - 1
        if held > 0:
            self._subscriptions[key] = held
        else:
            self._subscriptions.pop(key, None)

    def _limited(
        self, handler: grpc.RpcMethodHandler, public: bool, method: str
    ) -> grpc.RpcMethodHandler:
        des, ser = handler.request_deserializer, handler.response_serializer
        admit = self._admit
        subscription = method == SUBSCRIBE_METHOD
        if handler.unary_unary and method == BATCH_METHOD:
            inner_batch = handler.unary_unary

            async def batch(request: Any, context: Any) -> Any:
                # A batch beyond MAX_BATCH is refused by the servicer; it costs no more.
                await admit(context, public, min(max(1, len(request.requests)), MAX_BATCH))
                return await inner_batch(request, context)

            return grpc.unary_unary_rpc_method_handler(batch, des, ser)
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                await admit(context, public)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, des, ser)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests: Any, context: Any) -> Any:
                await admit(context, public)  # once per call, not per message
                return await inner_su(requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, des, ser)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                key = await admit(context, public)
                if not subscription:
                    async for response in inner_us(request, context):
                        yield response
                    return
                await self._hold_subscription(context, key, public)
                try:
                    async for response in inner_us(request, context):
                        yield response
                finally:
                    # Also when the client cancels: grpc cancels the call's task.
                    self._release_subscription(key)

            return grpc.unary_stream_rpc_method_handler(unary_stream, des, ser)
        inner_ss = handler.stream_stream

        async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            await admit(context, public)
            async for response in inner_ss(requests, context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
