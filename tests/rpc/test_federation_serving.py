"""The Federation service as a partner node sees it: a pinned descriptor,
a status log it can replicate and check, lookups, and a subscription."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import RunningNode, draft

from credfed.clock import utc_now
from credfed.crypto.envelope import CREDENTIAL_TYPE, verify_envelope
from credfed.federation.descriptor import fingerprint, keys_at, pin_descriptor
from credfed.federation.local import own_descriptor
from credfed.models import Envelope
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import verify_checkpoint
from credfed.statuslog.entries import decode_entry
from credfed.v1 import common_pb2 as c
from credfed.v1 import federation_pb2 as f
from credfed.v1 import federation_pb2_grpc
from credfed.v1 import registry_pb2 as r


def _env(pb: c.Envelope) -> Envelope:
    return Envelope(pb.payload, pb.payload_type, pb.key_id, pb.signature)


def _stub(rn: RunningNode) -> federation_pb2_grpc.FederationServiceStub:
    return federation_pb2_grpc.FederationServiceStub(rn.channel)


async def _pinned_keys(rn: RunningNode) -> dict[str, object]:
    """What a partner does once: fetch the descriptor, pin it by the
    fingerprint the operators compared out of band."""
    resp = await _stub(rn).GetNodeDescriptor(
        f.GetNodeDescriptorRequest(), metadata=rn.md("peer"), timeout=10
    )
    envelope = _env(resp.descriptor)
    exported = own_descriptor(rn.init.config, rn.node.key, utc_now())  # the file exported
    descriptor = pin_descriptor(envelope, fingerprint(exported))
    assert descriptor.country == "DE" and descriptor.version == 1
    return dict(keys_at(descriptor, utc_now()))


async def test_a_partner_replicates_and_checks_the_log(running: RunningNode) -> None:
    keys = await _pinned_keys(running)
    first = (await running.issue()).checkpoint
    for _ in range(30):
        await running.issue()
    stub, md = _stub(running), running.md("peer")
    cp = (
        await stub.GetLogCheckpoint(f.GetLogCheckpointRequest(origin="DE"), metadata=md, timeout=10)
    ).checkpoint
    signed = verify_checkpoint(_env(cp.envelope), keys, "DE").checkpoint  # type: ignore[arg-type]
    leaves: list[bytes] = []
    while len(leaves) < signed.tree_size:
        end = min(signed.tree_size, len(leaves) + 7)
        resp = await stub.GetLogEntries(
            f.GetLogEntriesRequest(origin="DE", start=len(leaves), end=end), metadata=md, timeout=10
        )
        assert [e.index for e in resp.entries] == list(range(len(leaves), end))
        leaves.extend(e.leaf for e in resp.entries)
    nodes = {
        (lv, ix): h
        for lv, ix, h in merkle.append_nodes(0, [merkle.leaf_hash(x) for x in leaves], {})
    }
    assert merkle.root_hash(len(leaves), nodes) == signed.root_hash
    assert all(decode_entry(x).origin == "DE" for x in leaves)
    proof = await stub.GetLogConsistencyProof(
        f.GetLogConsistencyProofRequest(
            origin="DE", old_size=first.tree_size, new_size=signed.tree_size
        ),
        metadata=md,
        timeout=10,
    )
    merkle.verify_consistency(
        first.tree_size,
        signed.tree_size,
        first.root_hash,
        signed.root_hash,
        list(proof.proof.hashes),
    )


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (f.GetLogEntriesRequest(origin="DE", start=0, end=1001), grpc.StatusCode.INVALID_ARGUMENT),
        (f.GetLogEntriesRequest(origin="DE", start=0, end=50), grpc.StatusCode.INVALID_ARGUMENT),
        (f.GetLogEntriesRequest(origin="DE", start=2, end=2), grpc.StatusCode.INVALID_ARGUMENT),
        (f.GetLogEntriesRequest(origin="FR", start=0, end=1), grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_log_entry_requests_are_bounded(
    running: RunningNode, request_: f.GetLogEntriesRequest, code: grpc.StatusCode
) -> None:
    for _ in range(3):
        await running.issue()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _stub(running).GetLogEntries(request_, metadata=running.md("peer"), timeout=10)
    assert info.value.code() == code


async def test_lookup_returns_a_record_the_partner_can_check(running: RunningNode) -> None:
    keys = await _pinned_keys(running)
    cid = (await running.issue()).credential.credential_id
    stub, md = _stub(running), running.md("peer")
    resp = await stub.LookupCredential(
        f.LookupCredentialRequest(credential_id=cid, family_name="Novák"), metadata=md, timeout=10
    )
    payload = verify_envelope(_env(resp.signed_record), keys, CREDENTIAL_TYPE)  # type: ignore[arg-type]
    assert cid.encode() in payload
    signed = verify_checkpoint(_env(resp.checkpoint.envelope), keys, "DE").checkpoint  # type: ignore[arg-type]
    merkle.verify_inclusion(
        merkle.leaf_hash(resp.status_entry.leaf),
        resp.status_entry.index,
        signed.tree_size,
        list(resp.inclusion_proof.hashes),
        signed.root_hash,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.LookupCredential(
            f.LookupCredentialRequest(credential_id=cid, family_name="Other"),
            metadata=md,
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_subscription_pushes_a_revocation_at_once(running: RunningNode) -> None:
    cid = (await running.issue()).credential.credential_id
    stream = _stub(running).SubscribeLog(
        f.SubscribeLogRequest(origin="DE", from_index=0), metadata=running.md("peer"), timeout=30
    )
    first = await stream.read()
    assert [e.index for e in first.entries] == [0] and first.checkpoint.tree_size == 1
    started = time.monotonic()
    await running.registry.RevokeCredential(
        r.RevokeCredentialRequest(credential_id=cid, reason="fraud"),
        metadata=running.md("admin"),
        timeout=10,
    )
    update = await asyncio.wait_for(stream.read(), 5)
    latency = time.monotonic() - started
    assert [e.index for e in update.entries] == [1]
    assert decode_entry(update.entries[0].leaf).state.status.value == "revoked"
    assert update.checkpoint.tree_size == 2
    assert latency < 2.0
    stream.cancel()


async def test_a_stalled_subscriber_does_not_hold_up_the_origin(running: RunningNode) -> None:
    # A subscriber that never reads: its stream's flow-control window fills.
    stalled = _stub(running).SubscribeLog(
        f.SubscribeLogRequest(origin="DE", from_index=0), metadata=running.md("peer"), timeout=60
    )
    started = time.monotonic()
    for _ in range(40):
        await running.issue(title="x" * 150)

    async def batches() -> AsyncIterator[r.BulkIssueCredentialsRequest]:
        for _ in range(3):
            yield r.BulkIssueCredentialsRequest(drafts=[draft()] * 1000)

    await running.registry.BulkIssueCredentials(batches(), metadata=running.md("admin"), timeout=60)
    assert time.monotonic() - started < 30
    # And a fresh subscriber is served the whole log meanwhile.
    fresh = _stub(running).SubscribeLog(
        f.SubscribeLogRequest(origin="DE", from_index=0), metadata=running.md("peer"), timeout=30
    )
    got = 0
    while got < 3040:
        got += len((await asyncio.wait_for(fresh.read(), 10)).entries)
    fresh.cancel()
    stalled.cancel()
