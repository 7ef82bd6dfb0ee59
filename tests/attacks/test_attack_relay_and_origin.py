"""Federation under faults: a node down during a large catch-up, a malicious
relay (rolled-back checkpoints, forged entries, a forged key rotation), an
equivocating origin, an in-band key rotation, and subscribers that never read.

Every node is a real ``credfed serve`` process on a loopback port with its own
SQLite file; the malicious relay is a real grpc server in the test process
that proxies to a real node and tampers with what it forwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import draft
from fednet import (
    ISSUERS,
    STATUS,
    FedNode,
    build,
    cli_status,
    eventually,
    health,
    log_checkpoint,
    log_entries,
    log_events,
    log_offset,
    peer_token,
    register_issuer,
    start_all,
    stop_all,
)
from grpc_health.v1 import health_pb2

from credfed import config as cfg
from credfed.bootstrap import init_node
from credfed.clock import utc_now
from credfed.crypto.envelope import envelope_from_json
from credfed.crypto.keys import SigningKey
from credfed.federation.descriptor import (
    Descriptor,
    KeyEntry,
    decode_descriptor,
    fingerprint,
    sign_descriptor,
)
from credfed.federation.local import own_descriptor
from credfed.federation.peers import PeerDirectory
from credfed.models import Checkpoint, Envelope
from credfed.rpc import convert
from credfed.statuslog.checkpoint import sign_checkpoint
from credfed.storage.sqlite import SqliteStore
from credfed.v1 import common_pb2 as c
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow

FEDERATION = "credfed.v1.FederationService"
SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING
#: The relay needs no token from its victims; any well-formed one will do.
ANY_TOKEN = "cf_the-relay-checks-no-token"


# -- a malicious relay -----------------------------------------------------------


class EvilRelay(federation_pb2_grpc.FederationServiceServicer):  # type: ignore[misc]
    """Country "AT": relays DE's log from the real DE node (with a peer token
    DE issued) and tampers with it as told. Counts what it served."""

    def __init__(self, upstream: str, token: str, own: Envelope) -> None:
        # Its own subchannels: grpc shares them between channels to one
        # address, and this one's reconnect backoff while DE restarts must not
        # fail the test's own calls to DE fast.
        self._channel = grpc.aio.insecure_channel(
            upstream, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self._up = federation_pb2_grpc.FederationServiceStub(self._channel)
        self._md = (("authorization", f"Bearer {token}"),)
        self.own = own
        #: Serve this (old, genuine) checkpoint of DE instead of the latest.
        self.rollback_to: c.SignedCheckpoint | None = None
        #: Serve this (forged) checkpoint of DE instead of the latest.
        self.forged_checkpoint: c.SignedCheckpoint | None = None
        #: Serve these (forged) descriptors of DE in turn.
        self.forged_descriptors: list[c.Envelope] = []
        #: Turn revocations back into active entries in the leaves relayed.
        self.flip_revocations = False
        self.served: Counter[str] = Counter()
        self.server: Any = None
        self.port = 0

    async def start(self) -> str:
        self.server = grpc.aio.server()
        federation_pb2_grpc.add_FederationServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
        await self._channel.close()

    def _pinned(self) -> c.SignedCheckpoint | None:
        return self.rollback_to or self.forged_checkpoint

    def _tamper(self, leaf: bytes) -> bytes:
        if self.flip_revocations and b'"status":"revoked"' in leaf:
            self.served["flipped"] += 1
            return leaf.replace(b'"status":"revoked"', b'"status":"active"')
        return leaf

    async def _proxy(self, method: Any, request: Any, context: Any) -> Any:
        try:
            return await method(request, metadata=self._md, timeout=5)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")

    @staticmethod
    async def _only_de(request: Any, context: Any) -> None:
        if request.origin != "DE":
            await context.abort(grpc.StatusCode.NOT_FOUND, "this relay serves DE only")

    async def GetNodeDescriptor(self, request: Any, context: Any) -> Any:
        if request.origin in ("", "AT"):
            return f.GetNodeDescriptorResponse(descriptor=convert.envelope(self.own))
        if request.origin == "DE" and self.forged_descriptors:
            n = self.served["forged_descriptor"]
            self.served["forged_descriptor"] += 1
            chosen = self.forged_descriptors[n % len(self.forged_descriptors)]
            return f.GetNodeDescriptorResponse(descriptor=chosen)
        return await self._proxy(self._up.GetNodeDescriptor, request, context)

    async def LookupCredential(self, request: Any, context: Any) -> Any:
        return await self._proxy(self._up.LookupCredential, request, context)

    async def GetLogCheckpoint(self, request: Any, context: Any) -> Any:
        await self._only_de(request, context)
        pinned = self._pinned()
        if pinned is not None:
            self.served["pinned_checkpoint"] += 1
            return f.GetLogCheckpointResponse(checkpoint=pinned)
        return await self._proxy(self._up.GetLogCheckpoint, request, context)

    async def GetLogEntries(self, request: Any, context: Any) -> Any:
        await self._only_de(request, context)
        got = await self._proxy(self._up.GetLogEntries, request, context)
        return f.GetLogEntriesResponse(
            entries=[c.LogEntry(index=e.index, leaf=self._tamper(e.leaf)) for e in got.entries]
        )

    async def GetLogConsistencyProof(self, request: Any, context: Any) -> Any:
        await self._only_de(request, context)
        return await self._proxy(self._up.GetLogConsistencyProof, request, context)

    async def SubscribeLog(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._only_de(request, context)
        call = self._up.SubscribeLog(request, metadata=self._md)
        try:
            while True:
                pinned = self._pinned()
                if pinned is not None:
                    # A stale (or forged) view: that checkpoint, again and again.
                    self.served["pinned_stream"] += 1
                    yield f.SubscribeLogResponse(checkpoint=pinned)
                    await asyncio.sleep(0.2)
                    continue
                message = await call.read()
                if message is grpc.aio.EOF:
                    return
                yield f.SubscribeLogResponse(
                    checkpoint=message.checkpoint,
                    entries=[
                        c.LogEntry(index=e.index, leaf=self._tamper(e.leaf))
                        for e in message.entries
                    ],
                )
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        finally:
            call.cancel()

    async def ReportFork(self, request: Any, context: Any) -> Any:
        return f.ReportForkResponse(newly_recorded=False)


async def at_identity(root: Path) -> Envelope:
    """Country AT's signed descriptor (the relay's identity)."""
    init = await init_node(root / "AT-relay", "AT", "127.0.0.1:0")
    return own_descriptor(init.config, SigningKey.load(init.config.key_path), utc_now())


def pin_and_link(node: FedNode, envelope: Envelope, endpoint: str) -> None:
    """What ``credfed peer add`` + ``peer link`` do at ``node`` (before it starts)."""
    peers = PeerDirectory(node.data_dir, node.country)
    peers.add(envelope, fingerprint(envelope))
    peers.set_link(decode_descriptor(envelope.payload).country, ANY_TOKEN, endpoint)


async def replica_on_disk(node: FedNode, origin: str) -> tuple[int, c.SignedCheckpoint | None]:
    """Replica size and checkpoint of ``origin`` in ``node``'s database (stopped)."""
    store = await SqliteStore.open(cfg.load(node.data_dir).db_path)
    try:
        size = await store.replica_size(origin)
        cp = await store.replica_checkpoint(origin)
        return size, convert.checkpoint(cp) if cp is not None else None
    finally:
        await store.close()


async def replica_leaves_on_disk(node: FedNode, origin: str, indexes: list[int]) -> list[bytes]:
    store = await SqliteStore.open(cfg.load(node.data_dir).db_path)
    try:
        return [(await store.get_replica_entries(origin, i, i + 1))[0] for i in indexes]
    finally:
        await store.close()


async def replica_size_is(node: FedNode, origin: str, token: str, size: int) -> bool:
    return (await log_checkpoint(node, origin, token)).tree_size == size


async def _sizes_seen(node: FedNode, origin: str, token: str, seconds: float) -> set[int]:
    """The sizes of ``node``'s checkpoint of ``origin`` over a while."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.add((await log_checkpoint(node, origin, token)).tree_size)
        await asyncio.sleep(0.05)
    return seen


# -- 1. a node down while its partner appended 10,000 entries -----------------------


async def _bulk_issue(node: FedNode, count: int, per_message: int = 1000) -> list[str]:
    async def messages() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        one = draft(issuer_id=ISSUERS[node.country])
        for _ in range(count // per_message):
            yield r.BulkIssueCredentialsRequest(drafts=[one] * per_message)

    got = await node.registry.BulkIssueCredentials(messages(), metadata=node.md(), timeout=120)
    assert got.checkpoint.tree_size >= count
    return list(got.credential_ids)


async def test_node_down_while_10000_entries_were_appended_catches_up_after_restart(
    tmp_path: Path,
) -> None:
    nodes = await build(tmp_path, ["DE", "FR"], [("DE", "FR"), ("FR", "DE")])
    de, fr = nodes["DE"], nodes["FR"]
    de_to_fr = de.tokens["peer:FR"]  # FR issued it: FR's federation service as a partner sees it
    fr_to_de = fr.tokens["peer:DE"]  # DE issued it
    try:
        await start_all(de, fr)
        await register_issuer(de)
        first = await de.issue()
        await eventually(lambda: replica_size_is(fr, "DE", de_to_fr, 1))
        await stop_all(fr)

        ids = await _bulk_issue(de, 10_000)
        assert len(ids) == 10_000
        size = await de.log_size()
        assert size == 10_001

        await start_all(fr)
        await eventually(lambda: replica_size_is(fr, "DE", de_to_fr, size), timeout=30)
        last = await fr.verify(ids[-1])
        assert last.status == STATUS.CREDENTIAL_STATUS_ACTIVE
        assert last.provenance.signature_checked
        assert last.provenance.source in (v.STATUS_SOURCE_REPLICA, v.STATUS_SOURCE_ORIGIN)
        assert last.checkpoint.tree_size >= 10_000
        assert (await fr.verify(first)).status == STATUS.CREDENTIAL_STATUS_ACTIVE

        sample = [0, 1, 999, 1000, 1001, 4096, 7777, size - 2, size - 1]
        originals = [(await log_entries(de, "DE", fr_to_de, i, i + 1))[0] for i in sample]
        relayed = [(await log_entries(fr, "DE", de_to_fr, i, i + 1))[0] for i in sample]
        assert relayed == originals
        await stop_all(fr)

        held, checkpoint = await replica_on_disk(fr, "DE")
        assert held == size
        assert checkpoint is not None and checkpoint.tree_size == size
        assert await replica_leaves_on_disk(fr, "DE", sample) == originals
    finally:
        await stop_all(*nodes.values())


# -- 2. a malicious relay ----------------------------------------------------------


async def test_a_rolled_back_checkpoint_from_a_relay_is_rejected(tmp_path: Path) -> None:
    nodes = await build(tmp_path, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")])
    de, fr = nodes["DE"], nodes["FR"]
    de_to_fr, fr_to_de = de.tokens["peer:FR"], fr.tokens["peer:DE"]
    relay = EvilRelay(de.target, fr_to_de, await at_identity(tmp_path))
    try:
        pin_and_link(fr, relay.own, await relay.start())
        await start_all(de, fr)
        await register_issuer(de)
        for _ in range(3):
            await de.issue()
        await eventually(lambda: replica_size_is(fr, "DE", de_to_fr, 3))
        old = await log_checkpoint(de, "DE", fr_to_de)
        assert old.tree_size == 3

        later = [await de.issue() for _ in range(3)]
        await eventually(lambda: replica_size_is(fr, "DE", de_to_fr, 6))
        relay.rollback_to = old  # from now on the relay shows DE as it was at size 3
        offset = log_offset(fr)

        seen: set[int] = set()

        async def served_enough() -> bool:
            seen.add((await log_checkpoint(fr, "DE", de_to_fr)).tree_size)
            return relay.served["pinned_checkpoint"] >= 3 and relay.served["pinned_stream"] >= 3

        await eventually(served_enough, timeout=15)
        seen |= await _sizes_seen(fr, "DE", de_to_fr, seconds=1.0)
        assert seen == {6}, f"FR's checkpoint of DE went back: {sorted(seen)}"
        result = await fr.verify(later[-1])
        assert result.status == STATUS.CREDENTIAL_STATUS_ACTIVE
        assert result.checkpoint.tree_size >= 6
        # An old but honest checkpoint is no fork.
        assert await _federation_degraded_only_by_at(fr)
        report = await cli_status(fr)
        (origin,) = [o for o in report["origins"] if o["origin"] == "DE"]
        assert not origin["forked"]
        # The only alarm: the relay's own country never sent FR any data.
        assert [a.split(":")[0:2] for a in report["alarms"]] == [["STALE", " AT"]]
        assert log_events(fr, "federation.fork", offset) == []
        await stop_all(fr)

        held, checkpoint = await replica_on_disk(fr, "DE")
        assert held == 6
        assert checkpoint is not None and checkpoint.tree_size == 6
    finally:
        await stop_all(*nodes.values())
        await relay.stop()


async def test_a_forged_entry_from_a_relay_is_rejected(tmp_path: Path) -> None:
    # FR pins DE but reaches its log only through the relay AT; DE calls FR
    # (the link DE -> FR gives the test a peer token FR issued).
    nodes = await build(tmp_path, ["DE", "FR"], [("DE", "FR")])
    de, fr = nodes["DE"], nodes["FR"]
    de_to_fr = de.tokens["peer:FR"]
    relay = EvilRelay(de.target, await peer_token(de, "node AT"), await at_identity(tmp_path))
    relay.flip_revocations = True
    try:
        pin_and_link(fr, relay.own, await relay.start())
        await start_all(de, fr)
        await register_issuer(de)
        cid = await de.issue()
        await eventually(lambda: replica_size_is(fr, "DE", de_to_fr, 1))
        offset = log_offset(fr)
        tampered_index = await de.revoke(cid) - 1  # the revocation's entry
        assert tampered_index == 1
        refused = await eventually(
            lambda: asyncio.sleep(
                0, _events(fr, "federation.refused", offset, origin="DE", level="warning")
            ),
            timeout=15,
        )
        assert refused[0]["via"] == "AT"
        assert relay.served["flipped"] >= 1
        # Three more anti-entropy passes through the relay: never the forged entry.
        assert await _sizes_seen(fr, "DE", de_to_fr, seconds=1.5) == {tampered_index}
        await stop_all(fr)

        held, checkpoint = await replica_on_disk(fr, "DE")
        assert held == tampered_index
        assert checkpoint is not None and checkpoint.tree_size == tampered_index
    finally:
        await stop_all(*nodes.values())
        await relay.stop()


def _events(node: FedNode, event: str, offset: int, **match: str) -> list[dict[str, Any]]:
    return [
        e
        for e in log_events(node, event, offset)
        if all(e.get(k) == value for k, value in match.items())
    ]


async def _federation_degraded_only_by_at(node: FedNode) -> bool:
    """FederationService serves, or is down only because the relay's own
    country AT never sends its log (stale once the start-up grace is over)."""
    reasons = {
        e["reason"]
        for e in log_events(node, "health.changed")
        if e["service"] == FEDERATION and not e["serving"]
    }
    serving = await health(node, FEDERATION) == SERVING
    return reasons <= {"replica of AT stale: no checkpoint received yet"} and (
        serving or bool(reasons)
    )


# -- 3. an equivocating origin ------------------------------------------------------


async def _forked_at(node: FedNode) -> bool:
    report = await cli_status(node)
    de = [o for o in report["origins"] if o["origin"] == "DE"]
    return bool(de and de[0]["forked"] and any(a.startswith("FORK: DE") for a in report["alarms"]))


async def _federation_down(node: FedNode) -> bool:
    return await health(node, FEDERATION) == NOT_SERVING


async def _equivocation_net(tmp_path: Path) -> dict[str, FedNode]:
    # FR sees DE only; PL sees DE2 (DE's twin) as "DE" and FR. DE and DE2 pin
    # no one; FR and PL pin DE (both copies carry the same descriptor).
    return await build(
        tmp_path,
        ["DE", "DE2", "FR", "PL"],
        [("FR", "DE"), ("PL", "DE2"), ("PL", "FR")],
        pins=[("FR", "DE"), ("PL", "DE"), ("PL", "FR")],
        twins={"DE2": "DE"},
    )


async def test_an_equivocating_origin_is_detected_by_two_nodes_one_only_through_the_others_proof(
    tmp_path: Path,
) -> None:
    nodes = await _equivocation_net(tmp_path)
    de, de2, fr, pl = nodes["DE"], nodes["DE2"], nodes["FR"], nodes["PL"]
    try:
        await start_all(de, de2, fr, pl)
        await register_issuer(de)
        await register_issuer(de2)
        cid = await de.issue()
        await de2.issue(given_names="Petra")  # same size, another root
        await eventually(lambda: _forked_at(pl), timeout=20)
        await eventually(lambda: _forked_at(fr), timeout=20)
        for node in (pl, fr):
            await eventually(functools.partial(_federation_down, node), timeout=10)
            assert await health(node, "") == SERVING
        # PL saw both logs at size 1; FR learnt of the fork only from PL's
        # evidence (ReportFork over the link PL -> FR): it never saw DE2.
        (seen,) = log_events(pl, "federation.fork")
        assert (seen["origin"], seen["first_size"], seen["second_size"]) == ("DE", 1, 1)
        (told,) = log_events(fr, "federation.fork")
        assert told["origin"] == "DE"
        assert _events(fr, "rpc", 0, method=f"/{FEDERATION}/ReportFork", code="OK")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await fr.verify(cid)
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await stop_all(*nodes.values())


async def test_an_equivocating_origin_is_detected_when_the_forked_logs_differ_in_size(
    tmp_path: Path,
) -> None:
    """The harder order, made deterministic: PL first accepts DE's log at size
    1 (through FR) while DE2 is down; then DE2 comes back with a size-3 log
    that does not extend it. A larger checkpoint whose consistency proof from
    the accepted one fails must be recognised as a fork, not only refused."""
    nodes = await _equivocation_net(tmp_path)
    de, de2, fr, pl = nodes["DE"], nodes["DE2"], nodes["FR"], nodes["PL"]
    probe = await peer_token(pl)
    try:
        await start_all(de2)
        await register_issuer(de2)
        for _ in range(3):
            await de2.issue(given_names="Petra")
        await stop_all(de2)
        await start_all(de, fr, pl)
        await register_issuer(de)
        await de.issue()
        await eventually(lambda: replica_size_is(pl, "DE", probe, 1), timeout=20)
        await start_all(de2)
        await eventually(lambda: _forked_at(pl), timeout=20)
        (seen,) = log_events(pl, "federation.fork")
        assert {seen["first_size"], seen["second_size"]} == {1, 3}
        await eventually(lambda: _federation_down(pl), timeout=10)
        await eventually(lambda: _forked_at(fr), timeout=20)
    finally:
        await stop_all(*nodes.values())


async def test_a_forked_origin_is_alarmed_once_not_warned_about_on_every_anti_entropy_pass(
    tmp_path: Path,
) -> None:
    """Once DE is proven forked, its data is refused by design; the alarm is
    raised once (``federation.fork``). Anti-entropy must not then log a
    ``federation.descriptor_refused`` warning for it on every pass."""
    nodes = await _equivocation_net(tmp_path)
    de, de2, fr, pl = nodes["DE"], nodes["DE2"], nodes["FR"], nodes["PL"]
    try:
        await start_all(de, de2, fr, pl)
        await register_issuer(de)
        await register_issuer(de2)
        await de.issue()
        await de2.issue(given_names="Petra")
        await eventually(lambda: _forked_at(fr), timeout=20)
        offsets = {node.country: log_offset(node) for node in (fr, pl)}
        await asyncio.sleep(8 * 0.5)  # eight anti-entropy passes (FAST.sync_interval)
        for node in (fr, pl):
            noise = _events(node, "federation.descriptor_refused", offsets[node.country])
            assert len(noise) <= 1, (
                f"{node.country} warned {len(noise)} times: {noise[0]['reason']!r}"
            )
    finally:
        await stop_all(*nodes.values())


# -- 4. key rotation, in band and forged ------------------------------------------------


def _pinned_version(node: FedNode, origin: str) -> int:
    envelope = envelope_from_json((node.data_dir / "peers" / f"{origin}.json").read_bytes())
    return decode_descriptor(envelope.payload).version


async def _pinned_version_is(node: FedNode, origin: str, version: int) -> bool:
    return _pinned_version(node, origin) == version


def _forged_rotation(current: Descriptor, intruder: SigningKey) -> list[c.Envelope]:
    """DE's "version 3" adding a key of the intruder's, signed by that key; and
    the same signed by the intruder but claiming a DE key id."""
    now = utc_now()
    forged = dataclasses.replace(
        current,
        keys=(*current.keys, KeyEntry(intruder.key_id, intruder.verifying_key(), now, None)),
        version=current.version + 1,
        issued_at=now,
    )
    honest_id = sign_descriptor(intruder, forged)
    spoofed_id = dataclasses.replace(honest_id, key_id=current.keys[-1].key_id)
    return [convert.envelope(honest_id), convert.envelope(spoofed_id)]


async def test_key_rotation_is_accepted_in_band_and_a_rotation_signed_by_an_untrusted_key_is_refused(  # noqa: E501
    tmp_path: Path,
) -> None:
    nodes = await build(tmp_path, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")])
    de, fr = nodes["DE"], nodes["FR"]
    relay = EvilRelay(de.target, await peer_token(de, "node AT"), await at_identity(tmp_path))
    try:
        pin_and_link(fr, relay.own, await relay.start())
        await start_all(de, fr)
        await register_issuer(de)
        before = await de.issue()
        await eventually(lambda: fr.verify(before))
        await stop_all(de)

        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "credfed.cli", "key", "rotate", "--data-dir", str(de.data_dir)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        await start_all(de)
        await eventually(de.log_size)
        after = await de.issue()

        result = await eventually(lambda: fr.verify(after), timeout=20)
        assert result.status == STATUS.CREDENTIAL_STATUS_ACTIVE
        assert result.provenance.signature_checked
        new_key = decode_descriptor((await _own(de)).payload).keys[-1].key_id
        assert result.checkpoint.envelope.key_id == new_key
        # FR's replica holds DE's checkpoint signed by the new key.
        size = await de.log_size()
        de_to_fr = de.tokens["peer:FR"]
        await eventually(lambda: replica_size_is(fr, "DE", de_to_fr, size), timeout=10)
        replica = await log_checkpoint(fr, "DE", de_to_fr)
        assert replica.envelope.key_id == new_key
        await eventually(functools.partial(_pinned_version_is, fr, "DE", 2), timeout=10)
        assert (await fr.verify(before)).status == STATUS.CREDENTIAL_STATUS_ACTIVE

        # Now the relay claims DE rotated to a key DE never vouched for, and
        # serves checkpoints signed by it.
        v2 = decode_descriptor(
            envelope_from_json((fr.data_dir / "peers" / "DE.json").read_bytes()).payload
        )
        intruder = SigningKey.generate()
        forged = sign_checkpoint(
            intruder,
            Checkpoint(
                origin="DE", tree_size=size + 5, root_hash=b"\x07" * 32, timestamp=utc_now()
            ),
        )
        relay.forged_descriptors = _forged_rotation(v2, intruder)
        relay.forged_checkpoint = convert.checkpoint(forged)
        offset = log_offset(fr)

        async def refused() -> bool:
            return (
                relay.served["forged_descriptor"] >= 2
                and bool(_events(fr, "federation.descriptor_refused", offset, origin="DE"))
                and bool(_events(fr, "federation.refused", offset, origin="DE", via="AT"))
            )

        await eventually(refused, timeout=15)
        assert _pinned_version(fr, "DE") == 2
        assert (await fr.verify(after)).status == STATUS.CREDENTIAL_STATUS_ACTIVE
        assert await _federation_degraded_only_by_at(fr)
    finally:
        await stop_all(*nodes.values())
        await relay.stop()


async def _own(node: FedNode) -> Envelope:
    config = cfg.load(node.data_dir)
    return own_descriptor(config, SigningKey.load(config.key_path), utc_now())


# -- 5. subscribers that never read ----------------------------------------------------


#: Entries each stalled subscriber is owed (about 1.5 MB on the wire).
BACKLOG = 10_000
#: With BDP probing off, grpc takes 64 KiB of a stream its client does not
#: read (the HTTP/2 window); then the server's writes wait for a read.
SUBSCRIBER_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)]
#: Issue-and-revoke rounds measured while the subscribers stall.
CHANGES = 200


async def test_a_slow_subscriber_does_not_hold_up_the_origin(tmp_path: Path) -> None:
    """20 partners subscribe to DE's log from index 0 and never read; each
    stream stalls with megabytes to send while DE serves its clients and FR."""
    nodes = await build(tmp_path, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")])
    de, fr = nodes["DE"], nodes["FR"]
    de_to_fr, fr_to_de = de.tokens["peer:FR"], fr.tokens["peer:DE"]
    channels: list[Any] = []
    streams: list[Any] = []
    try:
        await start_all(de, fr)
        await register_issuer(de)
        await _bulk_issue(de, BACKLOG)
        for _ in range(20):
            # One connection per subscriber, as 20 partners would have.
            channel = grpc.aio.insecure_channel(de.target, options=SUBSCRIBER_OPTIONS)
            channels.append(channel)
            call = federation_pb2_grpc.FederationServiceStub(channel).SubscribeLog(
                f.SubscribeLogRequest(origin="DE", from_index=0),
                metadata=(("authorization", f"Bearer {fr_to_de}"),),
                timeout=120,
            )
            streams.append(call)
        for call in streams:
            await asyncio.wait_for(call.initial_metadata(), 10)  # open, and never read

        latencies = []
        last = ""
        for _ in range(CHANGES):
            t0 = time.perf_counter()
            last = await de.issue()
            latencies.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await de.revoke(last)
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        assert p95 < 1.0, f"p95 {p95:.3f}s, max {latencies[-1]:.3f}s"
        size = await de.log_size()
        assert size == BACKLOG + 2 * CHANGES
        await eventually(lambda: replica_size_is(fr, "DE", de_to_fr, size), timeout=10)
        revoked = await fr.verify(last)
        assert revoked.status == STATUS.CREDENTIAL_STATUS_REVOKED

        # The stalled streams are still open, and one of them, read now,
        # delivers everything in order: far more than grpc could have buffered.
        assert not any(call.done() for call in streams), "a stream was dropped"
        backlog, expected = 0, 0
        while expected < size:
            message = await asyncio.wait_for(streams[0].read(), 10)
            backlog += message.ByteSize()
            for entry in message.entries:
                assert entry.index == expected
                expected += 1
        assert backlog > 16 * 64 * 2**10, f"only {backlog} bytes: the streams never stalled"
    finally:
        for call in streams:
            call.cancel()
        for channel in channels:
            await channel.close()
        await stop_all(*nodes.values())
