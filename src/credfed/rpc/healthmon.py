"""The node's grpc.health.v1 statuses, with reasons.

:class:`HealthMonitor` owns the statuses the health servicer answers: it
re-checks the node every ``interval`` seconds (and at once on a fork alarm)
and sets each service SERVING or NOT_SERVING as :func:`decide` says.

==========================  =================  ===================================
condition                   NOT_SERVING        reason
==========================  =================  ===================================
the write probe fails       "",                store not writable: database is
                            RegistryService    locked
the read probe fails        all four           store not readable: <SQLite's
                                               words>
origin XX forked            FederationService  origin XX forked (evidence in
                                               store)
replica of XX older than    FederationService  replica of XX stale: newest
its maximum staleness                          checkpoint 1234 s old (max 900 s)
no checkpoint of XX yet     FederationService  replica of XX stale: no
(after the start-up grace)                     checkpoint received yet
==========================  =================  ===================================

Why so:

* ``""`` (the node as a whole) is what Docker and Kubernetes probe, and a
  NOT_SERVING node gets restarted. So only this node's own faults touch it
  (its store), never a partner's outage or a partner's fork: restarting
  cannot cure those.
* A store that cannot be written stops registrars, not verifiers:
  verification only reads (WAL readers are not blocked by a held write lock).
* A stale or forked replica degrades the federation, not verification:
  local credentials verify as before, and cross-border ones answer UNKNOWN
  (stale) or FAILED_PRECONDITION (forked) by design.
* Forks are permanent until the operator acts (the evidence is in the
  store); statuses recover by themselves once a probe succeeds again or a
  replica is current again.
* Right after start, a pinned origin with no checkpoint yet gets a grace of
  one sync interval plus one call timeout before it is called stale.

Several reasons for one service are joined with ``"; "``. A status change is
logged as ``health.changed`` (service, serving, reason): countries and
SQLite's error words only, never personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

from grpc_health.v1 import health, health_pb2

from credfed import logging as clog
from credfed.clock import Clock
from credfed.config import FederationSettings
from credfed.federation.evidence import ForkEvidence
from credfed.federation.trust import TrustState
from credfed.storage.base import Store
from credfed.v1 import federation_pb2, registry_pb2, verification_pb2
from credfed.verification import age_seconds

NODE = ""
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
VERIFICATION = verification_pb2.DESCRIPTOR.services_by_name["VerificationService"].full_name
FEDERATION = federation_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name
SERVICES = (NODE, REGISTRY, VERIFICATION, FEDERATION)

#: The write probe waits this long for the write lock (another writer holds it).
PROBE_BUSY_TIMEOUT = 1.0
#: A probe not answered within this long (a hung disk) counts as failed.
PROBE_DEADLINE = 5.0

log = clog.get("credfed.health")

Report = dict[str, tuple[bool, str]]


@dataclass(frozen=True, slots=True)
class Observation:
    """What one check saw; :func:`decide` turns it into statuses."""

    #: Why the store refused the write probe, or None.
    write_error: str | None = None
    #: Why the store refused the read probe, or None.
    read_error: str | None = None
    forked: frozenset[str] = frozenset()
    #: Pinned origin -> age in seconds of its newest checkpoint (None: none yet).
    ages: Mapping[str, float | None] = field(default_factory=dict)
    #: Pinned origin -> its maximum staleness in seconds.
    max_ages: Mapping[str, float] = field(default_factory=dict)
    #: Still within the start-up grace: an origin with no checkpoint is not stale yet.
    in_grace: bool = False


def decide(seen: Observation) -> Report:
    """Service -> (serving, reason); the table of the module docstring."""
    reasons: dict[str, list[str]] = {name: [] for name in SERVICES}
    if seen.read_error is not None:
        for name in SERVICES:
            reasons[name].append(f"store not readable: {seen.read_error}")
    if seen.write_error is not None:
        for name in (NODE, REGISTRY):
            reasons[name].append(f"store not writable: {seen.write_error}")
    for origin in sorted(seen.ages):
        if origin in seen.forked:
            continue  # said below; its data is refused, so it goes stale too
        age, limit = seen.ages[origin], seen.max_ages[origin]
        if age is None and not seen.in_grace:
            reasons[FEDERATION].append(f"replica of {origin} stale: no checkpoint received yet")
        elif age is not None and age > limit:
            reasons[FEDERATION].append(
                f"replica of {origin} stale: newest checkpoint {age:.0f} s old (max {limit:.0f} s)"
            )
    for origin in sorted(seen.forked):
        reasons[FEDERATION].append(f"origin {origin} forked (evidence in store)")
    return {name: (not why, "; ".join(why)) for name, why in reasons.items()}


def interval_for(fed: FederationSettings) -> float:
    """Checks every 5 s, or faster with a short checkpoint interval (tests)."""
    return max(0.1, min(5.0, fed.checkpoint_interval / 2))


class HealthMonitor:
    """Keeps ``servicer``'s statuses (see the module docstring)."""

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        store: Store,
        trust: TrustState,
        *,
        own_country: str,
        federation: FederationSettings,
        clock: Clock,
        interval: float | None = None,
    ) -> None:
        self._servicer = servicer
        self._store = store
        self._trust = trust
        self._own = own_country
        self._fed = federation
        self._clock = clock
        self._interval = interval_for(federation) if interval is None else interval
        self._grace = federation.sync_interval + federation.call_timeout
        self._started = time.monotonic()
        self._report: Report = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._write_probe: asyncio.Task[None] | None = None

    def report(self) -> Report:
        """Service ("" for the node) -> (serving, reason or "")."""
        return dict(self._report)

    async def start(self) -> None:
        """Set every status from a first check, then keep checking."""
        self._started = time.monotonic()
        await self.check()
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("health-monitor")

    async def stop(self) -> None:
        for task in (self._task, self._write_probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._write_probe = None

    async def alarm(self, evidence: ForkEvidence | None = None) -> None:
        """A Replicator alarm: re-check now, not at the next tick."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end the monitoring
                log.error("health.check_failed", error=type(exc).__name__)

    async def check(self) -> Report:
        """Observe, decide, and set the statuses that changed."""
        report = decide(await self.observe())
        for name, (serving, reason) in report.items():
            if self._report.get(name) == (serving, reason):
                continue
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await self._servicer.set(name, status)
            if name in self._report or not serving:
                emit = log.info if serving else log.warning
                emit("health.changed", service=name, serving=serving, reason=reason)
        self._report = report
        return report

    async def observe(self) -> Observation:
        trust, now = self._trust, self._clock()
        origins = [o for o in trust.origins() if o != self._own]
        ages: dict[str, float | None] = {}
        for origin in origins:
            latest = trust.latest(origin)
            ages[origin] = None if latest is None else age_seconds(latest, now)
        return Observation(
            write_error=await self._probe_write(),
            read_error=await _probe(self._store.probe_read()),
            forked=trust.forked_origins(),
            ages=ages,
            max_ages={o: self._fed.staleness_for(o) for o in origins},
            in_grace=time.monotonic() - self._started < self._grace,
        )

    async def _probe_write(self) -> str | None:
        # A probe still running from an earlier check (a hung disk) is waited
        # for again, never started twice: threads must not pile up.
        if self._write_probe is None or self._write_probe.done():
            self._write_probe = asyncio.ensure_future(self._store.probe_write(PROBE_BUSY_TIMEOUT))
            # Its outcome may come after this check gave up on it: read it then.
            self._write_probe.add_done_callback(_consume)
        probe = self._write_probe
        await asyncio.wait({probe}, timeout=PROBE_DEADLINE)
        if not probe.done():
            return f"write unanswered after {PROBE_DEADLINE:.0f} s"
        return await _probe(probe)


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # so asyncio does not log it as never retrieved


async def _probe(probe: Awaitable[None]) -> str | None:
    """None if the probe succeeded, else why not (without "sqlite: ")."""
    try:
        await probe
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return (str(exc) or type(exc).__name__).removeprefix("sqlite: ")
    return None
