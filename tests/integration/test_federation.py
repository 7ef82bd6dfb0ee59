"""Federation end to end: separate node processes on loopback, real ports,
real SQLite files and signatures.

DE, FR and PL as in the demo: FR is linked to both, PL only to FR, so
everything PL learns about DE travels through FR (relay) while PL checks it
with DE's descriptor it pinned itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from fednet import STATUS, FedNode, build, eventually, register_issuer

from credfed.ids import new_credential_id
from credfed.v1 import registry_pb2 as r
from credfed.v1 import verification_pb2 as v

pytestmark = pytest.mark.slow

DEMO_LINKS = [("DE", "FR"), ("FR", "DE"), ("FR", "PL"), ("PL", "FR")]


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[dict[str, FedNode]]:
    nodes = await build(tmp_path, ["DE", "FR", "PL"], DEMO_LINKS)
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            await register_issuer(node)
        yield nodes
    finally:
        for node in nodes.values():
            await node.stop()


async def _replica_status(node: FedNode, cid: str) -> int:
    result = await node.verify(cid)
    return int(result.status)


async def test_cross_border_verify_checks_the_origin_signature_and_says_where_status_came_from(
    trio: dict[str, FedNode],
) -> None:
    de, fr = trio["DE"], trio["FR"]
    cid = await de.issue()
    result = await eventually(lambda: fr.verify(cid))
    assert result.credential_id == cid
    assert result.status == STATUS.CREDENTIAL_STATUS_ACTIVE
    assert result.holder.family_name == "Novák"
    p = result.provenance
    assert p.origin == "DE"
    assert p.signature_checked
    assert p.source in (v.STATUS_SOURCE_ORIGIN, v.STATUS_SOURCE_REPLICA)
    assert p.data_age_seconds < 30
    # The answer carries DE's signed record and checkpoint, checkable by anyone.
    assert result.checkpoint.origin == "DE"
    # A wrong attribute and an unknown id answer alike, across the border too.
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await fr.verify(cid, birth_date="1990-01-01")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await fr.verify(new_credential_id("DE"))
    assert wrong.value.code() == unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert wrong.value.details() == unknown.value.details()


async def test_revocation_propagates_to_a_direct_partner_and_through_a_relay(
    trio: dict[str, FedNode],
) -> None:
    de, fr, pl = trio["DE"], trio["FR"], trio["PL"]
    cid = await de.issue()
    first = await eventually(lambda: pl.verify(cid))  # PL reaches DE only through FR
    assert first.status == STATUS.CREDENTIAL_STATUS_ACTIVE
    assert first.provenance.signature_checked
    await de.revoke(cid)

    async def revoked_at(node: FedNode) -> bool:
        result = await node.verify(cid)
        return result.status == STATUS.CREDENTIAL_STATUS_REVOKED

    await eventually(lambda: revoked_at(fr), timeout=10)
    await eventually(lambda: revoked_at(pl), timeout=10)
    at_pl = await pl.verify(cid)
    # PL's record is cached; the newer status came from its replica of DE's
    # log, which it received from FR.
    assert at_pl.provenance.source == v.STATUS_SOURCE_REPLICA
    assert at_pl.provenance.record_cached
    assert at_pl.status_detail.reason == "fraud"


async def test_with_the_origin_down_answers_come_from_cache_and_replica_then_unknown(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from fednet import FAST

    nodes = await build(
        tmp_path,
        ["DE", "FR"],
        [("FR", "DE"), ("DE", "FR")],
        settings=replace(FAST, max_staleness=6.0),
    )
    de, fr = nodes["DE"], nodes["FR"]
    try:
        for node in nodes.values():
            node.start()
        await register_issuer(de)
        cid = await de.issue()
        await eventually(lambda: fr.verify(cid))
        await de.stop()
        down = await fr.verify(cid)
        assert down.status == STATUS.CREDENTIAL_STATUS_ACTIVE
        assert down.provenance.record_cached
        assert down.provenance.source == v.STATUS_SOURCE_REPLICA

        async def unknown() -> v.VerificationResult | None:
            result = await fr.verify(cid)
            return result if result.status == STATUS.CREDENTIAL_STATUS_UNKNOWN else None

        stale = await eventually(unknown, timeout=15)
        assert stale.provenance.data_age_seconds > 6
        # An id the cache does not hold cannot be answered at all.
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await fr.verify(new_credential_id("DE"))
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        # `credfed purge`: the cached personal data of other countries is gone
        # at once, and with it the answer.
        purged = await fr.registry.PurgeCachedRecords(
            r.PurgeCachedRecordsRequest(), metadata=fr.md(), timeout=10
        )
        assert purged.purged == 1
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await fr.verify(cid)
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        for node in nodes.values():
            await node.stop()
