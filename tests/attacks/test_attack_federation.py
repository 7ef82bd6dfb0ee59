"""Attacks between partner nodes (real ``credfed serve`` processes).

FR pins DE. In most cases FR reaches DE only through a relay ``AT``: a real
grpc server in the test process that forwards FR's calls to DE (with a peer
token DE issued to it) and lies as told - a frozen view, a checkpoint DE
signed with a wrong clock, an answer about another credential. Trust is
never relayed: FR checks everything with DE's pinned keys.

Expected defences (DESIGN.md, flows 2-3; ``credfed.federation``):

- past the origin's ``max_staleness`` a foreign credential's status is
  UNKNOWN, never ACTIVE, whether the origin stopped or a relay froze;
- a checkpoint's signed time cannot make data look fresher than it is;
- a genuine signature, status entry or proof is valid only for the
  credential and the log position it was made for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from fednet import (
    FAST,
    STATUS,
    FedNode,
    build,
    eventually,
    log_checkpoint,
    peer_token,
    register_issuer,
    signing_key,
    start_all,
    stop_all,
)

from credfed.bootstrap import init_node
from credfed.clock import utc_now
from credfed.crypto.keys import SigningKey
from credfed.federation.descriptor import decode_descriptor, fingerprint
from credfed.federation.local import own_descriptor
from credfed.federation.peers import PeerDirectory
from credfed.models import Checkpoint, Envelope
from credfed.rpc import convert
from credfed.statuslog.checkpoint import sign_checkpoint
from credfed.v1 import common_pb2 as c
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow

#: Status goes UNKNOWN this long after the last checkpoint DE signed that
#: FR saw (DE re-signs every second: FAST.checkpoint_interval).
MAX_STALENESS = 3.0
SETTINGS = replace(FAST, max_staleness=MAX_STALENESS)
#: The relay checks no token from its victims; any well-formed one will do.
ANY_TOKEN = "cf_the-relay-checks-no-token"
#: How far in the future a checkpoint may be dated (clock skew between
#: honest nodes) before it should be refused; the attack uses a day.
SKEW_TOLERANCE = timedelta(minutes=5)

Tamper = Callable[[f.LookupCredentialRequest], Awaitable[f.LookupCredentialResponse]]


class LyingRelay(federation_pb2_grpc.FederationServiceServicer):  # type: ignore[misc]
    """Country AT: forwards to DE, or lies (see the knobs)."""

    def __init__(self, upstream: str, token: str, own: Envelope) -> None:
        self._channel = grpc.aio.insecure_channel(
            upstream, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.up = federation_pb2_grpc.FederationServiceStub(self._channel)
        self.md = (("authorization", f"Bearer {token}"),)
        self.own = own
        #: Serve this checkpoint of DE (and nothing newer) for ever.
        self.pinned: c.SignedCheckpoint | None = None
        #: Lookups are not answered (UNAVAILABLE): the relay froze.
        self.lookups_down = False
        #: Answer lookups with this instead of forwarding them.
        self.tamper: Tamper | None = None
        self.served = {"pinned": 0, "tampered": 0}
        self.server: Any = None

    async def start(self) -> str:
        self.server = grpc.aio.server()
        federation_pb2_grpc.add_FederationServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
        await self._channel.close()

    async def _proxy(self, method: Any, request: Any, context: Any) -> Any:
        try:
            return await method(request, metadata=self.md, timeout=5)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")

    async def GetNodeDescriptor(self, request: Any, context: Any) -> Any:
        if request.origin in ("", "AT"):
            return f.GetNodeDescriptorResponse(descriptor=convert.envelope(self.own))
        return await self._proxy(self.up.GetNodeDescriptor, request, context)

    async def LookupCredential(self, request: Any, context: Any) -> Any:
        if self.lookups_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "frozen")
        if self.tamper is not None:
            self.served["tampered"] += 1
            return await self.tamper(request)
        return await self._proxy(self.up.LookupCredential, request, context)

    async def GetLogCheckpoint(self, request: Any, context: Any) -> Any:
        if request.origin == "DE" and self.pinned is not None:
            self.served["pinned"] += 1
            return f.GetLogCheckpointResponse(checkpoint=self.pinned)
        return await self._proxy(self.up.GetLogCheckpoint, request, context)

    async def GetLogEntries(self, request: Any, context: Any) -> Any:
        return await self._proxy(self.up.GetLogEntries, request, context)

    async def GetLogConsistencyProof(self, request: Any, context: Any) -> Any:
        return await self._proxy(self.up.GetLogConsistencyProof, request, context)

    async def SubscribeLog(self, request: Any, context: Any) -> AsyncIterator[Any]:
        call = self.up.SubscribeLog(request, metadata=self.md)
        try:
            while True:
                if request.origin == "DE" and self.pinned is not None:
                    self.served["pinned"] += 1
                    yield f.SubscribeLogResponse(checkpoint=self.pinned)
                    await asyncio.sleep(0.2)
                    continue
                message = await call.read()
                if message is grpc.aio.EOF:
                    return
                if self.pinned is None:  # else dropped: the relay froze meanwhile
                    yield message
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        finally:
            call.cancel()

    async def ReportFork(self, request: Any, context: Any) -> Any:
        return f.ReportForkResponse(newly_recorded=False)

    async def GetRecognitionRules(self, request: Any, context: Any) -> Any:
        return f.GetRecognitionRulesResponse()


async def _via_relay(tmp_path: Path) -> tuple[dict[str, FedNode], LyingRelay]:
    """DE and FR; FR pins DE and AT, and is linked to AT only. (DE links to
    FR only so that the test holds a peer token FR issued.)"""
    nodes = await build(tmp_path, ["DE", "FR"], [("DE", "FR")], settings=SETTINGS)
    de, fr = nodes["DE"], nodes["FR"]
    init = await init_node(tmp_path / "AT-relay", "AT", "127.0.0.1:0")
    own = own_descriptor(init.config, SigningKey.load(init.config.key_path), utc_now())
    relay = LyingRelay(de.target, await peer_token(de, "node AT"), own)
    peers = PeerDirectory(fr.data_dir, fr.country)
    peers.add(own, fingerprint(own))
    peers.set_link(decode_descriptor(own.payload).country, ANY_TOKEN, await relay.start())
    return nodes, relay


async def _verify_code(
    node: FedNode, cid: str
) -> tuple[grpc.StatusCode, v.VerificationResult, str]:
    """Code, result and details of an employer's verify at ``node``."""
    try:
        return grpc.StatusCode.OK, await node.verify(cid), ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), v.VerificationResult(), exc.details() or ""


async def _until_unknown(fr: FedNode, cid: str, timeout: float) -> tuple[float, list[int]]:
    """Poll FR's answer for ``cid``: the seconds until it is UNKNOWN and the
    statuses answered on the way. Fails if it is never UNKNOWN."""
    start = time.monotonic()
    statuses: list[int] = []
    while time.monotonic() - start < timeout:
        code, result, details = await _verify_code(fr, cid)
        assert code == grpc.StatusCode.OK, (code, details)
        statuses.append(result.status)
        if result.status == STATUS.CREDENTIAL_STATUS_UNKNOWN:
            assert result.provenance.data_age_seconds >= MAX_STALENESS
            return time.monotonic() - start, statuses
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"still {STATUS.Name(statuses[-1])} {timeout:.0f}s after the partner froze"
        f" (max_staleness {MAX_STALENESS:g}s); data age {result.provenance.data_age_seconds}s,"
        f" status as of {result.provenance.status_as_of.ToDatetime().isoformat()}"
    )


def _unknown_and_stays(statuses: list[int]) -> None:
    """ACTIVE, then UNKNOWN: never anything else, never back."""
    assert set(statuses) <= {STATUS.CREDENTIAL_STATUS_ACTIVE, STATUS.CREDENTIAL_STATUS_UNKNOWN}
    assert statuses[-1] == STATUS.CREDENTIAL_STATUS_UNKNOWN


async def test_a_stopped_origin_is_never_reported_valid_past_max_staleness(
    tmp_path: Path,
) -> None:
    """Attack: the origin freezes (DE stops; an attacker who silences it
    hopes that a credential revoked meanwhile still shows as valid abroad).
    Defence: FR answers from its cache and replica, flagged with the data's
    age, and past ``max_staleness`` the status is UNKNOWN, never ACTIVE; a
    credential FR never saw is not answered at all."""
    nodes = await build(tmp_path, ["DE", "FR"], [("FR", "DE"), ("DE", "FR")], settings=SETTINGS)
    de, fr = nodes["DE"], nodes["FR"]
    try:
        await start_all(de, fr)
        await register_issuer(de)
        cid, unseen = await de.issue(), await de.issue()
        result = await eventually(lambda: fr.verify(cid))
        assert result.status == STATUS.CREDENTIAL_STATUS_ACTIVE
        await stop_all(de)
        took, statuses = await _until_unknown(fr, cid, timeout=MAX_STALENESS + 6)
        assert took <= MAX_STALENESS + 4
        _unknown_and_stays(statuses)
        code, _, _ = await _verify_code(fr, unseen)
        assert code == grpc.StatusCode.UNAVAILABLE
        await asyncio.sleep(0.5)
        _, later, _ = await _verify_code(fr, cid)
        assert later.status == STATUS.CREDENTIAL_STATUS_UNKNOWN
    finally:
        await stop_all(*nodes.values())


async def test_a_relay_frozen_on_an_old_checkpoint_cannot_keep_a_credential_valid(
    tmp_path: Path,
) -> None:
    """Attack: the relay AT, FR's only route to DE, freezes its view of DE:
    it serves DE's genuine checkpoint of now for ever (and answers no more
    lookups) while DE lives on and revokes the credential. Defence: FR never
    learns of the revocation, but its answer turns UNKNOWN past
    ``max_staleness``: never ACTIVE from data that old."""
    nodes, relay = await _via_relay(tmp_path)
    de, fr = nodes["DE"], nodes["FR"]
    try:
        await start_all(de, fr)
        await register_issuer(de)
        cid = await de.issue()
        result = await eventually(lambda: fr.verify(cid))
        assert result.status == STATUS.CREDENTIAL_STATUS_ACTIVE
        relay.pinned = await log_checkpoint(fr, "DE", de.tokens["peer:FR"])
        relay.lookups_down = True
        await de.revoke(cid)
        took, statuses = await _until_unknown(fr, cid, timeout=MAX_STALENESS + 6)
        _unknown_and_stays(statuses)
        assert relay.served["pinned"] >= 2
        assert took <= MAX_STALENESS + 4
    finally:
        await stop_all(*nodes.values())
        await relay.stop()


def _resigned(de: FedNode, cp: c.SignedCheckpoint, shift: timedelta) -> c.SignedCheckpoint:
    """DE's checkpoint ``cp`` (same tree) signed again by DE's own key, dated
    ``shift`` away from now: what DE signs when its clock is that far off."""
    signed = sign_checkpoint(
        signing_key(de),
        Checkpoint(
            origin="DE",
            tree_size=cp.tree_size,
            root_hash=cp.root_hash,
            timestamp=utc_now() + shift,
        ),
    )
    return convert.checkpoint(signed)


async def test_checkpoints_signed_with_a_skewed_clock_do_not_make_data_look_fresh(
    tmp_path: Path,
) -> None:
    """Attack: DE's clock is a day off, so DE's key signs checkpoints dated a
    day away from now, and they reach FR through the relay: in DE's log
    (anti-entropy, stream) and in a lookup answer. A day behind: FR keeps
    its newer view (time never goes back). A day ahead: FR must refuse the
    checkpoint (or cap its time at its own clock plus a small tolerance),
    else DE's data looks fresh for a day. Then DE and the relay freeze.
    Defence: past ``max_staleness`` FR answers UNKNOWN for every DE
    credential, as for any frozen partner."""
    nodes, relay = await _via_relay(tmp_path)
    de, fr = nodes["DE"], nodes["FR"]
    token = de.tokens["peer:FR"]
    try:
        await start_all(de, fr)
        await register_issuer(de)
        a, b = await de.issue(), await de.issue(given_names="Petra")
        assert (await eventually(lambda: fr.verify(a))).status == STATUS.CREDENTIAL_STATUS_ACTIVE
        await eventually(lambda: _replica_at(fr, token, 2))
        current = await log_checkpoint(fr, "DE", token)

        # A day behind, in the log: FR's view does not go back in time.
        relay.pinned = _resigned(de, current, -timedelta(days=1))
        await eventually(lambda: asyncio.sleep(0, relay.served["pinned"] >= 3))
        seen = await log_checkpoint(fr, "DE", token)
        assert seen.timestamp.ToDatetime() >= current.timestamp.ToDatetime()

        # A day ahead, in a lookup answer (B: FR has not looked it up yet).
        genuine_b = await _genuine(relay, b)
        ahead = f.LookupCredentialResponse()
        ahead.CopyFrom(genuine_b)
        ahead.checkpoint.CopyFrom(_resigned(de, genuine_b.checkpoint, timedelta(days=1)))

        async def skewed(request: f.LookupCredentialRequest) -> f.LookupCredentialResponse:
            return ahead

        relay.tamper = skewed
        code, answered_b, _ = await _verify_code(fr, b)
        relay.tamper = None
        b_as_of = (
            answered_b.provenance.status_as_of.ToDatetime(tzinfo=UTC)
            if code == grpc.StatusCode.OK
            else None
        )

        # A day ahead, in the log.
        relay.pinned = _resigned(de, current, timedelta(days=1))
        await eventually(lambda: asyncio.sleep(0, relay.served["pinned"] >= 6))
        await asyncio.sleep(1.0)  # FR's anti-entropy passes through the relay
        relay.lookups_down = True
        await stop_all(de)
        held_at = (await log_checkpoint(fr, "DE", token)).timestamp.ToDatetime(tzinfo=UTC)
        await asyncio.sleep(MAX_STALENESS + 2)
        frozen = {cid: await _verify_code(fr, cid) for cid in (a, b)}

        limit = utc_now() + SKEW_TOLERANCE
        findings = []
        if held_at > limit:
            findings.append(f"FR accepted DE's log checkpoint dated {held_at.isoformat()}")
        if b_as_of is not None and b_as_of > limit:
            findings.append(f"FR answered B from a lookup checkpoint dated {b_as_of.isoformat()}")
        for cid, (code, result, _) in frozen.items():
            # No answer (B, if its skewed lookup was refused) is no "valid" either.
            if code == grpc.StatusCode.OK and result.status != STATUS.CREDENTIAL_STATUS_UNKNOWN:
                findings.append(
                    f"{cid} is {STATUS.Name(result.status)} {MAX_STALENESS + 2:g}s after DE froze"
                    f" (max_staleness {MAX_STALENESS:g}s), data age"
                    f" {result.provenance.data_age_seconds}s"
                )
        assert not findings, "; ".join(findings)
    finally:
        await stop_all(*nodes.values())
        await relay.stop()


async def _genuine(relay: LyingRelay, cid: str) -> f.LookupCredentialResponse:
    """DE's genuine answer about ``cid`` (the relay asks DE itself)."""
    got: f.LookupCredentialResponse = await relay.up.LookupCredential(
        f.LookupCredentialRequest(credential_id=cid, birth_date="1994-03-17"),
        metadata=relay.md,
        timeout=5,
    )
    return got


async def test_a_genuine_signature_or_entry_moved_to_another_credential_is_refused(
    tmp_path: Path,
) -> None:
    """Attack: the relay answers FR's lookup of credential B with genuine,
    DE-signed material of credential A (a revoked B made to look like the
    active A): A's whole answer; B's record with A's status entry and proof;
    B's own entry claimed at A's log position with A's proof. Defence: each
    is refused (FAILED_PRECONDITION / DATA_LOSS), never an answer about B;
    nothing is cached, so B is answered truly once the relay stops lying."""
    nodes, relay = await _via_relay(tmp_path)
    de, fr = nodes["DE"], nodes["FR"]
    try:
        await start_all(de, fr)
        await register_issuer(de)
        a = await de.issue()
        b = await de.issue(given_names="Petra")
        await de.revoke(b)
        size = await de.log_size()
        await eventually(lambda: _replica_at(fr, de.tokens["peer:FR"], size))
        genuine_a = await _genuine(relay, a)
        genuine_b = await _genuine(relay, b)
        assert genuine_a.status_entry.index != genuine_b.status_entry.index

        def a_for_b() -> f.LookupCredentialResponse:
            return genuine_a

        def entry_of_a() -> f.LookupCredentialResponse:
            moved = f.LookupCredentialResponse()
            moved.CopyFrom(genuine_b)
            moved.status_entry.CopyFrom(genuine_a.status_entry)
            moved.inclusion_proof.CopyFrom(genuine_a.inclusion_proof)
            moved.status.CopyFrom(genuine_a.status)
            return moved

        def b_at_a_position() -> f.LookupCredentialResponse:
            moved = f.LookupCredentialResponse()
            moved.CopyFrom(genuine_b)
            moved.status_entry.index = genuine_a.status_entry.index
            moved.inclusion_proof.CopyFrom(genuine_a.inclusion_proof)
            return moved

        for lie in (a_for_b, entry_of_a, b_at_a_position):

            async def answer(
                request: f.LookupCredentialRequest,
                lie: Callable[[], f.LookupCredentialResponse] = lie,
            ) -> f.LookupCredentialResponse:
                return lie()

            relay.tamper = answer
            code, result, details = await _verify_code(fr, b)
            assert code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DATA_LOSS), (
                lie.__name__,
                code,
                STATUS.Name(result.status),
            )
            assert "refused" in details, (lie.__name__, details)
        assert relay.served["tampered"] >= 3
        relay.tamper = None
        truth = await fr.verify(b)
        assert truth.credential_id == b
        assert truth.status == STATUS.CREDENTIAL_STATUS_REVOKED
        assert truth.provenance.signature_checked
    finally:
        await stop_all(*nodes.values())
        await relay.stop()


async def _replica_at(fr: FedNode, token: str, size: int) -> bool:
    return (await log_checkpoint(fr, "DE", token)).tree_size >= size
