"""Prometheus metrics of one node, served over plain HTTP on ``[metrics] listen``.

Label values are method names, status codes, roles, country codes and
outcome enums only: never a credential id, a name, a token or a client name
(the endpoint is unauthenticated, see ``Config.metrics_listen``).

Each node has its own registry, not prometheus_client's global one: tests
run several nodes in one process.

Counters are updated on the event loop, on the hot path, through children
cached per label set (a dict lookup and an increment). The node's state
(replicas, its own log, subscribers, health) is sampled at scrape time by
:class:`NodeCollector` *on the event loop*: the HTTP server answers in its
own threads, and the dicts it reads are the loop's, changed by it at any
time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from credfed import logging as clog
from credfed.config import split_host_port
from credfed.errors import ConfigError, NotFoundError
from credfed.verification import StatusSource, Verification

if TYPE_CHECKING:
    from credfed.node import Node

#: 0.2 ms (a health check) to 5 s (a call's deadline is longer, but a call
#: this slow is an incident whatever its exact time).
DURATION_BUCKETS: Final = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
#: How long a scrape waits for the event loop to sample the node's state.
SAMPLE_TIMEOUT: Final = 5.0
#: Where an answer's status came from (``credfed_verify_results_total``).
_SOURCES: Final = {
    StatusSource.REPLICA: "replica",
    StatusSource.CACHED_RECORD: "cached_record",
}
#: Health is reported by a monitor: service name -> (serving, reason).
HealthReport = Callable[[], Mapping[str, tuple[bool, str]]]

log = clog.get("credfed.rpc.metrics")


class Metrics:
    """The counters the RPC layer feeds, and the node's registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        self._requests = Counter(
            "credfed_rpc_requests",
            "RPCs answered, by method and status code (streams when they end).",
            ["method", "code"],
            registry=reg,
        )
        self._duration = Histogram(
            "credfed_rpc_duration_seconds",
            "RPC duration, by method (streams: their whole lifetime).",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self._verify = Counter(
            "credfed_verify_results",
            "Verify answers and VerifyBatch items: status ACTIVE..EXPIRED or UNKNOWN "
            "(stale), or the error code (source none); source local (this node's "
            "log), replica, lookup (asked the origin) or cached_record.",
            ["status", "source"],
            registry=reg,
        )
        self._limited = Counter(
            "credfed_rate_limited",
            "Calls refused by the rate limits: reason rate, batch (larger than the "
            "burst) or subscriptions (too many concurrent SubscribeLog calls).",
            ["role", "reason"],
            registry=reg,
        )
        self._forks = Counter(
            "credfed_fork_alarms", "Fork alarms raised since the node started.", registry=reg
        )
        ProcessCollector(registry=reg)
        self._verify_children: dict[tuple[str, str], Callable[[], None]] = {}
        self._limited_children: dict[tuple[str, str], Callable[[], None]] = {}

    def rpc(self, method: str) -> RpcRecorder:
        """The recorder of one method's calls (kept by the caller, per method)."""
        return RpcRecorder(self._requests, self._duration, method)

    def verification(self, own_origin: str) -> VerifyOutcomes:
        return VerifyOutcomes(self, own_origin)

    def verified(self, status: str, source: str) -> None:
        inc = self._verify_children.get((status, source))
        if inc is None:
            inc = self._verify.labels(status, source).inc
            self._verify_children[status, source] = inc
        inc()

    def rate_limited(self, role: str, reason: str) -> None:
        inc = self._limited_children.get((role, reason))
        if inc is None:
            inc = self._limited.labels(role, reason).inc
            self._limited_children[role, reason] = inc
        inc()

    async def fork_alarm(self, evidence: object = None) -> None:
        """A Replicator alarm (see ``Replicator.alarms``)."""
        self._forks.inc()

    def serve(self, listen: str) -> Endpoint:
        """Serve the registry over HTTP on ``listen`` (see :func:`serve`)."""
        return serve(listen, self.registry)

    def watch(self, node: Node, health: HealthReport | None = None) -> None:
        """Export ``node``'s state, sampled on the running event loop."""
        loop = asyncio.get_running_loop()
        self.registry.register(NodeCollector(lambda: sample(node, health), loop, SAMPLE_TIMEOUT))


class RpcRecorder:
    """Counts one method's calls by code and times them."""

    __slots__ = ("_codes", "_method", "_observe", "_requests")

    def __init__(self, requests: Counter, duration: Histogram, method: str) -> None:
        self._requests = requests
        self._method = method
        self._observe = duration.labels(method).observe
        self._codes: dict[str, Callable[[], None]] = {}

    def __call__(self, code: str, seconds: float) -> None:
        self._observe(seconds)
        inc = self._codes.get(code)
        if inc is None:  # at most one per status code
            inc = self._codes[code] = self._requests.labels(self._method, code).inc
        inc()


class VerifyOutcomes:
    """What the VerificationServicer reports per answer (see servicers)."""

    __slots__ = ("_metrics", "_own")

    def __init__(self, metrics: Metrics, own_origin: str) -> None:
        self._metrics = metrics
        self._own = own_origin

    def found(self, found: Verification) -> None:
        status = "UNKNOWN" if found.status is None else found.status.name
        source = _SOURCES.get(found.source)
        if source is None:  # ORIGIN: this node's own log, or a fresh lookup at the origin
            source = "local" if found.record.origin == self._own else "lookup"
        self._metrics.verified(status, source)

    def failed(self, code: grpc.StatusCode) -> None:
        self._metrics.verified(code.name, "none")


# -- node state, sampled at scrape time ------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginSample:
    origin: str
    forked: bool
    #: Entries of the origin's log held (may run ahead of the checkpoint
    #: during a catch-up; see credfed.federation.replica).
    size: int
    #: None: no checkpoint of the origin held yet (then no lag either).
    checkpoint_size: int | None
    lag_seconds: float | None
    #: None: never reached since the node started.
    last_contact_seconds: float | None


@dataclass(frozen=True, slots=True)
class NodeSample:
    #: None: the log has no checkpoint yet.
    log_size: int | None
    checkpoint_age_seconds: float | None
    origins: list[OriginSample]
    subscribers: int
    health: dict[str, bool]


async def sample(node: Node, health: HealthReport | None = None) -> NodeSample:
    """The node's state now. In memory, but for one indexed read per
    replicated origin (the entries held; ``max(idx)`` on the primary key)."""
    now = node.now()
    try:
        own = await node.verifier.checkpoint()  # the store keeps the latest in memory
    except NotFoundError:
        log_size, age = None, None
    else:
        log_size = own.checkpoint.tree_size
        age = (now - own.checkpoint.timestamp).total_seconds()
    trust = node.replicas.trust
    replicator = node.replicator
    contacts = (
        {s.origin: s.last_contact for s in replicator.states()} if replicator is not None else {}
    )
    origins = []
    for origin in trust.origins():
        if origin == node.config.country:
            continue
        latest = trust.latest(origin)
        contact = contacts.get(origin)
        origins.append(
            OriginSample(
                origin=origin,
                forked=trust.is_forked(origin),
                size=await node.replicas.size(origin),
                checkpoint_size=None if latest is None else latest.checkpoint.tree_size,
                lag_seconds=(
                    None if latest is None else (now - latest.checkpoint.timestamp).total_seconds()
                ),
                last_contact_seconds=(None if contact is None else (now - contact).total_seconds()),
            )
        )
    report = health() if health is not None else {}
    return NodeSample(
        log_size=log_size,
        checkpoint_age_seconds=age,
        origins=origins,
        subscribers=node.log_server.subscribers,
        health={service: serving for service, (serving, _) in report.items()},
    )


class NodeCollector(Collector):
    """Families built from a :func:`sample` taken on ``loop`` per scrape."""

    def __init__(
        self,
        take: Callable[[], Coroutine[Any, Any, NodeSample]],
        loop: asyncio.AbstractEventLoop,
        timeout: float,
    ) -> None:
        self._take = take
        self._loop = loop
        self._timeout = timeout

    def describe(self) -> Iterable[Metric]:
        # Registering must not sample: it runs on the loop, which would wait
        # for itself. Names are not checked for clashes; they are fixed here.
        return []

    def collect(self) -> Iterable[Metric]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("scrape the metrics from another thread than the node's loop")
        try:
            taken = asyncio.run_coroutine_threadsafe(self._take(), self._loop)
            got = taken.result(self._timeout)
        except Exception as exc:  # a loop too busy or closing: the rest is still served
            log.warning("metrics.sample_failed", task="metrics", error=type(exc).__name__)
            return []
        return list(families(got))


def families(s: NodeSample) -> Iterator[Metric]:
    g = GaugeMetricFamily
    own_size = g("credfed_log_size", "Entries in this node's status log.")
    own_age = g(
        "credfed_log_checkpoint_age_seconds", "Age of this node's newest signed checkpoint."
    )
    if s.log_size is not None:
        own_size.add_metric([], s.log_size)
    if s.checkpoint_age_seconds is not None:
        own_age.add_metric([], s.checkpoint_age_seconds)
    size = g("credfed_replica_size", "Entries held of the origin's log.", labels=["origin"])
    cp = g(
        "credfed_replica_checkpoint_size",
        "Tree size of the origin's newest checkpoint held (verified, served to partners).",
        labels=["origin"],
    )
    lag = g(
        "credfed_replica_lag_seconds",
        "Age of the origin's newest checkpoint held (by the origin's signed time).",
        labels=["origin"],
    )
    contact = g(
        "credfed_replica_last_contact_seconds",
        "Seconds since the origin's log was last received from a partner "
        "(absent: not since the node started).",
        labels=["origin"],
    )
    forked = g(
        "credfed_origin_forked",
        "1: the origin is proven to have signed two inconsistent checkpoints.",
        labels=["origin"],
    )
    for o in s.origins:
        size.add_metric([o.origin], o.size)
        forked.add_metric([o.origin], 1 if o.forked else 0)
        if o.checkpoint_size is not None:
            cp.add_metric([o.origin], o.checkpoint_size)
        if o.lag_seconds is not None:
            lag.add_metric([o.origin], o.lag_seconds)
        if o.last_contact_seconds is not None:
            contact.add_metric([o.origin], o.last_contact_seconds)
    subscribers = g("credfed_subscribers", "SubscribeLog streams being served now.")
    subscribers.add_metric([], s.subscribers)
    health = g(
        "credfed_health_serving",
        "1: the service reports SERVING (service server: the node as a whole).",
        labels=["service"],
    )
    for service, serving in sorted(s.health.items()):
        health.add_metric([service or "server"], 1 if serving else 0)
    yield from (own_size, own_age, size, cp, lag, contact, forked, subscribers, health)


# -- the HTTP endpoint --------------------------------------------------------


@dataclass(slots=True)
class Endpoint:
    """prometheus_client's HTTP server, in its own (daemon) threads."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    async def stop(self) -> None:
        # shutdown() waits for the serving loop's next poll (up to 0.5 s).
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(listen: str, registry: CollectorRegistry) -> Endpoint:
    """Serve ``registry`` on ``listen`` (HOST:PORT, port 0: any free one)."""
    host, port = split_host_port(listen, "metrics.listen")
    try:
        server, thread = start_http_server(port, host, registry=registry)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"metrics.listen: cannot listen on {listen} ({reason})") from exc
    return Endpoint(server, thread)
