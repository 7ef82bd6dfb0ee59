"""Crash durability: SIGKILL the node while clients stream status changes.

After a restart every change a client saw acknowledged is in the log with
the exact bytes it was told about, the whole log hashes to the signed root,
and the next checkpoint is provably consistent with the last one a client
saw before the crash.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import ISSUER, draft
from nodeproc import NodeProcess

from credfed.bootstrap import init_node
from credfed.crypto.keys import SigningKey
from credfed.models import Envelope
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import verify_checkpoint
from credfed.v1 import registry_pb2 as r
from credfed.v1 import registry_pb2_grpc, verification_pb2_grpc
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Ack:
    index: int
    leaf: bytes
    tree_size: int
    root: bytes


def _env(pb: object) -> Envelope:
    return Envelope(pb.payload, pb.payload_type, pb.key_id, pb.signature)  # type: ignore[attr-defined]


async def _changer(
    stub: registry_pb2_grpc.RegistryServiceStub,
    md: object,
    ids: list[str],
    acks: list[Ack],
    stop: asyncio.Event,
) -> None:
    """Flip credentials between suspended and reinstated until the node dies."""
    state = dict.fromkeys(ids, "active")
    rng = random.Random()
    while not stop.is_set():
        cid = rng.choice(ids)
        try:
            if state[cid] == "suspended":
                resp = await stub.ReinstateCredential(
                    r.ReinstateCredentialRequest(credential_id=cid, reason="appeal_upheld"),
                    metadata=md,
                    timeout=5,
                )
                state[cid] = "reinstated"
            else:
                resp = await stub.SuspendCredential(
                    r.SuspendCredentialRequest(credential_id=cid, reason="disciplinary"),
                    metadata=md,
                    timeout=5,
                )
                state[cid] = "suspended"
        except grpc.aio.AioRpcError:
            return  # the node is gone: everything acknowledged so far must survive
        rc = resp.receipt
        acks.append(
            Ack(rc.entry.index, rc.entry.leaf, rc.checkpoint.tree_size, rc.checkpoint.root_hash)
        )


async def test_sigkill_during_status_changes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    init = await init_node(tmp_path / "de", "DE", "127.0.0.1:0")
    key = SigningKey.load(init.config.key_path)
    keys = {key.key_id: key.verifying_key()}
    node = NodeProcess(init.config.data_dir, tmp_path / "node.log")
    node.start()
    md = (("authorization", f"Bearer {init.admin_token}"),)
    acks: list[Ack] = []
    try:
        async with grpc.aio.insecure_channel(node.target) as ch:
            reg = registry_pb2_grpc.RegistryServiceStub(ch)
            await reg.RegisterIssuer(
                r.RegisterIssuerRequest(issuer_id=ISSUER, name="HWK", sectors=["energy"]),
                metadata=md,
                timeout=10,
            )
            # Four groups of credentials, one concurrent client per group, so
            # that several changes are in flight at the moment of the kill.
            groups = []
            for _ in range(4):
                ids = []
                for _ in range(5):
                    resp = await reg.IssueCredential(
                        r.IssueCredentialRequest(draft=draft()), metadata=md, timeout=10
                    )
                    ids.append(resp.receipt.credential.credential_id)
                groups.append(ids)
            stop = asyncio.Event()
            tasks = [asyncio.create_task(_changer(reg, md, ids, acks, stop)) for ids in groups]
            while len(acks) < 60:
                await asyncio.sleep(0.01)
            await asyncio.sleep(random.uniform(0.0, 0.2))
            node.kill()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert len(acks) >= 60

        node.start()
        async with grpc.aio.insecure_channel(node.target) as ch:
            reg = registry_pb2_grpc.RegistryServiceStub(ch)
            ver = verification_pb2_grpc.VerificationServiceStub(ch)
            latest = (
                await ver.GetCheckpoint(v.GetCheckpointRequest(), metadata=md, timeout=10)
            ).checkpoint
            size = latest.tree_size

            # Every acknowledged change is there, byte for byte. The whole log
            # is read from a second connection to the same SQLite file.
            from credfed.storage.sqlite import SqliteStore

            store = await SqliteStore.open(init.config.db_path)
            try:
                leaves = await store.get_log_entries(0, size)
            finally:
                await store.close()
            assert len(leaves) == size
            for ack in acks:
                assert ack.index < size
                assert leaves[ack.index] == ack.leaf

            # The log verifies: its leaves hash to the signed root.
            signed = verify_checkpoint(_env(latest.envelope), keys, "DE").checkpoint
            assert _reference_root(leaves) == signed.root_hash

            # The next checkpoint is consistent with the last one a client saw.
            last_seen = max(acks, key=lambda a: a.tree_size)
            resp = await reg.IssueCredential(
                r.IssueCredentialRequest(draft=draft()), metadata=md, timeout=10
            )
            new = resp.receipt.checkpoint
            assert new.tree_size > last_seen.tree_size
            proof = await ver.GetConsistencyProof(
                v.GetConsistencyProofRequest(old_size=last_seen.tree_size, new_size=new.tree_size),
                metadata=md,
                timeout=10,
            )
            merkle.verify_consistency(
                last_seen.tree_size,
                new.tree_size,
                last_seen.root,
                new.root_hash,
                list(proof.proof.hashes),
            )
    finally:
        node.stop()


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH computed naively from all leaves, independent of storage."""

    def mth(items: list[bytes]) -> bytes:
        if len(items) == 1:
            return merkle.leaf_hash(items[0])
        k = 1 << ((len(items) - 1).bit_length() - 1)
        return merkle.node_hash(mth(items[:k]), mth(items[k:]))

    return mth(leaves) if leaves else merkle.EMPTY_ROOT
