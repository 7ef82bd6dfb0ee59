"""Keeping replicas current: push subscriptions, pull anti-entropy, in-band
descriptor updates, fork alarms handed to peers, and lookup routing.

A *link* is a partner this node can call (it holds the partner's endpoint
and a ``peer`` token for it). Every pinned origin is followed at every link:
the origin's own link carries it directly, any other link relays it. So a
node reaches an origin through any partner that has its log, and trust never
depends on which one it was (:mod:`credfed.federation.replica`).

Nothing here imports grpc; :class:`PeerLink` is the port the rpc layer
implements.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from credfed.clock import Clock
from credfed.errors import (
    CredfedError,
    EquivocationError,
    ForkedOriginError,
    NotFoundError,
    PreconditionError,
    ProofError,
    TrustError,
    UnavailableError,
    UntrustedSignerError,
)
from credfed.federation.crossborder import LookupAnswer
from credfed.federation.descriptor import encode_descriptor
from credfed.federation.evidence import ForkEvidence, encode_evidence
from credfed.federation.replica import Delivered, LogSource, Replicas
from credfed.models import Envelope
from credfed.statuslog.checkpoint import decode_checkpoint
from credfed.verification import HolderAttribute

log = structlog.get_logger("credfed.federation")


class PeerLink(LogSource, Protocol):
    """Calls to one partner node; every call has a deadline. Failures to
    reach it raise UnavailableError."""

    def subscribe(self, origin: str, from_index: int) -> AsyncIterator[tuple[Envelope, Delivered]]:
        """Checkpoints of ``origin`` with the entries from ``from_index`` on,
        as the partner's copy of that log grows."""
        ...

    async def descriptor(self, origin: str) -> Envelope:
        """The partner's own descriptor (``origin == ""``) or the one it
        pinned for ``origin``."""
        ...

    async def lookup(self, credential_id: str, attribute: HolderAttribute) -> LookupAnswer: ...

    async def report_fork(self, evidence: bytes) -> bool: ...

    async def recognition_rules(self, country: str) -> list[Envelope]:
        """The signed recognition rules of ``country`` the partner holds
        (its own, or a partner's it relays)."""
        ...

    async def close(self) -> None: ...


SaveDescriptor = Callable[[Envelope], None]
#: Takes a partner's signed recognition rules (checks and keeps them).
RulesSink = Callable[[str, list[Envelope]], Awaitable[int]]
Alarm = Callable[[ForkEvidence], Awaitable[None]]


@dataclass(slots=True)
class OriginState:
    """What `credfed status` shows per origin (no personal data)."""

    origin: str
    last_contact: datetime | None = None
    via: str | None = None
    last_error: str | None = None


class Replicator:
    """Runs the subscriptions and the anti-entropy loop of one node."""

    def __init__(
        self,
        replicas: Replicas,
        links: Mapping[str, PeerLink],
        own_country: str,
        clock: Clock,
        *,
        interval: float,
        save_descriptor: SaveDescriptor,
        rules: RulesSink | None = None,
    ) -> None:
        self._replicas = replicas
        self._links = dict(links)
        self._own = own_country
        self._clock = clock
        self._interval = interval
        self._save_descriptor = save_descriptor
        self._rules = rules
        self._states: dict[str, OriginState] = {}
        self._reported: set[tuple[str, str]] = set()  # (link, origin) told of a fork
        self._tasks: list[asyncio.Task[None]] = []
        self.alarms: list[Alarm] = []
        replicas.on_fork = self._forked

    # -- lifecycle ------------------------------------------------------------

    def origins(self) -> list[str]:
        return [o for o in self._replicas.trust.origins() if o != self._own]

    def links(self) -> list[str]:
        return sorted(self._links)

    def start(self) -> None:
        for link in self._links.values():
            for origin in self.origins():
                self._spawn(self._follow(link, origin), f"follow-{origin}-via-{link.name}")
        self._spawn(self._anti_entropy(), "anti-entropy")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for link in self._links.values():
            await link.close()

    # -- push -------------------------------------------------------------------

    async def _follow(self, link: PeerLink, origin: str) -> None:
        backoff = 0.25
        while True:
            if self._replicas.trust.is_forked(origin):
                await asyncio.sleep(self._interval)
                continue
            try:
                # Catch up by pull first (batches fetched in a pipeline), then
                # subscribe from there: the stream carries only what is new,
                # instead of the whole backlog a second time.
                await self._apply(link, origin, await link.checkpoint(origin))
                start = await self._replicas.size(origin)
                async for envelope, delivered in link.subscribe(origin, start):
                    await self._apply(link, origin, envelope, delivered)
                    backoff = 0.25
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a stream failure must not end following
                self._failed(origin, link, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max(self._interval, 0.25))

    # -- pull -------------------------------------------------------------------

    async def _anti_entropy(self) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(self._interval)

    async def sync_once(self) -> None:
        """One anti-entropy pass over every link: descriptors, then every
        origin's checkpoint (catching up whatever a stream missed), then
        fork evidence not yet handed on."""
        for link in self._links.values():
            await self._refresh_descriptor(link, link.name, quiet=True)
            for origin in self.origins():
                if self._replicas.trust.is_forked(origin):
                    continue
                try:
                    await self._apply(link, origin, await link.checkpoint(origin))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # one origin's failure must not stop the pass
                    self._failed(origin, link, exc)
            await self._report_forks(link)
            await self._fetch_rules(link)

    async def _fetch_rules(self, link: PeerLink) -> None:
        """Recognition rules of every pinned country the link holds (its own
        and the ones it relays); each is checked with its country's keys."""
        if self._rules is None:
            return
        for country in sorted({link.name, *self.origins()}):
            try:
                added = await self._rules(country, await link.recognition_rules(country))
            except asyncio.CancelledError:
                raise
            except CredfedError as exc:
                log.debug(
                    "federation.rules_unavailable", country=country, via=link.name, reason=str(exc)
                )
                continue
            if added:
                log.info("federation.rules_received", country=country, via=link.name, rules=added)

    async def _apply(
        self,
        link: PeerLink,
        origin: str,
        envelope: Envelope,
        delivered: Delivered | None = None,
    ) -> None:
        try:
            await self._replicas.apply(origin, envelope, link, delivered)
        except UntrustedSignerError:
            # Perhaps a rotation we have not seen: fetch the descriptor, retry once.
            if not await self._refresh_descriptor(link, origin, quiet=False):
                raise
            await self._replicas.apply(origin, envelope, link, delivered)
        state = self._state(origin)
        state.last_contact, state.via, state.last_error = self._clock(), link.name, None

    async def _refresh_descriptor(self, link: PeerLink, origin: str, *, quiet: bool) -> bool:
        """Fetch ``origin``'s descriptor from ``link`` and accept it if it is
        a valid rotation (signed by a key we trust, higher version)."""
        trust = self._replicas.trust
        current = trust.descriptor(origin)
        if current is None:
            return False
        if trust.is_forked(origin):
            return False  # alarmed once when the fork was recorded; nothing to update
        try:
            envelope = await link.descriptor("" if origin == link.name else origin)
            new = trust.update(envelope, self._clock())
        except (UnavailableError, NotFoundError, PreconditionError) as exc:
            if not quiet:
                log.info("federation.descriptor_unavailable", origin=origin, via=link.name)
            self._state(origin).last_error = str(exc)
            return False
        except TrustError as exc:  # rollback, untrusted signer, mismatch
            log.warning(
                "federation.descriptor_refused", origin=origin, via=link.name, reason=str(exc)
            )
            return False
        if encode_descriptor(new) == encode_descriptor(current):
            return False
        self._save_descriptor(envelope)
        log.info("federation.descriptor_updated", origin=origin, version=new.version, via=link.name)
        return True

    # -- forks ------------------------------------------------------------------

    async def _forked(self, evidence: ForkEvidence) -> None:
        log.error(
            "federation.fork",
            origin=evidence.origin,
            first_size=_size(evidence.first),
            second_size=_size(evidence.second),
            action="data of this origin refused until an operator acts",
        )
        for alarm in self.alarms:
            await alarm(evidence)
        for link in self._links.values():
            await self._report_forks(link)

    async def _report_forks(self, link: PeerLink) -> None:
        trust = self._replicas.trust
        for origin in sorted(trust.forked_origins()):
            evidence = trust.evidence(origin)
            if evidence is None or (link.name, origin) in self._reported or origin == link.name:
                continue
            try:
                await link.report_fork(encode_evidence(evidence))
            except CredfedError as exc:
                log.info(
                    "federation.fork_report_failed", origin=origin, to=link.name, reason=str(exc)
                )
                continue
            self._reported.add((link.name, origin))
            log.info("federation.fork_reported", origin=origin, to=link.name)

    # -- lookups ------------------------------------------------------------------

    async def lookup(
        self, country: str, credential_id: str, attribute: HolderAttribute
    ) -> LookupAnswer:
        """Ask ``country``'s node directly if linked, else through each other
        link in turn (a relay forwards once, to its own link)."""
        direct = self._links.get(country)
        routes = [direct] if direct is not None else []
        routes += [link for name, link in sorted(self._links.items()) if name != country]
        for link in routes:
            try:
                return await link.lookup(credential_id, attribute)
            except (UnavailableError, PreconditionError):
                continue
        raise UnavailableError(
            f"{country} did not answer, directly or through a partner; no cached record"
        )

    async def forward_lookup(
        self, country: str, credential_id: str, attribute: HolderAttribute
    ) -> LookupAnswer:
        """A partner's lookup relayed to ``country`` over our direct link only
        (one hop, so relays cannot loop)."""
        link = self._links.get(country)
        if link is None:
            raise PreconditionError(f"credential_id: this node has no link to {country}")
        return await link.lookup(credential_id, attribute)

    # -- status -------------------------------------------------------------------

    def states(self) -> list[OriginState]:
        return [self._state(o) for o in self.origins()]

    def _state(self, origin: str) -> OriginState:
        return self._states.setdefault(origin, OriginState(origin))

    def _failed(self, origin: str, link: PeerLink, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, CredfedError) else type(exc).__name__
        self._state(origin).last_error = f"via {link.name}: {reason}"
        if isinstance(exc, EquivocationError | ForkedOriginError):
            return  # alarmed once in _forked
        if isinstance(exc, TrustError | ProofError):
            log.warning("federation.refused", origin=origin, via=link.name, reason=reason)
        elif isinstance(exc, CredfedError):
            log.debug("federation.unavailable", origin=origin, via=link.name, reason=reason)
        else:
            log.warning("federation.error", origin=origin, via=link.name, error=reason)


def _size(envelope: Envelope) -> int:
    return decode_checkpoint(envelope.payload).tree_size
